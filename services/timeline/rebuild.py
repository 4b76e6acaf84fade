"""Rebuild the timeline projection from its topics: ``python -m services.timeline.rebuild``.

Run it with the timeline service stopped (it refuses while the group has members). It empties the projection
(keeping the list of erased customers, so an erasure stays an erasure), replays ``touchpoint.identity.v1``, then
``touchpoint.routing.v1``, ``touchpoint.notification.v1`` and ``touchpoint.feedback.v1``, each from the beginning
to its current end, through the same projection code with publishing switched off (downstream topics already
carry these entries), and moves the service's consumer group to those ends. Routing, notification and feedback
entries replayed after every merge land on the survivors directly.
"""

from __future__ import annotations

import asyncio
import sys

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from rich.progress import Progress

from services.timeline.projection import TimelineProjection
from services.timeline.settings import TimelineSettings
from shared import topics
from shared.db import ALL_TENANTS, create_pool
from shared.ops import partitions

TABLES = ("entries", "outbox", "aliases", "applied_merges", "customers", "identifiers", "splits")
# Identity first: entries replayed after every merge and split land on their final owner directly.
REPLAYED = (topics.IDENTITY, topics.ROUTING, topics.NOTIFICATIONS, topics.FEEDBACK)


class _Silent:
    async def send_all(self, records) -> None:  # noqa: ANN001 - the producer port, publishing nothing
        return None


async def group_members(bootstrap: str, group: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return sum(len(g[5]) for response in await admin.describe_consumer_groups([group]) for g in response.groups)
    finally:
        await admin.close()


async def replay(consumer: AIOKafkaConsumer, parts: list[TopicPartition], projection: TimelineProjection,
                 progress: Progress) -> int:
    """Feed one topic's ``parts`` from their beginning to their current end to ``projection``; commits the group
    at that end."""
    if not parts:
        return 0
    consumer.assign(parts)
    await consumer.seek_to_beginning(*parts)
    end = await consumer.end_offsets(parts)
    done = 0
    task = progress.add_task(f"replaying {parts[0].topic}", total=sum(end.values()))
    while [tp for tp in parts if await consumer.position(tp) < end[tp]]:
        fetched = (await consumer.getmany(timeout_ms=500, max_records=1000)).values()
        batch = [r for rs in fetched for r in rs if r.offset < end[TopicPartition(r.topic, r.partition)]]
        if batch:
            await projection.process(batch)
            done += len(batch)
            progress.update(task, advance=len(batch))
    await consumer.commit({tp: end[tp] for tp in parts})
    return done


async def rebuild(settings: TimelineSettings) -> int:
    if await group_members(settings.kafka_bootstrap_servers, settings.group(settings.group_id)):
        raise SystemExit("the timeline service is running (its consumer group has members): stop it first")
    pool = await create_pool(settings.database_url.get_secret_value(), 1, 2, default_scope=ALL_TENANTS)
    projection = TimelineProjection(pool, _Silent(), "unused", "unused")
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, group_id=settings.group(settings.group_id),
                                enable_auto_commit=False)
    await consumer.start()
    try:
        # Partitions of every topic are looked up before any is assigned: once the consumer has an
        # assignment, its metadata covers only the assigned topics.
        sources = [await partitions(consumer, settings.topic_prefix + spec.name) for spec in REPLAYED]
        async with pool.acquire() as conn, conn.transaction():
            for table in TABLES:  # DELETE, not TRUNCATE: the services' role may only touch rows RLS shows it
                await conn.execute(f"DELETE FROM timeline.{table}")
        with Progress() as progress:
            return sum([await replay(consumer, parts, projection, progress) for parts in sources])
    finally:
        await consumer.stop()
        await pool.close()


if __name__ == "__main__":
    replayed = asyncio.run(rebuild(TimelineSettings()))
    print(f"rebuilt the timeline from {replayed} records")
    sys.exit(0)
