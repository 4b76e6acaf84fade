"""Erasure that really erases (GDPR Art. 17): a canary carried in a customer's identifiers, subject and text is,
once the erasure request was answered, nowhere in plaintext: not in a ``pg_dump`` of the database, not in
Kafka's data directory once the compacted customers topic has been compacted, not in a dead-letter topic, not in
any service's log; and rebuilding the timeline from the log does not bring it back.

This runs on its own Kafka and PostgreSQL (``.run/privacy``), because it reads Kafka's data directory and
PostgreSQL's ``pg_dump`` whole: another test's data must not be there, and the canary must not be anywhere
else. Every check first shows the canary *is* found where it is expected before the erasure (the timeline
rows, the customers topic before compaction), so a search that could not find anything cannot pass.
"""

from __future__ import annotations

import asyncio
import base64
import glob
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from shared import topics
from tests.support import kafka_io
from tests.support.infra import ROOT, LocalInfra
from tests.support.stack import new_stack

pytestmark = pytest.mark.e2e
TENANT = "privacy"
SERVICES = ("ingestion", "identity", "timeline", "routing", "notification", "feedback")


@pytest.fixture(scope="module")
def privacy_infra():
    servers = LocalInfra("privacy", 26292, 26632).start_all()
    try:
        yield servers
    finally:
        servers.stop_all()


def canary_event(canary: str, n: int, email: bool = True, phone: bool = True) -> dict:
    identifiers = ([{"type": "email", "value": f"{canary.lower()}@example.org"}] if email else []) + \
                  ([{"type": "phone", "value": "+49 30 5550177"}] if phone else [])
    return {"specversion": "1.0", "id": f"mail-{n}", "source": "crm", "type": "touchpoint.interaction.occurred.v1",
            "data": {"channel": "email", "direction": "inbound", "occurred_at": f"2026-11-0{n + 1}T10:00:00Z",
                     "conversation_id": f"conv-{n}", "identifiers": identifiers,
                     "subject": f"complaint from {canary}", "text": f"my name is {canary}, please call me back"}}


def other_event(n: int) -> dict:
    return {"specversion": "1.0", "id": f"other-{n}", "source": "crm", "type": "touchpoint.interaction.occurred.v1",
            "data": {"channel": "email", "direction": "inbound", "occurred_at": "2026-11-05T10:00:00Z",
                     "identifiers": [{"type": "email", "value": f"someone{n}@example.com"}],
                     "subject": "order status", "text": f"where is order {n}?"}}


async def open_as_downstream(client: httpx.AsyncClient, auth: dict, record) -> dict:
    """What a consumer of the timeline topic does, with nothing of Touchpoint's code: fetch the record's key
    from the data-keys API and open ``data.sealed`` with AES-GCM."""
    data = orjson.loads(record.value)
    resp = await client.get(f"/v1/data-keys/{dict(record.headers)['ce_sealkey'].decode()}", headers=auth)
    assert resp.status_code == 200, resp.text
    key = resp.json()
    raw = base64.urlsafe_b64decode(data.pop("sealed"))
    plain = AESGCM(base64.urlsafe_b64decode(key["key"])).decrypt(raw[:12], raw[12:], base64.urlsafe_b64decode(key["aad"]))
    return {**data, **orjson.loads(plain)}


def kafka_hits(data_dir: Path, needles: list[bytes]) -> dict[str, int]:
    """Files under Kafka's data directory that contain any needle (every file: segments, indexes, snapshots,
    checkpoints, files waiting for deletion), with the number of occurrences."""
    hits = {}
    for path in data_dir.rglob("*"):
        if path.is_file():
            raw = path.read_bytes()
            n = sum(raw.count(needle) for needle in needles)
            if n:
                hits[str(path.relative_to(data_dir))] = n
    return hits


def pg_dump(dsn: str) -> bytes:
    bindir = sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1]
    out = subprocess.run([f"{bindir}/pg_dump", "--data-only", "--no-owner", dsn], capture_output=True, timeout=120)
    assert out.returncode == 0, out.stderr.decode()
    return out.stdout


def dump_tables(dump: bytes, needles: list[bytes]) -> dict[str, int]:
    """Tables of a ``pg_dump --data-only`` whose rows contain a needle, with the number of occurrences."""
    out: dict[str, int] = {}
    table = "?"
    for line in dump.splitlines():
        if line.startswith(b"COPY "):
            table = line.split(b" ")[1].decode()
        n = sum(line.count(needle) for needle in needles)
        if n:
            out[table] = out.get(table, 0) + n
    return out


