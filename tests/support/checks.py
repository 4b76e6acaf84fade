"""Assertions on what a stack stored and published, against the generator's known answer."""

from __future__ import annotations

from collections import Counter, defaultdict

from tests.support import kafka_io
from tests.support.data import Event, expected_partition
from tests.support.stack import Stack


async def timeline_count(stack: Stack, tenant: str) -> int:
    conn = await stack.connect()
    try:
        return await conn.fetchval("SELECT count(*) FROM timeline.entries WHERE tenant = $1", tenant)
    finally:
        await conn.close()


async def stored_partition(stack: Stack, tenant: str) -> tuple[int, set[frozenset[str]], dict[str, str]]:
    """(row count, events grouped by customer, event id → customer id)."""
    conn = await stack.connect()
    try:
        rows = await conn.fetch("SELECT event_id, customer_id FROM timeline.entries WHERE tenant = $1", tenant)
    finally:
        await conn.close()
    groups: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        groups[r["customer_id"]].add(r["event_id"])
    return len(rows), {frozenset(g) for g in groups.values()}, {r["event_id"]: r["customer_id"] for r in rows}


async def downstream(stack: Stack, tenant: str) -> tuple[int, Counter]:
    """(records on the timeline topic for this tenant, count per CloudEvents id)."""
    records = await kafka_io.read_all(stack.bootstrap_servers, stack.topic("touchpoint.timeline.v1"))
    ids = Counter()
    for r in records:
        headers = dict(r.headers)
        if headers.get("ce_tenant") == tenant.encode():
            ids[headers["ce_id"].decode()] += 1
    return sum(ids.values()), ids


async def latest_snapshots(stack: Stack, tenant: str) -> dict[str, bytes | None]:
    """Latest value per key on the customers topic (None = tombstone), for keys of this tenant's customers."""
    records = await kafka_io.read_all(stack.bootstrap_servers, stack.topic("touchpoint.customers.v1"))
    latest: dict[str, tuple[int, bytes | None]] = {}
    for r in records:
        headers = dict(r.headers)
        if r.value is not None and headers.get("ce_tenant") != tenant.encode():
            continue
        key = r.key.decode()
        if key not in latest or r.timestamp >= latest[key][0]:
            latest[key] = (r.timestamp, r.value)
    return {k: v for k, (_, v) in latest.items()}


def assert_known_answer(events: list[Event], count: int, partition: set[frozenset[str]]) -> None:
    assert count == len(events), f"{count} timeline rows for {len(events)} events"
    expected = expected_partition(events)
    wrong = len(expected ^ partition)
    assert partition == expected, f"{wrong} customer groups differ from the known answer"
