"""Identity's merge outbox on real PostgreSQL: a batch that merges publishes its merge right after; a merge a
crash left unpublished (its batch redelivered elsewhere writes none) goes out with the next sweep, which the
first batch of an instance runs and then one batch every ``SWEEP_SECONDS``; batches in between do not read the
outbox."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import orjson
import pytest
from aiokafka.structs import ConsumerRecord

from services.identity.service import SWEEP_SECONDS, IdentityService
from shared import topics
from shared.contracts import types
from shared.db import ALL_TENANTS, create_pool
from tests.support.recording import RecordingProducer, ingested_record
from tests.support.stack import new_stack

pytestmark = pytest.mark.integration
T = "acme"
NOW = datetime(2026, 11, 1, 12, tzinfo=timezone.utc)


def record(event_id: str, *identifiers: tuple[str, str], minutes: int = 0) -> ConsumerRecord:
    return ingested_record(T, NOW + timedelta(minutes=minutes), event_id, *identifiers)


class CrashBeforeMergesLeave(RecordingProducer):
    """Acknowledges resolved interactions; the process dies before its merges are acknowledged."""

    async def send_all(self, records) -> None:
        if any(dict(r.headers).get("ce_type") == types.CUSTOMERS_MERGED.encode() for r in records):
            raise ConnectionError("killed")
        await super().send_all(records)


def merges(producer: RecordingProducer) -> list[str]:
    return [orjson.loads(r.value)["merge_id"] for r in producer.to(topics.IDENTITY.name)
            if dict(r.headers)["ce_type"] == types.CUSTOMERS_MERGED.encode()]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_merges_leave_after_their_batch_and_what_a_crash_left_with_the_next_sweep(infra):
    stack = await new_stack(infra.bootstrap_servers, infra.admin_dsn)
    pool = await create_pool(stack.database_url, default_scope=ALL_TENANTS)
    try:
        # Two customers, then an event that links them: a merge, committed with its batch.
        first = IdentityService(pool, RecordingProducer(), topics.IDENTITY.name)
        await first.process([record("e1", ("email", "ana@example.com")), record("e2", ("user_id", "u-1"), minutes=1)])
        crashing = IdentityService(pool, CrashBeforeMergesLeave(), topics.IDENTITY.name)
        with pytest.raises(ConnectionError):
            await crashing.process([record("e3", ("email", "ana@example.com"), ("user_id", "u-1"), minutes=2)])
        (left,) = await pool.fetch("SELECT merge_id FROM identity.merges WHERE NOT published")

        # Another instance gets the batch again: already processed, no merge written; its first batch sweeps.
        clock, producer = Clock(), RecordingProducer()
        other = IdentityService(pool, producer, topics.IDENTITY.name, clock=clock)
        await other.process([record("e3", ("email", "ana@example.com"), ("user_id", "u-1"), minutes=2)])
        assert merges(producer) == [left["merge_id"]]

        # An operator's change whose publish failed, left in the outbox: batches without merges do not read the
        # outbox until the sweep is due.
        await pool.execute("INSERT INTO identity.changes (change_id, tenant, event_type, subject, payload)"
                           " VALUES ('change-1', $1, $2, 'c-1', '{}')", T, types.CUSTOMER_ERASED)
        clock.now += SWEEP_SECONDS / 2
        await other.process([record("e4", ("email", "bo@example.com"), minutes=3)])
        assert await pool.fetchval("SELECT count(*) FROM identity.changes WHERE NOT published") == 1
        clock.now += SWEEP_SECONDS
        await other.process([record("e5", ("email", "cy@example.com"), minutes=4)])
        assert await pool.fetchval("SELECT count(*) FROM identity.changes WHERE NOT published") == 0
        assert [r for r in producer.to(topics.IDENTITY.name) if dict(r.headers)["ce_id"] == b"change-1"]

        # A batch that merges publishes its merge right away, sweep due or not.
        await other.process([record("e6", ("email", "bo@example.com"), ("user_id", "u-2"), minutes=5),
                             record("e7", ("user_id", "u-2"), ("email", "cy@example.com"), minutes=6)])
        assert await pool.fetchval("SELECT count(*) FROM identity.merges WHERE NOT published") == 0
        assert len(merges(producer)) == 2
    finally:
        await pool.close()


class SlowAcks(RecordingProducer):
    """A broker that takes its time to acknowledge: a second batch finishes while the first still publishes."""

    async def send_all(self, records) -> None:
        await asyncio.sleep(0.2)
        await super().send_all(records)


async def test_batches_processed_together_publish_each_merge_once(infra):
    """Several consumers in one process call one service concurrently; each batch that merged reads the outbox
    after it committed. One reads and publishes at a time, so a merge is not read again while its publish is
    still in flight and published twice."""
    stack = await new_stack(infra.bootstrap_servers, infra.admin_dsn)
    pool = await create_pool(stack.database_url, default_scope=ALL_TENANTS)
    try:
        producer = SlowAcks()
        service = IdentityService(pool, producer, topics.IDENTITY.name)
        await service.process([record("e1", ("email", "ana@example.com")), record("e2", ("user_id", "u-1"), minutes=1),
                               record("e3", ("email", "bo@example.com")), record("e4", ("user_id", "u-2"), minutes=1)])
        await asyncio.gather(
            service.process([record("e5", ("email", "ana@example.com"), ("user_id", "u-1"), minutes=2)]),
            service.process([record("e6", ("email", "bo@example.com"), ("user_id", "u-2"), minutes=2)]),
        )
        published = merges(producer)
        print(f"\nmerges published: {published}")
        assert len(published) == 2 and len(set(published)) == 2
        assert await pool.fetchval("SELECT count(*) FROM identity.merges WHERE NOT published") == 0
    finally:
        await pool.close()
