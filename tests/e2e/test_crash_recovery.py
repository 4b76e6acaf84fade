"""``kill -9`` of the timeline and identity processes while events flow: nothing lost, nothing applied twice."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.support import checks, kafka_io
from tests.support.data import generate

pytestmark = pytest.mark.e2e


async def test_kill_9_identity_and_timeline_mid_stream(stack):
    tenant = "crash"
    events = generate(tenant, people=300, events=2000, seed=21)
    inbound = stack.topic("touchpoint.inbound.v1")
    sender = asyncio.create_task(kafka_io.publish(
        stack.bootstrap_servers, inbound, [kafka_io.binary_record(e) for e in events], rate_per_s=60))
    kills = []
    for round_ in range(2):
        await asyncio.sleep(1.5)
        stored = await checks.timeline_count(stack, tenant)

        async def progressed(since: int = stored) -> bool:
            return await checks.timeline_count(stack, tenant) > since

        # Kill only while events are being applied (on a loaded machine the first rows may take a while).
        await kafka_io.wait_for(progressed, timeout=60, interval=0.1, what="rows being stored")
        for name in ("timeline", "identity"):
            before = await checks.timeline_count(stack, tenant)
            stack.processes[name].kill()
            kills.append((round_, name, before))
            await asyncio.sleep(0.7)
        for name in ("timeline", "identity"):
            stack.processes[name].start()
        for name in ("timeline", "identity"):
            await stack.processes[name].wait_ready()
    await sender
    started = time.monotonic()

    async def all_stored():
        return await checks.timeline_count(stack, tenant) >= len(events)

    await kafka_io.wait_for(all_stored, timeout=120, what="2,000 rows after the kills")
    await asyncio.sleep(2)  # anything duplicated would arrive in this window
    count, partition, _ = await checks.stored_partition(stack, tenant)
    checks.assert_known_answer(events, count, partition)
    conn = await stack.connect()
    processed = await conn.fetchval("SELECT count(*) FROM identity.processed_events WHERE tenant = $1", tenant)
    await conn.close()
    published, per_id = await checks.downstream(stack, tenant)
    assert processed == len(events)
    assert len(per_id) == len(events), f"{len(events) - len(per_id)} entries missing downstream"
    assert all(0 < before < len(events) for _, _, before in kills), f"kills were not mid-stream: {kills}"
    print(f"\nkills (round, process, rows stored at the kill): {kills}")
    print(f"after recovery ({time.monotonic() - started:.1f}s after the last send): timeline rows {count}, "
          f"lost {len(events) - count}, identity applications {processed}, downstream distinct {len(per_id)}, "
          f"downstream redeliveries {published - len(per_id)}")
