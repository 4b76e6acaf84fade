"""Two identity instances in one consumer group, 20,000 events over a small pool of shared identifiers on
different partitions: exactly one customer per person, and the same identity graph as one instance builds from
the same input. One instance runs two members of the group (``resolve_consumers``), so batches run concurrently
both across and within processes."""

from __future__ import annotations

import asyncio
import random
import uuid

import pytest

from shared import topics
from tests.support import checks, kafka_io
from tests.support.data import Event
from tests.support.stack import new_stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
async def stack(infra):
    s = await new_stack(infra.bootstrap_servers, infra.admin_dsn)
    s.start("ingestion")
    s.start("identity", name="identity-a", TOUCHPOINT_RESOLVE_CONSUMERS="2")
    s.start("identity", name="identity-b")
    s.start("timeline")
    for proc in s.processes.values():
        await proc.wait_ready()
    yield s
    s.stop_all()


def contested_events(tenant: str, people: int, count: int, seed: int = 5) -> list[Event]:
    """Each event carries 1–3 of its person's identifiers, so one person's events have different partition keys
    (user_id, email or phone first) and reach both instances at once; one event per person carries all three."""
    rng = random.Random(seed)
    out = []
    for n in range(count):
        person = n % people
        ids = [{"type": "user_id", "value": f"u{person}"}, {"type": "email", "value": f"p{person}@example.net"},
               {"type": "phone", "value": f"+1 202 555 {person:04d}"}]
        chosen = ids if n < people else rng.sample(ids, rng.randint(1, 3))
        out.append(Event(str(uuid.UUID(int=rng.getrandbits(128))), "load", tenant, person,
                         {"channel": "chat", "direction": "inbound", "identifiers": chosen}))
    rng.shuffle(out)
    return out


async def graph(stack, tenant: str) -> set[frozenset[str]]:
    """The identity graph as a partition: each live customer's identifiers."""
    rows = await stack.fetch("SELECT customer_id, array_agg(id_type || ':' || value) AS idents"
                             " FROM identity.identifiers WHERE tenant = $1 GROUP BY customer_id", tenant)
    return {frozenset(r["idents"]) for r in rows}


async def processed(stack, tenant: str) -> int:
    return await stack.fetchval("SELECT count(*) FROM identity.processed_events WHERE tenant = $1", tenant)


async def test_two_identity_instances_create_no_duplicate_customers(stack, infra):
    async def both_joined():
        return await kafka_io.group_members(stack.bootstrap_servers, stack.prefix + "touchpoint-identity",
                                   stack.topic(topics.INGESTED.name)) == 3

    await kafka_io.wait_for(both_joined, timeout=60, what="three members: two in instance a, one in b")
    tenant = "race"
    events = contested_events(tenant, people=150, count=20_000)
    records = [kafka_io.binary_record(e) for e in events]
    await kafka_io.publish(stack.bootstrap_servers, stack.topic("touchpoint.inbound.v1"), records)

    async def all_stored():
        return await checks.timeline_count(stack, tenant) >= len(events)

    await kafka_io.wait_for(all_stored, timeout=300, what="all rows")
    await asyncio.sleep(1)
    count, partition, _ = await checks.stored_partition(stack, tenant)
    checks.assert_known_answer(events, count, partition)
    conn = await stack.connect()
    live = await conn.fetchval(
        "SELECT count(*) FROM identity.customers WHERE tenant = $1 AND merged_into IS NULL", tenant)
    per_instance = await conn.fetchval("SELECT count(DISTINCT customer_id) FROM identity.identifiers WHERE tenant = $1", tenant)
    await conn.close()
    assert live == 150 and per_instance == 150
    two = await graph(stack, tenant)

    # The same input through one identity instance on a stack of its own.
    single = await new_stack(infra.bootstrap_servers, infra.admin_dsn)
    try:
        single.start("ingestion")
        single.start("identity")
        for proc in single.processes.values():
            await proc.wait_ready()
        await kafka_io.publish(single.bootstrap_servers, single.topic("touchpoint.inbound.v1"), records)

        async def all_resolved():
            return await processed(single, tenant) >= len(events)
        await kafka_io.wait_for(all_resolved, timeout=300, what="all events resolved by one instance")
        one = await graph(single, tenant)
    finally:
        single.stop_all()
    links = sum(len(c) for c in two)
    assert two == one and links == 450, (len(two), len(one), links)
    print(f"\ntwo identity instances, {len(events)} events for 150 people: customers {live}, "
          f"timeline groups {len(partition)}, rows {count}; graph equal to one instance's: {len(one)} customers, "
          f"{links} identifier links (duplicates 0, lost links 0)")
