"""Tenant isolation twice over: every API answers 404 for another tenant's objects, and PostgreSQL's row-level
security hides them even from a query that forgets its tenant filter.

The services connect as an application role that owns nothing and cannot bypass RLS; every table with a
``tenant`` column has ENABLE and FORCE ROW LEVEL SECURITY and a policy (the metadata check fails otherwise).
"""

from __future__ import annotations

import asyncio
import random

import asyncpg
import httpx
import pytest

from shared import db
from tests.support import checks, kafka_io
from tests.support.data import generate

pytestmark = pytest.mark.e2e


async def test_every_tenant_table_has_forced_row_level_security_and_the_app_role_cannot_bypass_it(stack):
    conn = await stack.connect()  # superuser: sees the catalogue as it is
    try:
        tables = await db.tenant_tables(conn)
        unprotected = await db.unprotected_tables(conn)
        app_user = stack.database_url.split("://", 1)[1].split(":", 1)[0]
        role = await conn.fetchrow("SELECT rolsuper, rolbypassrls, rolcreaterole FROM pg_roles WHERE rolname = $1",
                                   app_user)
        owned = await conn.fetchval(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = ANY($1::text[]) AND pg_get_userbyid(c.relowner) = $2", db.schemas(), app_user)
    finally:
        await conn.close()
    assert unprotected == [], f"tenant tables without forced RLS and a policy: {unprotected}"
    assert len(tables) >= 40, f"only {len(tables)} tenant tables found: is the metadata query still right?"
    assert (role["rolsuper"], role["rolbypassrls"], role["rolcreaterole"]) == (False, False, False)
    assert owned == 0, f"the application role owns {owned} relations"
    print(f"\nRLS metadata: {len(tables)} tenant tables, all ENABLE + FORCE with a policy; "
          f"role {app_user}: not superuser, no BYPASSRLS, owns 0 relations")


async def test_a_thousand_cross_tenant_requests_leak_nothing(stack):
    events_a = generate("tenant-a", people=20, events=60, seed=41)
    events_b = generate("tenant-b", people=200, events=400, seed=42)
    inbound = stack.topic("touchpoint.inbound.v1")
    await kafka_io.publish(stack.bootstrap_servers, inbound, [kafka_io.binary_record(e) for e in events_a + events_b])

    async def both_stored():
        return (await checks.timeline_count(stack, "tenant-a") >= 60
                and await checks.timeline_count(stack, "tenant-b") >= 400)

    await kafka_io.wait_for(both_stored, timeout=90, what="both tenants' timelines")
    b_customers = [r["customer_id"] for r in await stack.fetch(
        "SELECT DISTINCT customer_id FROM timeline.entries WHERE tenant = 'tenant-b'")]
    b_set = set(b_customers)
    b_values = [i["value"] for e in events_b for i in e.data["identifiers"]]
    key_a = await stack.api_key("tenant-a", ["read", "admin"])
    key_b = await stack.api_key("tenant-b", ["read"])
    auth = {"Authorization": f"Bearer {key_a}"}
    timeline, identity = stack.processes["timeline"].url, stack.processes["identity"].url
    probes = [
        lambda c: f"{timeline}/v1/customers/{c}/timeline",
        lambda c: f"{timeline}/v1/customers/{c}",
        lambda c: f"{timeline}/v1/console/customers/{c}",
        lambda c: f"{identity}/v1/identities/{c}",
        lambda c: f"{identity}/v1/identities/{c}/explain",
    ]
    rng = random.Random(7)
    statuses: dict[int, int] = {}
    leaked = 0
    async with httpx.AsyncClient(timeout=30) as client:
        sem = asyncio.Semaphore(20)

        async def probe(n: int) -> None:
            nonlocal leaked
            async with sem:
                if n % 10 == 9:  # searches by another tenant's identifier values find none of its customers
                    value = rng.choice(b_values).strip()
                    resp = await client.get(f"{timeline}/v1/console/search", params={"q": value}, headers=auth)
                    found = resp.status_code != 200 or any(c in resp.text for c in b_set) or "tenant-b" in resp.text
                else:
                    customer = rng.choice(b_customers)
                    resp = await client.get(rng.choice(probes)(customer), headers=auth)
                    found = resp.status_code != 404 or customer in resp.text or "tenant-b" in resp.text
                statuses[resp.status_code] = statuses.get(resp.status_code, 0) + 1
                leaked += found

        await asyncio.gather(*(probe(n) for n in range(1000)))
        own = await client.get(f"{timeline}/v1/customers/{b_customers[0]}/timeline",
                               headers={"Authorization": f"Bearer {key_b}"})
    assert own.status_code == 200 and own.json()["entries"], "tenant B's own key reads its customer"
    assert leaked == 0, f"{leaked} of 1,000 cross-tenant requests returned tenant B's data"
    print(f"\ncross-tenant requests: 1,000 with tenant A's key for tenant B's customers → statuses {statuses}, "
          f"rows leaked {leaked}")


async def test_row_level_security_hides_other_tenants_even_without_a_tenant_filter(stack):
    await kafka_io.publish(stack.bootstrap_servers, stack.topic("touchpoint.inbound.v1"),
                           [kafka_io.binary_record(e) for e in generate("rls-x", people=5, events=20, seed=43)])

    async def stored():
        return await checks.timeline_count(stack, "rls-x") >= 20

    await kafka_io.wait_for(stored, timeout=60, what="tenant rls-x's rows")
    inspect = await stack.connect()
    app = await asyncpg.connect(stack.database_url)  # the services' role, as a buggy query would use it
    try:
        tables = [f'"{r["schema"]}"."{r["table"]}"' for r in await db.tenant_tables(inspect)]
        populated = {t: await inspect.fetchval(f"SELECT count(*) FROM {t}") for t in tables}
        unscoped = {t: await app.fetchval(f"SELECT count(*) FROM {t}") for t in tables}
        await app.execute("SELECT set_config('touchpoint.tenants', 'nobody', false)")
        other = {t: await app.fetchval(f"SELECT count(*) FROM {t}") for t in tables}
        await app.execute("SELECT set_config('touchpoint.tenants', 'rls-x', false)")
        own = await app.fetchval("SELECT count(*) FROM timeline.entries")
        foreign = await app.fetchval("SELECT count(*) FROM timeline.entries WHERE tenant <> 'rls-x'")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):  # WITH CHECK: no writing into another tenant
            await app.execute("INSERT INTO platform.tenants (tenant, name) VALUES ('someone-else', 'x')")
    finally:
        await app.close()
        await inspect.close()
    rows = sum(populated.values())
    assert rows > 20 and sum(unscoped.values()) == 0 and sum(other.values()) == 0
    assert own >= 20 and foreign == 0
    print(f"\nRLS without a tenant filter: {rows} rows in {sum(1 for n in populated.values() if n)} populated tenant "
          f"tables; the application role sees 0 with no tenant set, 0 as another tenant, only its own {own} "
          f"timeline rows as rls-x; writing another tenant's row is refused")


