"""Determinism on real PostgreSQL: the same ingested events, processed in different orders and batches by
identity (into two fresh databases) and the results applied by the timeline, give identical customer ids for
every event and identical timelines. This is what a replay of the topics from the beginning does: partitions are
read in another interleaving, so events that link the same person arrive in another order."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import orjson
import pytest
from aiokafka.structs import ConsumerRecord

from services.identity.service import IdentityService
from services.timeline.projection import TimelineProjection
from shared import topics
from shared.cloudevents import CloudEvent, to_kafka_headers
from shared.contracts import types
from shared.db import ALL_TENANTS, create_pool
from tests.support.recording import RecordingProducer
from tests.support.stack import new_stack

pytestmark = pytest.mark.integration
T = "acme"
START = datetime(2026, 10, 1, tzinfo=timezone.utc)


def ingested(n: int, identifiers: list[tuple[str, str]], at: datetime) -> ConsumerRecord:
    data = {"channel": "chat", "direction": "inbound", "identifiers": [{"type": t, "value": v} for t, v in identifiers],
            "source": "crm", "event_id": f"e{n}", "occurred_at": at.isoformat(), "received_at": at.isoformat(),
            "subject": f"message {n}"}
    event = CloudEvent(id=f"ingested-{n}", source="touchpoint/ingestion", type=types.INTERACTION_INGESTED, time=at,
                       data=data, extensions={"tenant": T})
    value = orjson.dumps(data)
    return ConsumerRecord(topics.INGESTED.name, 0, n, 0, 0, f"e{n}".encode(), value, None, 3, len(value),
                          tuple(to_kafka_headers(event)))


def workload(seed: int = 5, people: int = 40, events: int = 400) -> list[ConsumerRecord]:
    """Each person has an account, a contract and a device; each event names one to three of them, so a person's
    events link up in many orders; occurred-at times are random within a month."""
    rng = random.Random(seed)
    out = []
    for n in range(events):
        p = rng.randrange(people)
        ids = [("account_id", f"A-{p}"), ("contract_id", f"C-{p}"), ("crm_id", f"X-{p}")]
        out.append(ingested(n, rng.sample(ids, rng.randint(1, 3)), START + timedelta(seconds=rng.randrange(30 * 86400))))
    return out


def as_consumed(records) -> list[ConsumerRecord]:
    return [ConsumerRecord(r.topic, 0, n, 0, 0, r.key, r.value, None, 3, len(r.value), tuple(r.headers))
            for n, r in enumerate(records)]


async def run(infra, records: list[ConsumerRecord], rng: random.Random) -> tuple[dict[str, str], set[tuple]]:
    """Identity over ``records`` in batches of random sizes, then the timeline over identity's output in batches;
    returns event id → current customer, and the timeline rows (customer, event id, occurred at)."""
    stack = await new_stack(infra.bootstrap_servers, infra.admin_dsn)
    pool = await create_pool(stack.database_url, default_scope=ALL_TENANTS)
    try:
        producer = RecordingProducer()
        identity = IdentityService(pool, producer, topics.IDENTITY.name)
        rest = list(records)
        while rest:
            cut = rng.randint(1, 60)
            await identity.process(rest[:cut])
            rest = rest[cut:]
        timeline = TimelineProjection(pool, RecordingProducer(), topics.TIMELINE.name, topics.CUSTOMERS.name)
        output = as_consumed(producer.to(topics.IDENTITY.name))
        for start in range(0, len(output), 50):
            await timeline.process(output[start:start + 50])
        async with pool.acquire() as conn:
            customers = await conn.fetch(
                "SELECT p.event_id, COALESCE(c.merged_into, c.customer_id) AS customer FROM identity.processed_events p"
                " JOIN identity.customers c USING (tenant, customer_id)")
            entries = await conn.fetch("SELECT customer_id, event_id, occurred_at FROM timeline.entries")
        return ({r["event_id"]: r["customer"] for r in customers},
                {(r["customer_id"], r["event_id"], r["occurred_at"]) for r in entries})
    finally:
        await pool.close()


async def test_a_replay_in_another_order_forms_the_same_customers_and_timelines(infra):
    records = workload()
    first_customers, first_timeline = await run(infra, records, random.Random(1))
    replayed = random.Random(2).sample(records, len(records))
    second_customers, second_timeline = await run(infra, replayed, random.Random(3))
    assert len(first_customers) == len(records) and len(set(first_customers.values())) == 40
    assert second_customers == first_customers
    assert len(first_timeline) == len(records)
    assert second_timeline == first_timeline
