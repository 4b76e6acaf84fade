"""Every example payload, encoded as Kafka records in both content modes, is accepted by every service that
consumes its topic (real PostgreSQL; the use case's output is recorded instead of sent)."""

from __future__ import annotations

import json

import orjson
import pytest
from aiokafka.structs import ConsumerRecord

from services.identity.service import IdentityService
from services.ingestion.pipeline import IngestionPipeline
from services.timeline.projection import IGNORED, TimelineProjection
from shared import topics
from shared.cloudevents import from_structured, to_kafka_headers
from shared.contracts import EXAMPLES_DIR, MODELS
from shared.contracts.types import short_name
from shared.db import create_pool
from tests.support.recording import RecordingProducer
from tests.support.stack import new_stack

pytestmark = pytest.mark.integration
# Consumers whose examples are replayed elsewhere: "downstream" is outside Touchpoint, and the routing service's
# own tests feed every example of the topics it consumes to its handlers.
FED_ELSEWHERE = ("downstream", "routing")


def consumer_cases():
    for spec in topics.REGISTRY:
        for event_type in spec.event_types:
            for consumer in spec.consumers:
                if consumer not in FED_ELSEWHERE:
                    for mode in ("binary", "structured"):
                        yield pytest.param(spec, event_type, consumer, mode, id=f"{event_type}->{consumer}-{mode}")


def as_record(spec, event_type: str, mode: str) -> ConsumerRecord:
    raw = json.loads((EXAMPLES_DIR / f"{event_type}.json").read_text())
    raw["id"] += f"-{mode}"  # each case is a new event, not a redelivery of the other mode's
    for field in ("event_id", "merge_id", "split_id", "erasure_id"):
        if field in raw["data"]:
            raw["data"][field] += f"-{mode}"
    if mode == "structured":
        value, headers = orjson.dumps(raw), [("content-type", b"application/cloudevents+json")]
    else:
        event = from_structured(raw)
        value, headers = orjson.dumps(event.data), to_kafka_headers(event)
    return ConsumerRecord(spec.name, 0, 0, 0, 0, b"key", value, None, 3, len(value), tuple(headers))


def build(consumer: str, pool, producer):
    if consumer == "ingestion":
        return IngestionPipeline(pool, producer, topics.INBOUND.name, topics.INGESTED.name, "default", "DE").process_inbound
    if consumer == "identity":
        return IdentityService(pool, producer, topics.IDENTITY.name).process
    return TimelineProjection(pool, producer, topics.TIMELINE.name, topics.CUSTOMERS.name).process


@pytest.fixture(scope="module")
async def pool(infra):
    stack = await new_stack(infra.bootstrap_servers, infra.admin_dsn)
    pool = await create_pool(stack.database_url)
    yield pool
    await pool.close()


def test_every_type_has_a_consumer_or_is_downstream():
    for event_type in MODELS:
        consumers = {c for s in topics.REGISTRY if event_type in s.event_types for c in s.consumers}
        assert consumers, event_type


@pytest.mark.parametrize(("spec", "event_type", "consumer", "mode"), list(consumer_cases()))
async def test_example_is_accepted_by_consumer(pool, spec, event_type, consumer, mode):
    producer = RecordingProducer()
    process = build(consumer, pool, producer)
    await process([as_record(spec, event_type, mode)])
    dead = producer.to(".dlq")
    assert not dead, [dict(r.headers).get("touchpoint.errors.reason") for r in dead]
    change_id = next((v for k, v in raw_data(spec, event_type, mode).items() if k in CHANGE_IDS), None)
    if event_type in IGNORED:
        assert not producer.records, "acknowledged without effect"
    elif spec is topics.ROUTING:
        (entry,) = [orjson.loads(r.value) for r in producer.to(topics.TIMELINE.name)]
        assert (entry["kind"], entry["customer_id"]) == (short_name(event_type), raw_data(spec, event_type, mode)["customer_id"])
    elif change_id is None:
        assert producer.records, "the example produced output"
    else:
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM timeline.applied_merges WHERE merge_id = $1", change_id) == 1


CHANGE_IDS = ("merge_id", "split_id", "erasure_id")


def raw_data(spec, event_type: str, mode: str) -> dict:
    record = as_record(spec, event_type, mode)
    data = orjson.loads(record.value)
    return data.get("data", data)
