"""Driving a service in-process in integration tests: a clock the test moves, and a reader of a topic's new
records."""

from __future__ import annotations

from datetime import datetime, timedelta

from aiokafka import AIOKafkaConsumer, TopicPartition


class Clock:
    """The service's clock, moved by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class TopicReader:
    """Reads one topic from the beginning with one consumer: each ``new()`` returns the records that arrived
    since the previous call, up to the end offsets at call time."""

    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        self.topic = topic
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False)
        self.parts: list[TopicPartition] = []

    async def start(self) -> None:
        await self.consumer.start()
        await self.consumer._client.force_metadata_update()  # metadata of a topic nobody subscribed to
        self.parts = [TopicPartition(self.topic, p) for p in sorted(self.consumer.partitions_for_topic(self.topic))]
        self.consumer.assign(self.parts)
        await self.consumer.seek_to_beginning(*self.parts)

    async def new(self) -> list:
        end = await self.consumer.end_offsets(self.parts)
        out = []
        while [tp for tp in self.parts if await self.consumer.position(tp) < end[tp]]:
            for records in (await self.consumer.getmany(timeout_ms=200)).values():
                out.extend(records)
        return out

    async def stop(self) -> None:
        await self.consumer.stop()
