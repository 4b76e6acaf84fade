"""The batch subscriber against a real broker: a batch taken from the consumer's buffer is topped up with what
arrived while the previous batch was processed; a failed batch is redelivered whole, and its rewind covers
the partitions the top-up added, so nothing is committed past a record that was not processed."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from shared.consumer import _record_lag, make_broker, rewind, subscribe_batches, top_up
from shared.metrics import ServiceMetrics
from shared.settings import ServiceSettings
from tests.support import kafka_io

pytestmark = pytest.mark.integration


async def new_topic(bootstrap: str) -> str:
    name = f"batches{secrets.token_hex(4)}"
    await kafka_io.create_topic(bootstrap, name, 2)
    return name


class Waves:
    """Processing the first batch (one record) takes 0.6 s; meanwhile wave A arrives and, 0.2 s later, wave B,
    both on partition 0. The consumer fetches A while the first batch is processed; it fetches a partition again
    only once its buffered records were taken, so B stays on the broker until the first batch is done."""

    def __init__(self, bootstrap: str, topic: str, fail_with_b: bool = False) -> None:
        self.bootstrap, self.topic, self.fail_with_b = bootstrap, topic, fail_with_b
        self.batches: list[list[bytes]] = []  # the values of each batch processed successfully
        self.failed: list[list[bytes]] = []
        self.first_started = asyncio.Event()

    async def process(self, records) -> None:
        values = [r.value for r in records]
        if not self.first_started.is_set():
            self.first_started.set()
            await asyncio.sleep(0.6)
        elif self.fail_with_b and not self.failed and any(v.startswith(b"b") for v in values):
            self.failed.append(values)
            raise ConnectionError("the database went away")
        self.batches.append(values)

    async def send(self) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, enable_idempotence=True)
        await producer.start()
        try:
            await (await producer.send(self.topic, b"first", partition=0))
            await asyncio.wait_for(self.first_started.wait(), 30)
            await asyncio.sleep(0.1)
            await asyncio.gather(*[await producer.send(self.topic, f"a{i}".encode(), partition=0) for i in range(5)])
            await asyncio.sleep(0.2)
            await asyncio.gather(*[await producer.send(self.topic, f"b{i}".encode(), partition=0) for i in range(5)])
        finally:
            await producer.stop()

    def processed(self) -> set[bytes]:
        return {v for batch in self.batches for v in batch}


async def run(bootstrap: str, waves: Waves, group: str, **settings) -> None:
    config = ServiceSettings(kafka_bootstrap_servers=bootstrap, retry_attempts=1, retry_base_seconds=0.01,
                             retry_max_seconds=0.05, **settings)
    broker = make_broker(config, "batch-test")
    subscribe_batches(broker, waves.topic, group, waves.process, config, ServiceMetrics())
    await broker.start()
    try:
        await waves.send()
        want = {b"first", *(f"a{i}".encode() for i in range(5)), *(f"b{i}".encode() for i in range(5))}

        async def all_processed():
            return waves.processed() >= want or None

        await kafka_io.wait_for(all_processed, timeout=30, what="every record processed")
        await asyncio.sleep(0.5)  # the last batch's commit
    finally:
        await broker.stop()


async def committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        return {p: await consumer.committed(TopicPartition(topic, p)) for p in (0, 1)}
    finally:
        await consumer.stop()


async def test_a_batch_from_the_buffer_is_topped_up_with_what_arrived_while_the_previous_one_was_processed(infra):
    topic = await new_topic(infra.bootstrap_servers)
    waves = Waves(infra.bootstrap_servers, topic)
    # A generous top-up: this test is about what the batch holds, not how fast the broker answers.
    await run(infra.bootstrap_servers, waves, f"{topic}-group", batch_top_up_ms=1000)
    print(f"\nbatches: {waves.batches}")
    assert waves.batches[0] == [b"first"]
    assert sorted(waves.batches[1]) == [*(f"a{i}".encode() for i in range(5)), *(f"b{i}".encode() for i in range(5))], \
        "wave B, still on the broker when the batch was handed over, joined wave A in one batch"
    assert await committed(infra.bootstrap_servers, f"{topic}-group", topic) == {0: 11, 1: 0}


async def test_a_failed_topped_up_batch_is_redelivered_whole(infra):
    topic = await new_topic(infra.bootstrap_servers)
    waves = Waves(infra.bootstrap_servers, topic, fail_with_b=True)
    await run(infra.bootstrap_servers, waves, f"{topic}-group", batch_top_up_ms=1000)
    print(f"\nfailed: {waves.failed}; then processed: {waves.batches}")
    assert len(waves.failed) == 1 and any(v.startswith(b"b") for v in waves.failed[0]), "wave B came in by the top-up"
    assert {f"b{i}".encode() for i in range(5)} <= waves.processed(), "redelivered and processed after the failure"
    assert await committed(infra.bootstrap_servers, f"{topic}-group", topic) == {0: 11, 1: 0}


@contextlib.asynccontextmanager
async def both_partitions(bootstrap: str):
    """A consumer assigned both partitions of a new topic holding "p-0" .. "p-2" on each partition p; yields
    (consumer, partition 0, partition 1)."""
    topic = await new_topic(bootstrap)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        for p in (0, 1):
            await asyncio.gather(*[await producer.send(topic, f"{p}-{i}".encode(), partition=p) for i in range(3)])
    finally:
        await producer.stop()
    tp0, tp1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=f"{topic}-group", enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign([tp0, tp1])
        yield consumer, tp0, tp1
    finally:
        await consumer.stop()


async def test_a_rewind_moves_back_the_partitions_a_top_up_added(infra):
    """FastStream rewinds the partitions of the records it handed over; the top-up may add another partition,
    whose position would otherwise be committed by the next batch, past records never processed."""
    async with both_partitions(infra.bootstrap_servers) as (consumer, tp0, tp1):
        handed_over: tuple = ()
        while len(handed_over) < 3:  # what FastStream hands over: partition 0's records only
            handed_over += tuple((await consumer.getmany(tp0, timeout_ms=1000)).get(tp0, ()))
        settings = ServiceSettings(batch_top_up_ms=1000)
        batch = await top_up(consumer, handed_over, settings)
        assert {(r.partition, r.value) for r in batch} == {(p, f"{p}-{i}".encode()) for p in (0, 1) for i in range(3)}
        assert (await consumer.position(tp0), await consumer.position(tp1)) == (3, 3)

        rewind(consumer, batch)  # the batch failed
        assert (await consumer.position(tp0), await consumer.position(tp1)) == (0, 0)


async def test_partitions_a_rebalance_took_away_during_a_batch_are_neither_rewound_nor_measured(infra):
    """With several members in a group (instances, or consumers in one process) a rebalance may take a partition
    away while its batch is processed. Seeking it or asking for its high-water mark raises (aiokafka:
    IllegalStateError, AssertionError), which failed a batch that was done, or the rewind of one that failed;
    the partition's new owner starts from the committed offset anyway."""
    async with both_partitions(infra.bootstrap_servers) as (consumer, tp0, tp1):
        batch: tuple = ()
        while len(batch) < 6:
            batch += tuple(r for part in (await consumer.getmany(timeout_ms=1000)).values() for r in part)
        consumer.assign([tp0])  # partition 1 went to another member meanwhile
        await consumer.seek_to_end(tp0)
        assert await consumer.position(tp0) == 3

        metrics = ServiceMetrics()
        _record_lag(metrics, consumer, batch)  # the batch succeeded
        rewind(consumer, batch)  # or failed
        assert await consumer.position(tp0) == 0, "the partition still held is rewound"
        measured = {s.labels["partition"] for m in metrics.lag.collect() for s in m.samples}
        assert "1" not in measured


