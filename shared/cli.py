"""``touchpoint``: operations command line (database set-up, migrations, topics, API keys).

Reads the same ``TOUCHPOINT_*`` settings as the services.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import httpx
import orjson
import typer
from aiokafka import AIOKafkaConsumer

from shared import auth, db, kafka, ops
from shared.settings import ServiceSettings

app = typer.Typer(no_args_is_help=True, help="Operate a Touchpoint installation.")
keys = typer.Typer(no_args_is_help=True, help="Create and revoke API keys.")
dlq = typer.Typer(no_args_is_help=True, help="Inspect and re-drive dead letters.")
identity = typer.Typer(no_args_is_help=True, help="Show, merge, split, unmerge and erase customers (identity admin API).")
app.add_typer(keys, name="api-keys")
app.add_typer(dlq, name="dlq")
app.add_typer(identity, name="identity")

API_KEY = typer.Option(..., envvar="TOUCHPOINT_API_KEY", help="an API key (admin scope for identity commands)")
IDENTITY_URL = typer.Option("http://127.0.0.1:8002", envvar="TOUCHPOINT_IDENTITY_URL")
TIMELINE_URL = typer.Option("http://127.0.0.1:8003", envvar="TOUCHPOINT_TIMELINE_URL")


def _echo_json(value: object) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


def _settings() -> ServiceSettings:
    return ServiceSettings()


@app.command("db-init")
def db_init(admin_url: str = typer.Option(..., help="A superuser DSN, e.g. postgresql://postgres@127.0.0.1:15432/postgres"),
            role: str = "touchpoint", password: str = "touchpoint", database: str = "touchpoint") -> None:
    """Create the owner role and the database if they do not exist (development set-up); `migrate` creates
    the application role."""
    asyncio.run(db.ensure_database(admin_url, role, password, database))
    typer.echo(f"database {database} ready")


@app.command()
def migrate() -> None:
    """Apply pending SQL migrations of the platform and every service as the owner role
    (TOUCHPOINT_MIGRATION_DATABASE_URL), and put every tenant table under row-level security for the role of
    TOUCHPOINT_DATABASE_URL (created if missing)."""
    s = _settings()
    app_url = s.database_url.get_secret_value()
    owner_url = s.migration_database_url.get_secret_value() if s.migration_database_url else app_url
    applied = asyncio.run(db.migrate(owner_url, app_url))
    typer.echo("\n".join(applied) if applied else "migrations: up to date")


@app.command("create-topics")
def create_topics() -> None:
    """Create every topic of the registry (and its dead-letter twin) that does not exist yet."""
    s = _settings()
    created = asyncio.run(kafka.create_topics(s.kafka_bootstrap_servers, s.topic_prefix))
    typer.echo("\n".join(f"created {t}" for t in created) if created else "topics: all present")


async def _with_conn(fn):
    conn = await db.connect(_settings().database_url.get_secret_value(), db.ALL_TENANTS)  # an operator's tool
    try:
        return await fn(conn)
    finally:
        await conn.close()


@keys.command("create")
def create_key(tenant: str, scopes: str = typer.Option("ingest,read", help="comma-separated: ingest,read,admin"),
               label: str = "") -> None:
    """Create an API key and print it (the only time its plaintext is shown)."""
    key = asyncio.run(_with_conn(lambda c: auth.create_api_key(c, tenant, scopes.split(","), label)))
    typer.echo(key.get_secret_value())


@keys.command("revoke")
def revoke_key(key_id: str) -> None:
    """Revoke a key by its id (the part between ``tp_`` and the second ``_``)."""
    done = asyncio.run(_with_conn(lambda c: auth.revoke_api_key(c, key_id)))
    typer.echo("revoked" if done else "no active key with that id")
    raise typer.Exit(0 if done else 1)


@app.command("lag")
def show_lag() -> None:
    """Consumer lag of every service subscription, per partition."""
    s = _settings()
    rows = asyncio.run(ops.lag(s.kafka_bootstrap_servers, s.topic_prefix))
    for r in rows:
        if not r["running"]:
            typer.echo(f"{r['group']:<24} {r['topic']} not running (no such consumer group)")
            continue
        typer.echo(f"{r['group']:<24} {r['topic']}[{r['partition']}] committed {r['committed']} end {r['end']} lag {r['lag']}")
    typer.echo(f"total lag {sum(r['lag'] for r in rows)}")


@dlq.command("inspect")
def dlq_inspect(topic: str = typer.Argument(..., help="the topic whose dead letters to show, e.g. touchpoint.inbound.v1"),
                limit: int = 50) -> None:
    """Dead letters of a topic: origin, reason and error (never the values)."""
    s = _settings()

    async def collect() -> list[dict]:
        out = []
        async for record in ops.read_to_end(s.kafka_bootstrap_servers, s.topic_prefix + topic + ".dlq"):
            out.append(ops.describe_dead_letter(record))
        return out

    rows = asyncio.run(collect())
    for row in rows[-limit:]:
        typer.echo(json.dumps(row))
    typer.echo(f"{len(rows)} dead letters")


@dlq.command("redrive")
def dlq_redrive(topic: str, reason: str = typer.Option(None, help="only dead letters with this reason")) -> None:
    """Send a topic's dead letters back to it (after fixing their cause); each is re-driven once."""
    s = _settings()
    sent, skipped = asyncio.run(ops.redrive(s.kafka_bootstrap_servers, s.topic_prefix + topic + ".dlq", reason,
                                             s.group("touchpoint-dlq-redrive")))
    typer.echo(f"re-driven {sent}, skipped {skipped}")


