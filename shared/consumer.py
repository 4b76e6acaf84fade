"""Batch subscribers with Touchpoint's delivery semantics, on top of FastStream.

Every subscriber has an explicit group id, reads from the earliest offset when the group is new, and uses
``NACK_ON_ERROR``: FastStream commits the consumer position only after the handler returned, i.e. after the
batch's database transaction committed and its output was acknowledged by Kafka. A handler that raises
rewinds every partition of the batch to its first record, so nothing is skipped.

The processor receives the raw aiokafka records (it decodes them itself, sending bad ones to the dead-letter
topic; FastStream's own body decoding is switched off so that an undecodable record cannot fail the batch
before the processor sees it). Transient failures are retried with backoff inside one delivery; any failure
that escapes waits a growing, jittered delay before the batch is handed back, so a persistent failure never
turns into a hot loop.

Top-up. The consumer fetches in the background, but not while fetched records wait to be handled: a batch
handed over from that buffer holds what arrived at the start of the previous batch's processing, and what
arrived after it is still on the broker. Handing the batch over drained the buffer and sent a fetch for the
rest, so the handler waits up to ``batch_top_up_ms`` for its answer and processes both together. Without it,
every record would wait one extra batch at every hop.

Minimum interval. Taking the next batch the moment the last one is done runs, at moderate rates, many small
batches whose fixed cost (fetch, produce and commit requests, transactions) takes the CPU the lower rate freed,
and the machine stays busy. A batch that took less than ``batch_min_interval_ms`` and was not full waits out the
rest before it is acknowledged; what arrives meanwhile goes into the next batch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable, Sequence

import orjson
from aiokafka.structs import ConsumerRecord, TopicPartition
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from shared.db import ALL_TENANTS, enter_scope
from shared.deadletters import DeadLetterCeiling, DeadLetterCeilingExceeded
from shared.metrics import ServiceMetrics
from shared.retry import backoff, with_retries
from shared.settings import ServiceSettings

BatchProcessor = Callable[[Sequence[ConsumerRecord]], Awaitable[None]]
log = logging.getLogger(__name__)


async def _undecoded(_message: object) -> None:
    """Leave record values alone: processors decode (and dead-letter) records themselves."""
    return None


def make_broker(settings: ServiceSettings, client_id: str) -> KafkaBroker:
    return KafkaBroker(
        settings.kafka_bootstrap_servers,
        client_id=client_id,
        allow_auto_create_topics=False,
        logger=logging.getLogger(f"touchpoint.{client_id}.broker"),
        log_level=logging.DEBUG,
    )


def _assigned(consumer) -> set[TopicPartition] | None:
    """The partitions the consumer holds now (a rebalance may have taken some of a batch's away while it was
    processed); None for FastStream's test consumer, which has no assignment."""
    return consumer.assignment() if hasattr(consumer, "assignment") else None


def _record_lag(metrics: ServiceMetrics, consumer, records: Sequence[ConsumerRecord]) -> None:
    if consumer is None:
        return
    last: dict[tuple[str, int], int] = {}
    for r in records:
        last[(r.topic, r.partition)] = max(last.get((r.topic, r.partition), -1), r.offset)
    assigned = _assigned(consumer)
    for (topic, partition), offset in last.items():
        if assigned is not None and TopicPartition(topic, partition) not in assigned:
            continue  # revoked meanwhile: its new owner reports it
        highwater = consumer.highwater(TopicPartition(topic, partition))
        if highwater is not None:
            metrics.lag.labels(topic, str(partition)).set(max(0, highwater - offset - 1))


def batch_tenants(records: Sequence[ConsumerRecord], default: str) -> set[str]:
    """The tenants a batch may touch: each record's ``ce_tenant`` (binary mode) or ``tenant`` attribute
    (structured mode), plus the default tenant that records without one belong to."""
    tenants = {default}
    for r in records:
        tenant = next((v for k, v in (r.headers or ()) if k == "ce_tenant"), None)
        if tenant is not None:
            tenants.add(tenant.decode("utf-8", "replace"))
        elif r.value and r.value[:1] == b"{":
            try:
                value = orjson.loads(r.value)
            except orjson.JSONDecodeError:
                continue
            if isinstance(value, dict) and isinstance(value.get("tenant"), str):
                tenants.add(value["tenant"])
    # A name that cannot be a tenant cannot own rows either: its record is dead-lettered, not stored.
    return {t for t in tenants if t and "," not in t and t != ALL_TENANTS}


