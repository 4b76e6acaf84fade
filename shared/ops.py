"""Kafka-side operations used by the ``touchpoint`` command: lag, reading a topic to its end, dead letters.

Dead letters are printed without their values (which may hold personal data): origin, reason and error only.
"""

from __future__ import annotations

from typing import AsyncIterator

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared.topics import REGISTRY

ERROR_HEADER_PREFIXES = ("__connect.errors.", "touchpoint.errors.")


def consumer_groups(prefix: str = "") -> list[tuple[str, str]]:
    """(group id, topic) for every service subscription in the registry."""
    return [(f"{prefix}touchpoint-{c}", spec.qualified(prefix)) for spec in REGISTRY for c in spec.consumers
            if c not in ("downstream", "upstream")]


async def partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    await consumer._client.force_metadata_update()  # noqa: SLF001 - metadata of a topic we do not subscribe to
    return [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]


async def _positions(admin: AIOKafkaAdminClient, consumer: AIOKafkaConsumer, group: str,
                     topic: str) -> list[tuple[int, int, int]]:
    """(partition, committed offset, end offset) of ``group`` on ``topic``; nothing committed counts as 0."""
    committed = await admin.list_consumer_group_offsets(group)
    parts = await partitions(consumer, topic)
    end = await consumer.end_offsets(parts) if parts else {}
    return [(tp.partition, _offset(committed, tp), end[tp]) for tp in parts]


async def lag(bootstrap: str, prefix: str = "") -> list[dict]:
    """Per partition of every subscription: committed offset, end offset and lag. A group that does not exist
    in the cluster (its service is not deployed here, or has never started) has one row with ``running``
    False and no lag: it is reported, but it does not hold up "total lag 0"."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        rows = []
        existing = {g[0] for g in await admin.list_consumer_groups()}
        for group, topic in consumer_groups(prefix):
            if group not in existing:
                rows.append({"group": group, "topic": topic, "running": False, "lag": 0})
                continue
            for partition, done, end in await _positions(admin, consumer, group, topic):
                rows.append({"group": group, "topic": topic, "running": True, "partition": partition,
                             "committed": done, "end": end, "lag": end - done})
        return rows
    finally:
        await consumer.stop()
        await admin.close()


class LagProbe:
    """Long-lived clients that answer "how far behind is the furthest consumer group?" (ingestion's
    back-pressure asks every few seconds). Groups not present in the cluster are skipped.

    A probe costs one group listing, one committed-offsets request per group present and one end-offsets request
    for all their partitions. Partition counts come from the client's metadata, which tracks only the
    subscribed topics (refreshed when one is missing, and by the client every ``metadata_max_age_ms``): forcing a
    refresh per probe made the client fetch and parse the metadata of every topic in the cluster, per group."""

    def __init__(self, bootstrap: str, prefix: str = "") -> None:
        self._admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5_000)
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                          request_timeout_ms=5_000)
        self._groups = consumer_groups(prefix)
        self._started = False

    async def max_lag(self) -> int:
        if not self._started:
            await self._admin.start()
            await self._consumer.start()
            await self._consumer._client.set_topics({t for _, t in self._groups})  # noqa: SLF001 - no subscription
            self._started = True
        existing = {g[0] for g in await self._admin.list_consumer_groups()}
        present = [(group, topic) for group, topic in self._groups if group in existing]
        parts = await self._partitions({topic for _, topic in present})
        every = [tp for tps in parts.values() for tp in tps]
        end = await self._consumer.end_offsets(every) if every else {}
        worst = 0
        for group, topic in present:
            committed = await self._admin.list_consumer_group_offsets(group)
            worst = max(worst, sum(end[tp] - _offset(committed, tp) for tp in parts[topic]))
        return worst

    async def _partitions(self, topics: set[str]) -> dict[str, list[TopicPartition]]:
        if any(self._consumer.partitions_for_topic(t) is None for t in topics):
            await self._consumer._client.force_metadata_update()  # noqa: SLF001 - a topic created since
        return {t: [TopicPartition(t, p) for p in sorted(self._consumer.partitions_for_topic(t) or ())] for t in topics}

    async def stop(self) -> None:
        if self._started:
            await self._consumer.stop()
            await self._admin.close()


def _offset(committed: dict, tp: TopicPartition) -> int:
    """The committed offset of a partition; nothing committed counts as 0."""
    return committed[tp].offset if tp in committed and committed[tp].offset >= 0 else 0


async def read_to_end(bootstrap: str, topic: str, group_id: str | None = None) -> AsyncIterator:
    """Yield the records of ``topic`` from the group's position (or the beginning) up to the end offsets of now."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        parts = await partitions(consumer, topic)
        if not parts:
            return
        consumer.assign(parts)
        if group_id is None:
            await consumer.seek_to_beginning(*parts)
        end = await consumer.end_offsets(parts)
        while [tp for tp in parts if await consumer.position(tp) < end[tp]]:
            for records in (await consumer.getmany(timeout_ms=500, max_records=1000)).values():
                for record in records:
                    if record.offset < end[TopicPartition(record.topic, record.partition)]:
                        yield record
        if group_id is not None:
            await consumer.commit({tp: end[tp] for tp in parts})
    finally:
        await consumer.stop()


def describe_dead_letter(record) -> dict:
    headers = {k: (v.decode(errors="replace") if v is not None else None) for k, v in record.headers}
    return {
        "offset": record.offset,
        "origin": f"{headers.get('__connect.errors.topic')}[{headers.get('__connect.errors.partition')}]"
                  f"@{headers.get('__connect.errors.offset')}",
        "reason": headers.get("touchpoint.errors.reason"),
        "error": headers.get("__connect.errors.exception.class.name"),
        "message": headers.get("__connect.errors.exception.message"),
        "value_bytes": len(record.value or b""),
    }


async def redrive(bootstrap: str, dead_letter_topic: str, reason: str | None = None,
                  group_id: str = "touchpoint-dlq-redrive") -> tuple[int, int]:
    """Send dead letters back to their origin topic, without the error headers. Records already re-driven are
    not sent again (progress is kept by consumer group ``group_id``). Returns (sent, skipped)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    sent = skipped = 0
    try:
        futures = []
        async for record in read_to_end(bootstrap, dead_letter_topic, group_id=group_id):
            headers = dict(record.headers)
            origin = headers.get("__connect.errors.topic")
            if origin is None or (reason and headers.get("touchpoint.errors.reason", b"").decode() != reason):
                skipped += 1
                continue
            kept = [(k, v) for k, v in record.headers if not k.startswith(ERROR_HEADER_PREFIXES)]
            futures.append(await producer.send(origin.decode(), value=record.value, key=record.key, headers=kept))
            sent += 1
        for future in futures:
            await future
        return sent, skipped
    finally:
        await producer.stop()