async def test_a_key_over_its_rate_gets_429_and_other_keys_do_not_notice(stack):
    limited = stack.start("timeline", name="timeline-limited", TOUCHPOINT_API_RATE_PER_SECOND="5",
                          TOUCHPOINT_API_RATE_BURST="10")
    await limited.wait_ready()
    busy, quiet = await stack.api_key("rate-a", ["read"]), await stack.api_key("rate-b", ["read"])
    async with httpx.AsyncClient(base_url=limited.url, timeout=30) as client:
        answers = await asyncio.gather(*(client.get("/v1/customers/nobody", headers={"Authorization": f"Bearer {busy}"})
                                         for _ in range(40)))
        other = await client.get("/v1/customers/nobody", headers={"Authorization": f"Bearer {quiet}"})
    statuses = [a.status_code for a in answers]
    refused = [a for a in answers if a.status_code == 429]
    assert statuses.count(404) >= 10 and len(refused) >= 20, statuses
    assert all(int(a.headers["retry-after"]) >= 1 and a.json()["error"]["reason"] == "rate_limited" for a in refused)
    assert other.status_code == 404, "another key of another tenant is not limited by the first one's traffic"
    limited.terminate()
    print(f"\nrate limit 5/s, burst 10: 40 requests at once → {statuses.count(404)} answered, {len(refused)} × 429 "
          f"with Retry-After; another key at the same moment → {other.status_code}")