async def top_up(consumer, records: tuple[ConsumerRecord, ...], settings: ServiceSettings) -> tuple[ConsumerRecord, ...]:
    """``records`` and what the consumer fetches within ``batch_top_up_ms`` (see the module's docstring), up to
    ``batch_max_records`` in all. The position moves past the records added, so the commit after the batch
    covers them, and :func:`rewind` must undo that when the batch fails."""
    room = settings.batch_max_records - len(records)
    if not hasattr(consumer, "getmany") or settings.batch_top_up_ms <= 0 or room <= 0:
        return records  # FastStream's test consumer cannot fetch
    more = await consumer.getmany(timeout_ms=settings.batch_top_up_ms, max_records=room)
    if not more:
        return records
    return records + tuple(r for part in more.values() for r in part)


def rewind(consumer, records: Sequence[ConsumerRecord]) -> None:
    """Seek every partition of a failed batch back to its first record. FastStream rewinds the partitions of
    the records it handed over; a top-up may have added others, and their position must not be committed.
    A partition revoked meanwhile is left alone: its new owner starts from the last committed offset anyway."""
    if not hasattr(consumer, "seek"):
        return
    first: dict[TopicPartition, int] = {}
    for r in records:
        tp = TopicPartition(r.topic, r.partition)
        if r.offset < first.get(tp, r.offset + 1):
            first[tp] = r.offset
    assigned = _assigned(consumer)
    for tp, offset in first.items():
        if assigned is None or tp in assigned:
            consumer.seek(tp, offset)


def subscribe_batches(
    broker: KafkaBroker, topic: str, group_id: str, process: BatchProcessor, settings: ServiceSettings,
    metrics: ServiceMetrics, ceiling: DeadLetterCeiling | None = None,
    on_fatal: Callable[[BaseException], None] = lambda exc: None,
) -> None:
    """Register ``process`` as the batch handler of ``topic`` in consumer group ``group_id``.

    ``ceiling`` counts what the subscription reads (the producer counts the dead letters); when a batch would
    cross it, the batch is handed back uncommitted and ``on_fatal`` is called to stop the service."""

    failures = 0

    async def handle(msg: KafkaMessage) -> None:
        nonlocal failures
        started = time.monotonic()
        raw = msg.raw_message
        consumer = getattr(msg, "consumer", None)
        records = await top_up(consumer, raw if isinstance(raw, tuple) else (raw,), settings)
        metrics.batch_size.labels(topic).observe(len(records))
        if ceiling is not None:
            ceiling.read(topic, len(records))
        enter_scope(batch_tenants(records, settings.default_tenant))  # row-level security: this batch's tenants
        try:
            with metrics.batch_seconds.labels(topic).time():
                await with_retries(
                    lambda: process(records), settings.retry_attempts, settings.retry_base_seconds,
                    settings.retry_max_seconds, what=f"{group_id}<-{topic}",
                )
        except DeadLetterCeilingExceeded as exc:
            log.critical("dead-letter ceiling exceeded; stopping the service (inspect with `touchpoint dlq "
                         "inspect`, raise TOUCHPOINT_DEAD_LETTER_MAX_SHARE if this is expected)",
                         extra={"topic": topic, "group": group_id, "detail": str(exc)})
            rewind(consumer, records)
            on_fatal(exc)
            raise  # handed back uncommitted; a redelivery before the shutdown completes trips again
        except Exception as exc:
            rewind(consumer, records)
            failures += 1
            metrics.batch_failures.labels(topic, type(exc).__name__).inc()
            delay = backoff(failures, settings.retry_base_seconds, settings.retry_max_seconds)
            log.error("batch failed; handing it back to Kafka",
                      extra={"topic": topic, "records": len(records), "error": type(exc).__name__,
                             "consecutive_failures": failures, "delay_s": round(delay, 3)})
            await asyncio.sleep(delay)
            raise
        failures = 0
        spare = settings.batch_min_interval_ms / 1000 - (time.monotonic() - started)
        if spare > 0 and len(records) < settings.batch_max_records:
            await asyncio.sleep(spare)  # let the next batch gather instead of paying a batch's fixed cost again
        metrics.consumed.labels(topic).inc(len(records))
        _record_lag(metrics, consumer, records)

    broker.subscriber(
        topic,
        group_id=group_id,
        batch=True,
        max_records=settings.batch_max_records,
        batch_timeout_ms=settings.batch_timeout_ms,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        max_poll_interval_ms=600_000,
        heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms,
        decoder=_undecoded,
    )(handle)