@app.command("rebuild")
def rebuild(projection: str = typer.Argument(..., help="timeline")) -> None:
    """Rebuild a projection from the log (the service must be stopped), with a progress bar."""
    if projection != "timeline":
        raise typer.BadParameter("only the timeline projection can be rebuilt")
    raise typer.Exit(subprocess.run([sys.executable, "-m", "services.timeline.rebuild"]).returncode)


@app.command("tail")
def tail(customer_id: str, lines: int = typer.Option(10, "-n"), follow: float = typer.Option(
        0, help="then follow touchpoint.timeline.v1 for this many seconds"),
         api_key: str = API_KEY, timeline_url: str = TIMELINE_URL) -> None:
    """The customer's latest timeline entries, oldest first, then (with --follow) new ones as they arrive."""
    resp = httpx.get(f"{timeline_url}/v1/customers/{customer_id}/timeline", params={"limit": max(lines, 1)},
                     headers={"Authorization": f"Bearer {api_key}"}, timeout=10)
    _check(resp)
    body = resp.json()
    for entry in reversed(body["entries"][:lines]):
        typer.echo(_entry_line(entry))
    if follow > 0:
        asyncio.run(_follow(_settings(), body["customer_id"], follow))


def _entry_line(entry: dict) -> str:
    return f"{entry['occurred_at']}  {entry['channel']:<10} {entry['direction']:<8} {entry['source']}/{entry['event_id']}"


async def _follow(s: ServiceSettings, customer_id: str, seconds: float) -> None:
    consumer = AIOKafkaConsumer(s.topic_prefix + "touchpoint.timeline.v1", bootstrap_servers=s.kafka_bootstrap_servers,
                                auto_offset_reset="latest", enable_auto_commit=False)
    await consumer.start()
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for r in records:
                    if r.key == customer_id.encode():
                        typer.echo(_entry_line(orjson.loads(r.value)), nl=True)
                        sys.stdout.flush()
    finally:
        await consumer.stop()


def _check(resp: httpx.Response) -> None:
    if resp.status_code >= 400:
        typer.echo(f"error {resp.status_code}: {resp.text}", err=True)
        raise typer.Exit(1)


def _identity_call(method: str, url: str, api_key: str, body: dict | None = None) -> dict:
    resp = httpx.request(method, url, json=body, headers={"Authorization": f"Bearer {api_key}"}, timeout=30)
    _check(resp)
    return resp.json()


@identity.command("show")
def identity_show(customer_id: str, api_key: str = API_KEY, identity_url: str = IDENTITY_URL) -> None:
    """Identifiers (with the event that linked each), aliases and merges of a customer."""
    _echo_json(_identity_call("GET", f"{identity_url}/v1/identities/{customer_id}", api_key))


@identity.command("merge")
def identity_merge(customer_ids: list[str], api_key: str = API_KEY, identity_url: str = IDENTITY_URL) -> None:
    """Merge customers into the oldest of them."""
    _echo_json(_identity_call("POST", f"{identity_url}/v1/identities/merge", api_key, {"customer_ids": customer_ids}))


@identity.command("split")
def identity_split(customer_id: str, identifier: list[str] = typer.Option(..., help="type:value, repeatable"),
                   reason: str = "operator request", api_key: str = API_KEY, identity_url: str = IDENTITY_URL) -> None:
    """Detach identifiers (``--identifier phone:+4930123``) into a new customer; its entries move with them."""
    idents = [dict(zip(("type", "value"), i.split(":", 1))) for i in identifier]
    _echo_json(_identity_call("POST", f"{identity_url}/v1/identities/{customer_id}/split", api_key,
                              {"identifiers": idents, "reason": reason}))


@identity.command("unmerge")
def identity_unmerge(merge_id: str, api_key: str = API_KEY, identity_url: str = IDENTITY_URL) -> None:
    """Undo a merge (its id is in ``identity show``): the merged-away customers come back with what they held."""
    _echo_json(_identity_call("POST", f"{identity_url}/v1/identities/merges/{merge_id}/undo", api_key))


@app.command("explain")
def explain(customer_id: str, api_key: str = API_KEY, identity_url: str = IDENTITY_URL) -> None:
    """Why these identifiers belong to the customer: linking events, merges and their rules, refusals, reviews."""
    _echo_json(_identity_call("GET", f"{identity_url}/v1/identities/{customer_id}/explain", api_key))


@app.command("erase")
def erase(customer_id: str, api_key: str = API_KEY, identity_url: str = IDENTITY_URL) -> None:
    """Erase a customer's personal data (identity graph, timeline, customers topic tombstone)."""
    _echo_json(_identity_call("POST", f"{identity_url}/v1/identities/{customer_id}/erase", api_key))


if __name__ == "__main__":
    app()