async def compact_now(bootstrap: str, topic: str, key: str) -> None:
    """Make the cleaner compact ``topic`` at its next pass: tiny segments, no dirty-ratio or lag threshold, old
    files deleted at once; then append one more tombstone under ``key`` so that the segment holding the erased
    customer's snapshots stops being the active one (only closed segments are compacted). AlterConfigs replaces
    a topic's whole configuration, hence ``cleanup.policy`` again."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs={
            "cleanup.policy": "compact", "segment.ms": "200", "min.cleanable.dirty.ratio": "0.01",
            "min.compaction.lag.ms": "0",
            "file.delete.delay.ms": "0", "delete.retention.ms": "0"})])
    finally:
        await admin.close()
    await asyncio.sleep(1)
    await kafka_io.publish(bootstrap, topic, [(key.encode(), None, [])])


async def test_erasure_leaves_no_plaintext_canary_anywhere_and_a_rebuild_does_not_bring_it_back(privacy_infra):
    canary = f"CANARY{uuid.uuid4().hex[:12].upper()}"
    needles = [canary.encode(), canary.lower().encode()]
    data_dir = Path(privacy_infra.env["RUN_DIR"]) / "kafka" / "data"
    stack = await new_stack(privacy_infra.bootstrap_servers, privacy_infra.admin_dsn)
    procs = [stack.start(s, TOUCHPOINT_LOG_LEVEL="DEBUG") for s in SERVICES]
    try:
        for proc in procs:
            await proc.wait_ready()
        key = await stack.api_key(TENANT, ["ingest", "read", "admin"])
        auth = {"Authorization": f"Bearer {key}"}
        # Two customers at first (one known by the e-mail address, one by the phone number), then events with
        # both: identity merges them, and the merge event names the canary address as a linking identifier.
        first = [canary_event(canary, 0, phone=False), canary_event(canary, 1, email=False)]
        first += [other_event(n) for n in range(3)]
        then = [canary_event(canary, 2), canary_event(canary, 3)]
        for batch, interactions in ((first, 5), (then, 7)):
            async with httpx.AsyncClient(base_url=stack.processes["ingestion"].url, timeout=30) as client:
                sent = await client.post("/v1/events", content=orjson.dumps(batch),
                                         headers={**auth, "Content-Type": "application/cloudevents-batch+json"})
            assert sent.status_code == 202, sent.text

            async def stored():
                return await stack.fetchval("SELECT count(*) FROM timeline.entries WHERE tenant = $1"
                                            " AND kind = 'interaction'", TENANT) >= interactions or None

            await kafka_io.wait_for(stored, timeout=60, what=f"{interactions} interactions on the timeline")
        merges = await stack.fetchval("SELECT count(*) FROM identity.merges WHERE tenant = $1", TENANT)
        customer = await stack.fetchval("SELECT customer_id FROM timeline.entries WHERE tenant = $1"
                                        " AND event_id = 'mail-3'", TENANT)

        async def merged_on_timeline():
            return await stack.fetchval("SELECT count(DISTINCT customer_id) FROM timeline.entries WHERE tenant = $1"
                                        " AND event_id LIKE 'mail-%'", TENANT) == 1 or None

        await kafka_io.wait_for(merged_on_timeline, timeout=30, what="the merge on the timeline")

        # A dead letter of the customer's data: one of its sealed records where its consumer refuses it.
        ingested = await kafka_io.read_all(stack.bootstrap_servers, stack.topic(topics.INGESTED.name))
        record = next(r for r in ingested if b"mail-0" in r.value)
        await kafka_io.publish(stack.bootstrap_servers, stack.topic(topics.IDENTITY.name),
                               [(customer.encode(), record.value, list(record.headers))])

        async def parked():
            return await kafka_io.read_all(stack.bootstrap_servers, stack.topic(topics.IDENTITY.name) + ".dlq") or None

        dead = await kafka_io.wait_for(parked, timeout=30, what="the dead letter")

        downstream = [r for r in await kafka_io.read_all(stack.bootstrap_servers, stack.topic(topics.TIMELINE.name))
                      if orjson.loads(r.value)["event_id"].startswith("mail-") and dict(r.headers).get("ce_sealkey")]
        async with httpx.AsyncClient(base_url=stack.processes["timeline"].url, timeout=30) as client:
            before = (await client.get(f"/v1/customers/{customer}/timeline", headers=auth)).json()
            opened = [await open_as_downstream(client, auth, r) for r in downstream]
        shown = [e for e in before["entries"] if canary in (e.get("text") or "")]
        dump_before = pg_dump(stack.inspect_url)
        kafka_before = kafka_hits(data_dir, needles)
        sealed_topics = [topics.INBOUND, topics.INGESTED, topics.IDENTITY, topics.TIMELINE]
        plain_before = {f: n for f, n in kafka_before.items()
                        if any(f.startswith(stack.topic(t.name) + "-") for t in sealed_topics)}
        assert merges == 1, "the customer's two identities were merged"
        assert len(opened) == 4 and all(canary in o["text"] for o in opened), \
            "a downstream consumer opens the sealed entries with the keys the API hands out"
        assert len(shown) == 4, "before the erasure, the timeline API shows the customer's text"
        assert sum(dump_before.count(n) for n in needles) > 0, "before the erasure, the database holds the canary"
        assert any(f.startswith(stack.topic(topics.CUSTOMERS.name)) for f in kafka_before), \
            "before compaction, the customers topic holds the canary in a snapshot's identifiers"
        assert plain_before == {}, f"sealed topics carry no plaintext even before the erasure: {plain_before}"

        # The erasure request.
        async with httpx.AsyncClient(base_url=stack.processes["identity"].url, timeout=30) as client:
            erased = await client.post(f"/v1/identities/{customer}/erase", headers=auth)
        assert erased.status_code == 202, erased.text
        report = erased.json()
        assert report["erased_at"] and report["keys_shredded"] >= 1

        async def forgotten():
            rows = await stack.fetchval("SELECT count(*) FROM timeline.entries WHERE tenant = $1"
                                        " AND customer_id = $2", TENANT, customer)
            return rows == 0 or None

        await kafka_io.wait_for(forgotten, timeout=60, what="the timeline to erase the customer")
        await compact_now(stack.bootstrap_servers, stack.topic(topics.CUSTOMERS.name), customer)
        started = time.monotonic()

        async def compacted():
            return kafka_hits(data_dir, needles) == {} or None

        try:
            await kafka_io.wait_for(compacted, timeout=90, interval=1, what="the customers topic to be compacted")
        except TimeoutError:
            pass  # the assertion below prints what is left
        kafka_after = kafka_hits(data_dir, needles)
        compaction_s = time.monotonic() - started
        dump_after = pg_dump(stack.inspect_url)
        async with httpx.AsyncClient(base_url=stack.processes["timeline"].url, timeout=30) as client:
            after = await client.get(f"/v1/customers/{customer}/timeline", headers=auth)
            keys_after = {(await client.get(f"/v1/data-keys/{dict(r.headers)['ce_sealkey'].decode()}",
                                            headers=auth)).status_code for r in downstream}
        dlq_opened = await stack.opened(dead)
    finally:
        stack.stop_all()

    # Rebuilding the timeline from the log (every service stopped, the projection replayed from offset 0).
    env = stack.env()
    rebuilt = subprocess.run([sys.executable, "-m", "shared.cli", "rebuild", "timeline"], env=env, cwd=ROOT,
                             capture_output=True, text=True, timeout=300)
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    dump_rebuilt = pg_dump(stack.inspect_url)
    rows_rebuilt = await stack.fetchval("SELECT count(*) FROM timeline.entries WHERE tenant = $1"
                                        " AND kind = 'interaction'", TENANT)
    customer_rebuilt = await stack.fetchval("SELECT count(*) FROM timeline.entries WHERE tenant = $1"
                                            " AND customer_id = $2", TENANT, customer)
    logs = {p.name: p.read_bytes() for p in (proc.log_path for proc in procs)}
    log_lines = sum(text.count(b"\n") for text in logs.values())
    log_hits = {name: sum(text.count(n) for n in needles) for name, text in logs.items()}
    rebuild_hits = (rebuilt.stdout + rebuilt.stderr).lower().count(canary.lower())

    dump_hits = {"after": dump_tables(dump_after, needles), "rebuilt": dump_tables(dump_rebuilt, needles)}
    assert after.status_code == 404, "the erased customer is gone from the timeline API"
    assert keys_after == {410}, "the entries' keys are gone for downstream consumers too"
    assert kafka_after == {}, f"plaintext canary left in Kafka's data directory: {kafka_after}"
    assert dump_hits == {"after": {}, "rebuilt": {}}, f"plaintext canary in pg_dump: {dump_hits}"
    assert "sealed" in dlq_opened[0].data and "text" not in dlq_opened[0].data, \
        "the dead letter stays sealed and its key is gone"
    assert (rows_rebuilt, customer_rebuilt) == (3, 0), "the rebuild restores the other customers' interactions only"
    assert log_lines > 100 and sum(log_hits.values()) == 0 and rebuild_hits == 0, f"canary in logs: {log_hits}"
    print(f"\nerasure: a customer merged from two (linking identifier = the canary address); canary in pg_dump before {dump_tables(dump_before, needles)} and in "
          f"{sum(kafka_before.values())} places of the Kafka data directory (customers topic only: "
          f"{sorted(kafka_before)}) before; erasure answered 202 at {report['erased_at']}, "
          f"{report['keys_shredded']} data key(s) shredded; after: pg_dump 0, Kafka data directory "
          f"{sum(kafka_after.values())} (compacted {compaction_s:.1f} s after the roll), dead letter sealed, "
          f"timeline API {after.status_code}, data keys API {sorted(keys_after)} for the {len(downstream)} "
          f"sealed entries downstream had opened before; after a rebuild from the log: {rows_rebuilt} rows (the other "
          f"customers'), pg_dump 0; logs: {log_lines} DEBUG lines from {len(procs)} services, "
          f"{sum(log_hits.values())} hits")


async def test_an_upstream_erasure_request_erases_once_by_identifier_or_id(privacy_infra):
    stack = await new_stack(privacy_infra.bootstrap_servers, privacy_infra.admin_dsn)
    procs = [stack.start(s) for s in ("ingestion", "identity", "timeline")]
    try:
        for proc in procs:
            await proc.wait_ready()
        key = await stack.api_key(TENANT, ["ingest", "read"])
        batch = [other_event(n) for n in range(3)]
        async with httpx.AsyncClient(base_url=stack.processes["ingestion"].url, timeout=30) as client:
            sent = await client.post("/v1/events", content=orjson.dumps(batch), headers={
                "Authorization": f"Bearer {key}", "Content-Type": "application/cloudevents-batch+json"})
        assert sent.status_code == 202, sent.text

        async def stored():
            return await stack.fetchval("SELECT count(*) FROM timeline.entries WHERE tenant = $1", TENANT) >= 3 or None

        await kafka_io.wait_for(stored, timeout=60, what="3 entries")
        by_id = await stack.fetchval("SELECT customer_id FROM timeline.entries WHERE event_id = 'other-1'")

        def request(request_id: str, customer: dict) -> tuple[bytes, bytes, list]:
            headers = [("ce_specversion", b"1.0"), ("ce_id", request_id.encode()), ("ce_source", b"privacy-portal"),
                       ("ce_type", b"touchpoint.privacy.erasure_requested.v1"), ("ce_tenant", TENANT.encode()),
                       ("content-type", b"application/json")]
            return request_id.encode(), orjson.dumps({"customer": customer, "requested_at": "2026-11-24T09:00:00Z"}), headers

        requests = [request("dsr-1", {"identifiers": [{"type": "email", "value": " Someone0@Example.com "}]}),
                    request("dsr-1", {"identifiers": [{"type": "email", "value": " Someone0@Example.com "}]}),
                    request("dsr-2", {"customer_id": by_id}),
                    request("dsr-3", {"identifiers": [{"type": "email", "value": "nobody@example.com"}]}),
                    request("dsr-4", {"identifiers": [{"type": "email", "value": "not an address"}]})]
        await kafka_io.publish(stack.bootstrap_servers, stack.topic(topics.PRIVACY.name), requests)

        async def erased():
            left = await stack.fetchval("SELECT count(DISTINCT customer_id) FROM timeline.entries WHERE tenant = $1",
                                        TENANT)
            return left == 1 or None

        await kafka_io.wait_for(erased, timeout=60, what="two customers erased from the timeline")
        await asyncio.sleep(1)
        erasures = [e for e in await stack.opened(await kafka_io.read_all(
            stack.bootstrap_servers, stack.topic(topics.IDENTITY.name))) if e.type.endswith("customer_erased.v1")]
        dead = await kafka_io.read_all(stack.bootstrap_servers, stack.topic(topics.PRIVACY.name) + ".dlq")
        left = await stack.fetchval("SELECT event_id FROM timeline.entries WHERE tenant = $1", TENANT)
    finally:
        stack.stop_all()
    reasons = [dict(r.headers)["touchpoint.errors.reason"].decode() for r in dead]
    assert len(erasures) == 2, "one erasure per request, the redelivered request changes nothing"
    assert by_id in {e.data["customer_id"] for e in erasures}
    assert left == "other-2", "the customer no request named keeps its timeline"
    assert reasons == ["invalid_identifier"], "a request whose identifier is not one is parked with its reason"
    print(f"\nerasure requests on the privacy topic: 5 records (one redelivered, one naming nobody, one invalid) -> "
          f"{len(erasures)} erasures, 1 dead letter ({reasons[0]}), the third customer's timeline kept")
