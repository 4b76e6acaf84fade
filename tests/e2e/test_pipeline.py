"""The walking skeleton's path, end to end: upstream events → ingestion → identity → timeline, on real Kafka and
PostgreSQL with every service as its own process."""

from __future__ import annotations

import random
import time

import httpx
import orjson
import pytest

from tests.support import checks, kafka_io
from tests.support.data import generate, identifiers_of

pytestmark = pytest.mark.e2e
GROUPS = {"touchpoint-ingestion": "touchpoint.inbound.v1", "touchpoint-identity": "touchpoint.ingestion.interactions.v1",
          "touchpoint-timeline": "touchpoint.identity.v1"}


async def settled(stack) -> bool:
    for group, topic in GROUPS.items():
        if await kafka_io.lag(stack.bootstrap_servers, stack.prefix + group, stack.topic(topic)) != 0:
            return False
    return True


async def post_batches(url: str, key: str, events, size: int = 100) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        for i in range(0, len(events), size):
            body = orjson.dumps([e.structured() for e in events[i:i + size]])
            resp = await client.post(url + "/v1/events", content=body, headers={
                "Authorization": f"Bearer {key}", "Content-Type": "application/cloudevents-batch+json"})
            assert resp.status_code == 202, resp.text


async def test_interactions_reach_exactly_one_timeline_and_replay_changes_nothing(stack):
    tenant = "acme"
    events = generate(tenant, people=300, events=2000)
    assert len({e.data["channel"] for e in events}) >= 8
    key = await stack.api_key(tenant, ["ingest", "read"])
    started = time.monotonic()
    http_part, kafka_part = events[:400], events[400:]
    await post_batches(stack.processes["ingestion"].url, key, http_part)
    records = [kafka_io.structured_record(e) if n % 5 == 0 else kafka_io.binary_record(e)
               for n, e in enumerate(kafka_part)]
    await kafka_io.publish(stack.bootstrap_servers, stack.topic("touchpoint.inbound.v1"), records)

    async def all_stored():
        return await checks.timeline_count(stack, tenant) >= len(events)

    await kafka_io.wait_for(all_stored, timeout=120, what="2,000 timeline rows")
    stored_after = time.monotonic() - started
    await kafka_io.wait_for(lambda: settled(stack), timeout=60, what="consumer lag 0")
    print(f"\nstored after {stored_after:.1f}s, settled after {time.monotonic() - started:.1f}s")

    count, partition, customer_of = await checks.stored_partition(stack, tenant)
    checks.assert_known_answer(events, count, partition)
    published, per_id = await checks.downstream(stack, tenant)
    assert published == len(events) and len(per_id) == len(events), (published, len(per_id))

    snapshots = await checks.latest_snapshots(stack, tenant)
    conn = await stack.connect()
    merged_ids = [r["customer_id"] for r in await conn.fetch(
        "SELECT customer_id FROM identity.customers WHERE tenant = $1 AND merged_into IS NOT NULL", tenant)]
    merges = await conn.fetchval("SELECT count(*) FROM identity.merges WHERE tenant = $1", tenant)
    await conn.close()
    assert merged_ids, "the data set is built so that customers merge"
    assert all(snapshots.get(m, b"missing") is None for m in merged_ids), "merged-away ids end as tombstones"
    sizes = {}
    for cid in set(customer_of.values()):
        sizes[cid] = sum(1 for c in customer_of.values() if c == cid)
        assert orjson.loads(snapshots[cid])["entry_count"] == sizes[cid]
    print(f"\n2000 events: timeline rows {count}, customers {len(partition)}, merges {merges}, "
          f"merged-away ids {len(merged_ids)}, downstream entries {published} (distinct {len(per_id)})")

    rng = random.Random(3)
    async with httpx.AsyncClient(base_url=stack.processes["timeline"].url, timeout=10,
                                 headers={"Authorization": f"Bearer {key}"}) as client:
        for person in rng.sample(range(300), 25):
            phone = identifiers_of(person, tenant, rng)["phone"][1]  # national format, e.g. 0300000042
            resp = await client.get("/v1/customers/lookup", params={"type": "phone", "value": phone})
            assert resp.status_code == 200, resp.text
            expected = customer_of[next(e.id for e in events if e.person == person)]
            assert resp.json()["customer_id"] == expected
            assert resp.json()["entry_count"] == sum(1 for e in events if e.person == person)

    # Replay every event (both content modes) and let the pipeline settle: nothing changes.
    await kafka_io.publish(stack.bootstrap_servers, stack.topic("touchpoint.inbound.v1"),
                           [kafka_io.binary_record(e) for e in events])
    await kafka_io.wait_for(lambda: settled(stack), timeout=60, what="replay consumed")
    count2, partition2, _ = await checks.stored_partition(stack, tenant)
    published2, _ = await checks.downstream(stack, tenant)
    conn = await stack.connect()
    merges2 = await conn.fetchval("SELECT count(*) FROM identity.merges WHERE tenant = $1", tenant)
    await conn.close()
    assert (count2, partition2, published2, merges2) == (count, partition, published, merges)
    print(f"replay of 2000 events: timeline rows {count2}, downstream entries {published2}, merges {merges2}")


async def test_timeline_api_pages_and_filters(stack):
    tenant = "pager"
    events = generate(tenant, people=1, events=120, seed=11)
    key = await stack.api_key(tenant, ["ingest", "read"])
    await post_batches(stack.processes["ingestion"].url, key, events)

    async def stored():
        return await checks.timeline_count(stack, tenant) >= len(events)

    await kafka_io.wait_for(stored, timeout=60, what="120 rows")
    _, _, customer_of = await checks.stored_partition(stack, tenant)
    customer = next(iter(customer_of.values()))
    async with httpx.AsyncClient(base_url=stack.processes["timeline"].url, timeout=10,
                                 headers={"Authorization": f"Bearer {key}"}) as client:
        seen, cursor = [], None
        while True:
            resp = await client.get(f"/v1/customers/{customer}/timeline", params={"limit": 25, **({"cursor": cursor} if cursor else {})})
            assert resp.status_code == 200
            body = resp.json()
            seen.extend(body["entries"])
            cursor = body["next_cursor"]
            if not cursor:
                break
        assert len(seen) == 120 and len({e["entry_id"] for e in seen}) == 120
        times = [e["occurred_at"] for e in seen]
        assert times == sorted(times, reverse=True), "newest first, by when it happened"
        channel = seen[0]["channel"]
        resp = await client.get(f"/v1/customers/{customer}/timeline", params={"channel": channel, "limit": 500})
        filtered = resp.json()["entries"]
        assert filtered and all(e["channel"] == channel for e in filtered)
        assert len(filtered) == sum(1 for e in events if e.data["channel"] == channel)
        middle = sorted(times)[60]
        resp = await client.get(f"/v1/customers/{customer}/timeline", params={"since": middle, "limit": 500})
        assert len(resp.json()["entries"]) == sum(1 for t in times if t >= middle)
        other = await stack.api_key("someone-else", ["read"])
        resp = await client.get(f"/v1/customers/{customer}/timeline", headers={"Authorization": f"Bearer {other}"})
        assert resp.status_code == 404, "another tenant's customer does not exist for you"
        resp = await client.get(f"/v1/customers/{customer}/timeline", headers={"Authorization": "Bearer tp_x_y"})
        assert resp.status_code == 401