async def test_a_batch_that_was_quick_and_not_full_waits_out_the_minimum_interval(infra):
    """Five records 50 ms apart: with a minimum interval of 1 s they make two batches (the first topped up with
    what arrived within its top-up, the rest a second later), not one batch per record."""
    topic = await new_topic(infra.bootstrap_servers)
    started: list[tuple[float, int]] = []

    async def process(records) -> None:
        started.append((time.monotonic(), len(records)))

    config = ServiceSettings(kafka_bootstrap_servers=infra.bootstrap_servers, batch_min_interval_ms=1000,
                             batch_top_up_ms=1000)
    broker = make_broker(config, "batch-test")
    subscribe_batches(broker, topic, f"{topic}-group", process, config, ServiceMetrics())
    await broker.start()
    producer = AIOKafkaProducer(bootstrap_servers=infra.bootstrap_servers, enable_idempotence=True)
    await producer.start()
    try:
        for i in range(5):
            await (await producer.send(topic, f"r{i}".encode(), partition=0))
            await asyncio.sleep(0.05)

        async def all_in():
            return sum(n for _, n in started) == 5 or None

        await kafka_io.wait_for(all_in, timeout=30, what="every record processed")
    finally:
        await producer.stop()
        await broker.stop()
    print(f"\nbatches (start, size): {[(round(t - started[0][0], 3), n) for t, n in started]}")
    assert len(started) == 2, "what arrived during the interval waited for the next batch"
    assert started[1][0] - started[0][0] >= 1.0
