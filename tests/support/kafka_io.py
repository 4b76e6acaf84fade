"""Publishing to and reading back from real Kafka topics in tests."""

from __future__ import annotations

import asyncio
import contextlib
import time

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.support.data import Event


def binary_record(event: Event) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    headers = [("ce_specversion", b"1.0"), ("ce_id", event.id.encode()), ("ce_source", event.source.encode()),
               ("ce_type", b"touchpoint.interaction.occurred.v1"), ("ce_tenant", event.tenant.encode()),
               ("content-type", b"application/json")]
    return event.id.encode(), orjson.dumps(event.data), headers


def structured_record(event: Event) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    return event.id.encode(), orjson.dumps(event.structured()), [("content-type", b"application/cloudevents+json")]


async def publish(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes | None, list]],
                  rate_per_s: float | None = None) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, linger_ms=5)
    await producer.start()
    try:
        start = time.monotonic()
        futures = []
        for n, (key, value, headers) in enumerate(records):
            if rate_per_s:
                delay = start + n / rate_per_s - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            futures.append(await producer.send(topic, value=value, key=key, headers=headers))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def read_all(bootstrap: str, topic: str) -> list:
    """Every record currently in ``topic``, from the beginning to the end offsets at call time."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic) or ())]
        if not parts:
            await consumer._client.force_metadata_update()  # noqa: SLF001 - metadata for an unsubscribed topic
            parts = [TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic) or ())]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        end = await consumer.end_offsets(parts)
        out = []
        while [tp for tp in parts if await consumer.position(tp) < end[tp]]:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                out.extend(records)
        return out
    finally:
        await consumer.stop()


async def lag(bootstrap: str, group: str, topic: str) -> int:
    """Records in ``topic`` not yet committed by ``group``."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
        await consumer._client.force_metadata_update()  # noqa: SLF001
        parts = [TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic) or ())]
        end = await consumer.end_offsets(parts)
        return sum(end[tp] - (committed[tp].offset if tp in committed else 0) for tp in parts)
    finally:
        await consumer.stop()
        await admin.close()


async def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    finally:
        await admin.close()


async def group_members(bootstrap: str, group: str, topic: str) -> int:
    """Members of ``group`` subscribed to ``topic`` once the group is stable (0 while it rebalances); a service
    process has one member per topic it consumes, times its consumers per topic."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    return sum(1 for response in described for g in response.groups if g[2] == "Stable"
               for m in g[5] if topic.encode() in m[3])


async def wait_for(predicate, timeout: float, interval: float = 0.25, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        result = await predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout}s (last: {result!r})")
        await asyncio.sleep(interval)


def as_consumer(records) -> "contextlib.AbstractContextManager[None]":
    """The tenant scope the batch consumer gives ``records`` (for tests that hand a batch to a processor)."""
    from shared.consumer import batch_tenants
    from shared.db import tenant_scope

    return tenant_scope(batch_tenants(records, "default"))
