"""Every example payload, encoded as Kafka records in both content modes, is accepted by every service that
consumes its topic (real PostgreSQL; the use case's output is recorded instead of sent)."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from aiokafka.structs import ConsumerRecord
from pydantic import SecretStr

from services.identity.privacy import ErasureRequests
from services.identity.service import IdentityService
from services.feedback.config import ConfigSource as FeedbackConfigSource
from services.feedback.service import FeedbackService
from services.notification.config import ConfigSource as NotificationConfigSource
from services.notification.service import NotificationService
from services.routing.config import ConfigSource
from services.routing.domain.clock import SystemClock
from services.routing.domain.model import CONVERSATIONAL
from services.routing.service import RoutingService
from services.ingestion.pipeline import IngestionPipeline
from services.timeline.consent import ConsentProjection
from services.timeline.projection import IGNORED, TimelineProjection
from shared import topics
from shared.cloudevents import from_structured, to_kafka_headers
from shared.contracts import EXAMPLES_DIR, MODELS, types
from shared.contracts.types import short_name
from shared.db import ALL_TENANTS, create_pool
from tests.support.recording import RecordingProducer
from tests.support.stack import new_stack

pytestmark = pytest.mark.integration
# "downstream" is outside Touchpoint.
FED_ELSEWHERE = ("downstream",)
# TEMPORARY: (consumer, topic) pairs the registry names whose handler does not exist yet; remove each pair here
# (and add its handler to build()) when that consumer is built, so that the set ends empty.
NOTIFICATION_CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "notification" / "notification.yaml"
FEEDBACK_CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "feedback" / "feedback.yaml"
# Routing events notification acts on; the others on that topic are acknowledged without effect.
NOTIFICATION_ROUTING_TYPES = (types.ROUTING_SLA_BREACHED, types.ROUTING_CONVERSATION_RESOLVED)


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
    if spec is topics.PRIVACY:  # each mode erases a customer of its own
        raw["data"]["customer"]["customer_id"] += f"-{mode}"
    if mode == "structured":
        value, headers = orjson.dumps(raw), [("content-type", b"application/cloudevents+json")]
    else:
        event = from_structured(raw)
        value, headers = orjson.dumps(event.data), to_kafka_headers(event)
    return ConsumerRecord(spec.name, 0, 0, 0, 0, b"key", value, None, 3, len(value), tuple(headers))


def build(consumer: str, pool, producer, spec=None):
    if consumer == "routing":
        service = RoutingService(pool, producer, ConfigSource(None), SystemClock(), topics.ROUTING.name)
        return {topics.IDENTITY.name: service.process_identity, topics.AGENTS.name: service.process_agents,
                topics.CONVERSATIONS.name: service.process_conversations,
                topics.NOTIFICATIONS.name: service.process_notifications,
                topics.FEEDBACK.name: service.process_feedback}[spec.name]
    if consumer == "notification":
        service = NotificationService(pool, producer, NotificationConfigSource(NOTIFICATION_CONFIG), {},
                                      topics.NOTIFICATIONS.name, SecretStr("contract-examples"))
        return {topics.BUSINESS.name: service.process_business, topics.CONSENT.name: service.process_consent,
                topics.CUSTOMERS.name: service.process_customers, topics.IDENTITY.name: service.process_identity,
                topics.ROUTING.name: service.process_routing, topics.FEEDBACK.name: service.process_feedback}[spec.name]
    if consumer == "feedback":
        service = FeedbackService(pool, producer, FeedbackConfigSource(FEEDBACK_CONFIG), topics.FEEDBACK.name,
                                  SecretStr("contract-examples"))
        return {topics.FEEDBACK_INBOUND.name: service.process_inbound, topics.BUSINESS.name: service.process_business,
                topics.ROUTING.name: service.process_routing, topics.IDENTITY.name: service.process_identity,
                topics.CUSTOMERS.name: service.process_customers, topics.AGENTS.name: service.process_agents}[spec.name]
    if consumer == "ingestion":
        return IngestionPipeline(pool, producer, topics.INBOUND.name, topics.INGESTED.name, "default", "DE").process_inbound
    if consumer == "identity":
        service = IdentityService(pool, producer, topics.IDENTITY.name)
        if spec is topics.PRIVACY:
            return ErasureRequests(pool, producer, service.publish_pending_merges, "DE").process
        return service.process
    if spec is topics.CONSENT:
        return ConsentProjection(pool, producer, "DE").process
    return TimelineProjection(pool, producer, topics.TIMELINE.name, topics.CUSTOMERS.name).process


@pytest.fixture(scope="module")
async def pool(infra):
    stack = await new_stack(infra.bootstrap_servers, infra.admin_dsn)
    pool = await create_pool(stack.database_url, default_scope=ALL_TENANTS)
    yield pool
    await pool.close()


def test_every_type_has_a_consumer_or_is_downstream():
    for event_type in MODELS:
        consumers = {c for s in topics.REGISTRY if event_type in s.event_types for c in s.consumers}
        assert consumers, event_type


@pytest.mark.parametrize(("spec", "event_type", "consumer", "mode"), list(consumer_cases()))
async def test_example_is_accepted_by_consumer(pool, spec, event_type, consumer, mode):
    producer = RecordingProducer()
    process = build(consumer, pool, producer, spec)
    if spec is topics.PRIVACY:
        async with pool.acquire() as conn:
            await conn.execute("INSERT INTO identity.customers (tenant, customer_id, created_by_source, created_by_event)"
                               " VALUES ('example', $1, 'crm', 'e-1')", raw_data(spec, event_type, mode)["customer"]["customer_id"])
    await process([as_record(spec, event_type, mode)])
    dead = producer.to(".dlq")
    assert not dead, [dict(r.headers).get("touchpoint.errors.reason") for r in dead]
    if consumer == "routing":
        await assert_routing_applied(pool, spec, event_type, mode)
        return
    if consumer == "notification":
        await assert_notification_applied(pool, spec, event_type, mode)
        return
    if consumer == "feedback":
        await assert_feedback_applied(pool, spec, event_type, mode)
        return
    change_id = next((v for k, v in raw_data(spec, event_type, mode).items() if k in CHANGE_IDS), None)
    if event_type in IGNORED:
        assert not producer.records, "acknowledged without effect"
    elif spec is topics.ROUTING:
        (entry,) = [orjson.loads(r.value) for r in producer.to(topics.TIMELINE.name)]
        assert (entry["kind"], entry["customer_id"]) == (short_name(event_type), raw_data(spec, event_type, mode)["customer_id"])
    elif spec is topics.NOTIFICATIONS:
        (entry,) = [orjson.loads(r.value) for r in producer.to(topics.TIMELINE.name)]
        assert (entry["kind"], entry["customer_id"]) == ("notification", raw_data(spec, event_type, mode)["customer_id"])
    elif spec is topics.FEEDBACK:
        (entry,) = [orjson.loads(r.value) for r in producer.to(topics.TIMELINE.name)]
        assert (entry["kind"], entry["customer_id"]) == ("feedback", raw_data(spec, event_type, mode)["customer_id"])
    elif spec is topics.CONSENT:
        await assert_consent_recorded(pool, event_type, mode)
    elif spec is topics.PRIVACY:
        customer_id = raw_data(spec, event_type, mode)["customer"]["customer_id"]
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT erased_at FROM identity.customers WHERE customer_id = $1", customer_id)
        (erased,) = [orjson.loads(r.value) for r in producer.to(topics.IDENTITY.name)]
        assert erased["customer_id"] == customer_id
    elif event_type == types.PROFILE_INGESTED:  # stored for fuzzy matching; only the merges it causes are published
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM identity.profiles WHERE event_id = $1",
                                       raw_data(spec, event_type, mode)["event_id"]) == 1
    elif change_id is None:
        assert producer.records, "the example produced output"
    else:
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM timeline.applied_merges WHERE merge_id = $1", change_id) == 1


CHANGE_IDS = ("merge_id", "split_id", "erasure_id")


async def assert_consent_recorded(pool, event_type: str, mode: str) -> None:
    """The timeline keeps the consent record or the preferences under the customer the example names."""
    data = raw_data(topics.CONSENT, event_type, mode)
    subject = f"id:{data['customer']['customer_id']}"
    async with pool.acquire() as conn:
        if event_type == types.PREFERENCES_CHANGED:
            fields = orjson.loads(await conn.fetchval("SELECT fields FROM timeline.preferences WHERE subject = $1", subject))
            assert {k: v["value"] for k, v in fields.items()}["display_name"] == data["display_name"]
        else:
            granted = await conn.fetchval(
                "SELECT granted FROM timeline.consents WHERE subject = $1 AND purpose = $2 AND channel = $3",
                subject, data["purpose"], data["channel"])
            assert granted is (event_type == types.CONSENT_GRANTED)


async def assert_routing_applied(pool, spec, event_type: str, mode: str) -> None:
    """Agent and conversation events are recorded as applied; a resolved interaction on a conversational
    channel opens a conversation; merges are recorded; splits and erasures need nothing from routing; of the
    notification events only a follow-up answered "not solved" (the example) asks for something, of the feedback
    events only a detractor (its follow-up conversation is opened)."""
    data = raw_data(spec, event_type, mode)
    async with pool.acquire() as conn:
        if event_type == types.INTERACTION_RESOLVED:
            opened = await conn.fetchval("SELECT count(*) FROM routing.conversations WHERE customer_id = $1",
                                         data["customer_id"])
            assert opened == (1 if data["channel"] in CONVERSATIONAL else 0)
        elif event_type not in (types.CUSTOMER_SPLIT, types.CUSTOMER_ERASED):
            event_id = json.loads((EXAMPLES_DIR / f"{event_type}.json").read_text())["id"] + f"-{mode}"
            applied = {topics.NOTIFICATIONS.name: event_type == types.NOTIFICATION_FOLLOW_UP_ANSWERED,
                       topics.FEEDBACK.name: event_type == types.FEEDBACK_DETRACTOR_DETECTED}.get(spec.name, True)
            assert await conn.fetchval("SELECT count(*) FROM routing.processed_events WHERE event_id = $1",
                                       event_id) == int(applied)
        if event_type == types.FEEDBACK_DETRACTOR_DETECTED:
            assert await conn.fetchval("SELECT status FROM routing.conversations WHERE conversation_id = $1",
                                       data["follow_up_conversation_id"]) in ("queued", "offered")


async def assert_notification_applied(pool, spec, event_type: str, mode: str) -> None:
    """A snapshot fills the directory; every other event notification acts on is recorded as applied once
    (upstream events naming an unknown customer are parked until a snapshot names them)."""
    data = raw_data(spec, event_type, mode)
    async with pool.acquire() as conn:
        if event_type == types.CUSTOMER_SNAPSHOT:
            for identifier in data["identifiers"]:
                assert await conn.fetchval(
                    "SELECT customer_id FROM notification.directory WHERE id_type = $1 AND id_value = $2",
                    identifier["type"], identifier["value"]) == data["customer_id"]
            return
        event_id = json.loads((EXAMPLES_DIR / f"{event_type}.json").read_text())["id"] + f"-{mode}"
        applied = {topics.ROUTING.name: event_type in NOTIFICATION_ROUTING_TYPES,
                   topics.FEEDBACK.name: event_type == types.FEEDBACK_INVITED}.get(spec.name, True)
        assert await conn.fetchval("SELECT count(*) FROM notification.processed_events WHERE event_id = $1",
                                   event_id) == int(applied)


async def assert_feedback_applied(pool, spec, event_type: str, mode: str) -> None:
    """A snapshot fills the directory; every event feedback acts on is recorded as applied once."""
    data = raw_data(spec, event_type, mode)
    async with pool.acquire() as conn:
        if event_type == types.CUSTOMER_SNAPSHOT:
            for identifier in data["identifiers"]:
                assert await conn.fetchval(
                    "SELECT customer_id FROM feedback.directory WHERE id_type = $1 AND id_value = $2",
                    identifier["type"], identifier["value"]) == data["customer_id"]
            return
        event_id = json.loads((EXAMPLES_DIR / f"{event_type}.json").read_text())["id"] + f"-{mode}"
        acted_on = event_type in FEEDBACK_TYPES
        assert await conn.fetchval("SELECT count(*) FROM feedback.processed_events WHERE event_id = $1",
                                   event_id) == int(acted_on)


# What the feedback service acts on; other events on the topics it reads are acknowledged without effect.
FEEDBACK_TYPES = (types.FEEDBACK_RESPONSE_SUBMITTED, types.PRODUCT_RATED, types.CASE_RESOLVED,
                  types.ROUTING_CONVERSATION_RESOLVED, types.INTERACTION_RESOLVED, types.CUSTOMERS_MERGED,
                  types.AGENT_PROFILE_UPDATED)


def raw_data(spec, event_type: str, mode: str) -> dict:
    record = as_record(spec, event_type, mode)
    data = orjson.loads(record.value)
    return data.get("data", data)
