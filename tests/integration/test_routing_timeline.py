"""Routing decisions, notifications and feedback on the customer timeline, through real Kafka and PostgreSQL: the
timeline service (in this process) consumes ``touchpoint.routing.v1``, ``touchpoint.notification.v1`` and
``touchpoint.feedback.v1`` next to the identity topic, records each decision, notification or feedback event once
on the merged survivor, publishes it downstream once, and ignores queue movements and product alerts;
redeliveries change nothing."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from contextlib import asynccontextmanager

import httpx
import orjson
import pytest
from aiokafka.structs import ConsumerRecord

from services.timeline import repository as repo
from services.timeline.entries import routing_entry
from services.timeline.main import build_app
from services.timeline.projection import TimelineProjection
from services.timeline.rebuild import rebuild
from services.timeline.settings import TimelineSettings
from shared import topics
from shared.cloudevents import from_kafka, from_structured, to_kafka_headers
from shared.contracts import EXAMPLES_DIR, types
from shared.contracts.routing import SlaBreachedV1
from shared.db import ALL_TENANTS, create_pool
from tests.support import kafka_io
from tests.support.recording import RecordingProducer
from tests.support.stack import new_stack

pytestmark = pytest.mark.integration
TENANT = "routed"
GROUP = "touchpoint-timeline"


def record(event_type: str, key: str, **data) -> tuple[bytes, bytes, list]:
    """A binary-mode record of the contract example of ``event_type``, with a fresh id and ``data`` overrides."""
    raw = json.loads((EXAMPLES_DIR / f"{event_type}.json").read_text())
    raw.update(id=str(uuid.uuid4()), tenant=TENANT)
    raw["data"].update(data)
    event = from_structured(raw)
    return key.encode(), orjson.dumps(event.data), to_kafka_headers(event)


@asynccontextmanager
async def timeline_service(infra):
    stack = await new_stack(infra.bootstrap_servers, infra.admin_dsn)
    app = build_app(TimelineSettings(kafka_bootstrap_servers=stack.bootstrap_servers, database_url=stack.database_url,
                                     topic_prefix=stack.prefix))
    async with app.router.lifespan_context(app):
        yield stack, app


async def publish(stack, spec, records) -> None:
    await kafka_io.publish(stack.bootstrap_servers, stack.topic(spec.name), records)


async def settled(stack) -> bool:
    for spec in (topics.IDENTITY, topics.ROUTING, topics.NOTIFICATIONS, topics.FEEDBACK):
        if await kafka_io.lag(stack.bootstrap_servers, stack.prefix + GROUP, stack.topic(spec.name)):
            return False
    return True


async def fetch(stack, sql: str, *args) -> list:
    conn = await stack.connect()
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def test_a_routing_event_is_one_entry_on_the_merged_survivor_and_published_once(infra):
    survivor, merged = str(uuid.uuid4()), str(uuid.uuid4())
    async with timeline_service(infra) as (stack, app):
        queued = record(types.ROUTING_CONVERSATION_QUEUED, merged, customer_id=merged)
        await publish(stack, topics.IDENTITY, [record(types.INTERACTION_RESOLVED, survivor, customer_id=survivor,
                                                      event_id=str(uuid.uuid4()))])
        await publish(stack, topics.ROUTING, [queued])
        await kafka_io.wait_for(lambda: settled(stack), timeout=60, what="queued event consumed")

        merge_id = str(uuid.uuid4())
        await publish(stack, topics.IDENTITY, [record(types.CUSTOMERS_MERGED, survivor, merge_id=merge_id,
                                                      survivor_id=survivor, merged_ids=[merged])])
        await kafka_io.wait_for(lambda: settled(stack), timeout=60, what="merge applied")

        assigned = record(types.ROUTING_CONVERSATION_ASSIGNED, merged, customer_id=merged)
        moved = record(types.ROUTING_QUEUE_POSITION_CHANGED, merged, customer_id=merged)
        unknown = (merged.encode(), b"{}", [(k, types.ROUTING_CONVERSATION_ASSIGNED.replace("v1", "v9").encode())
                                            if k == "ce_type" else (k, v) for k, v in assigned[2]])
        await publish(stack, topics.ROUTING, [assigned, moved, assigned, queued, unknown])
        await kafka_io.wait_for(lambda: settled(stack), timeout=60, what="routing events consumed")
        redelivered = await kafka_io.read_all(stack.bootstrap_servers, stack.topic(topics.ROUTING.name))
        with kafka_io.as_consumer(redelivered):
            await app.state.projection.process(redelivered)

        rows = await fetch(stack, "SELECT customer_id, kind, payload FROM timeline.entries WHERE tenant = $1"
                                  " AND kind <> 'interaction' ORDER BY occurred_at", TENANT)
        assert [(r["customer_id"], r["kind"]) for r in rows] == [
            (survivor, "routing.conversation_queued"), (survivor, "routing.conversation_assigned")]
        assert orjson.loads(rows[1]["payload"])["details"]["offer_id"] == "offer-5f1c"

        downstream = [r for r in await kafka_io.read_all(stack.bootstrap_servers, stack.topic(topics.TIMELINE.name))
                      if orjson.loads(r.value)["kind"].startswith("routing.")]
        per_id = Counter(dict(r.headers)["ce_id"] for r in downstream)
        assert sorted(orjson.loads(r.value)["kind"] for r in downstream) == [
            "routing.conversation_assigned", "routing.conversation_queued"]
        assert set(per_id.values()) == {1}, "each entry published once"

        dead = await kafka_io.read_all(stack.bootstrap_servers, stack.topic(topics.ROUTING.dead_letter()))
        assert len(dead) == 2, "the unknown type, dead-lettered on delivery and on redelivery"
        assert {dict(r.headers)["touchpoint.errors.reason"] for r in dead} == {b"unsupported_type"}

        key = await stack.api_key(TENANT, ["read"])
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://timeline",
                                     headers={"Authorization": f"Bearer {key}"}) as client:
            timeline = (await client.get(f"/v1/customers/{merged}/timeline")).json()
            profile = (await client.get(f"/v1/customers/{merged}")).json()
        assert timeline["customer_id"] == survivor
        assert [e["kind"] for e in timeline["entries"]] == [
            "routing.conversation_assigned", "routing.conversation_queued", "interaction"]
        assert profile["entry_count"] == 1, "routing decisions are not contacts"



async def test_a_notification_event_is_one_entry_on_the_merged_survivor_and_published_once(infra):
    survivor, merged = str(uuid.uuid4()), str(uuid.uuid4())
    async with timeline_service(infra) as (stack, app):
        await publish(stack, topics.IDENTITY, [
            record(types.INTERACTION_RESOLVED, survivor, customer_id=survivor, event_id=str(uuid.uuid4())),
            record(types.CUSTOMERS_MERGED, survivor, merge_id=str(uuid.uuid4()), survivor_id=survivor, merged_ids=[merged])])
        await kafka_io.wait_for(lambda: settled(stack), timeout=60, what="merge applied")

        sent = record(types.NOTIFICATION_SENT, merged, customer_id=merged)
        answered = record(types.NOTIFICATION_FOLLOW_UP_ANSWERED, merged, customer_id=merged)
        unknown = (merged.encode(), b"{}", [(k, types.NOTIFICATION_SENT.replace("v1", "v9").encode())
                                            if k == "ce_type" else (k, v) for k, v in sent[2]])
        await publish(stack, topics.NOTIFICATIONS, [sent, answered, sent, unknown])
        await kafka_io.wait_for(lambda: settled(stack), timeout=60, what="notification events consumed")
        redelivered = await kafka_io.read_all(stack.bootstrap_servers, stack.topic(topics.NOTIFICATIONS.name))
        with kafka_io.as_consumer(redelivered):
            await app.state.projection.process(redelivered)

        rows = await fetch(stack, "SELECT customer_id, kind, channel, payload FROM timeline.entries WHERE tenant = $1"
                                  " AND kind = 'notification' ORDER BY occurred_at", TENANT)
        assert [(r["customer_id"], r["channel"], orjson.loads(r["payload"])["details"]["event"]) for r in rows] == [
            (survivor, "whatsapp", "sent"), (survivor, "whatsapp", "follow_up_answered")]
        assert orjson.loads(rows[0]["payload"])["direction"] == "outbound"

        downstream = [orjson.loads(r.value) for r in
                      await kafka_io.read_all(stack.bootstrap_servers, stack.topic(topics.TIMELINE.name))]
        notifications = [e for e in downstream if e["kind"] == "notification"]
        assert sorted(e["details"]["event"] for e in notifications) == ["follow_up_answered", "sent"], "each once"
        assert {e["customer_id"] for e in notifications} == {survivor}

        dead = await kafka_io.read_all(stack.bootstrap_servers, stack.topic(topics.NOTIFICATIONS.dead_letter()))
        assert len(dead) == 2, "the unknown type, dead-lettered on delivery and on redelivery"
        assert {dict(r.headers)["touchpoint.errors.reason"] for r in dead} == {b"unsupported_type"}

        key = await stack.api_key(TENANT, ["read"])
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://timeline",
                                     headers={"Authorization": f"Bearer {key}"}) as client:
            timeline = (await client.get(f"/v1/customers/{merged}/timeline")).json()
            profile = (await client.get(f"/v1/customers/{merged}")).json()
        assert [e["kind"] for e in timeline["entries"]] == ["notification", "notification", "interaction"]
        assert timeline["entries"][0]["conversation_id"] == "conv-912"
        assert profile["entry_count"] == 1, "notifications are not contacts"


async def test_a_feedback_event_is_one_entry_on_the_merged_survivor_and_product_alerts_are_not_recorded(infra):
    survivor, merged = str(uuid.uuid4()), str(uuid.uuid4())
    async with timeline_service(infra) as (stack, app):
        await publish(stack, topics.IDENTITY, [
            record(types.INTERACTION_RESOLVED, survivor, customer_id=survivor, event_id=str(uuid.uuid4())),
            record(types.CUSTOMERS_MERGED, survivor, merge_id=str(uuid.uuid4()), survivor_id=survivor, merged_ids=[merged])])
        await kafka_io.wait_for(lambda: settled(stack), timeout=60, what="merge applied")

        responded = record(types.FEEDBACK_RESPONDED, merged, customer_id=merged)
        detractor = record(types.FEEDBACK_DETRACTOR_DETECTED, merged, customer_id=merged)
        alert = record(types.FEEDBACK_PRODUCT_ALERT, "fibre-250")
        unknown = (merged.encode(), b"{}", [(k, types.FEEDBACK_RESPONDED.replace("v1", "v9").encode())
                                            if k == "ce_type" else (k, v) for k, v in responded[2]])
        await publish(stack, topics.FEEDBACK, [responded, detractor, alert, responded, unknown])
        await kafka_io.wait_for(lambda: settled(stack), timeout=60, what="feedback events consumed")
        redelivered = await kafka_io.read_all(stack.bootstrap_servers, stack.topic(topics.FEEDBACK.name))
        with kafka_io.as_consumer(redelivered):
            await app.state.projection.process(redelivered)

        rows = await fetch(stack, "SELECT customer_id, kind, channel, payload FROM timeline.entries WHERE tenant = $1"
                                  " AND kind <> 'interaction' ORDER BY payload::jsonb->'details'->>'event' DESC", TENANT)
        assert [(r["customer_id"], r["kind"], r["channel"], orjson.loads(r["payload"])["details"]["event"])
                for r in rows] == [(survivor, "feedback", "whatsapp", "responded"),
                                   (survivor, "feedback", "whatsapp", "detractor_detected")]
        assert orjson.loads(rows[0]["payload"])["direction"] == "inbound"

        downstream = [orjson.loads(r.value) for r in
                      await kafka_io.read_all(stack.bootstrap_servers, stack.topic(topics.TIMELINE.name))]
        feedback = [e for e in downstream if e["kind"] == "feedback"]
        assert sorted(e["details"]["event"] for e in feedback) == ["detractor_detected", "responded"], "each once"
        assert {e["customer_id"] for e in feedback} == {survivor}

        dead = await kafka_io.read_all(stack.bootstrap_servers, stack.topic(topics.FEEDBACK.dead_letter()))
        assert len(dead) == 2, "the unknown type, dead-lettered on delivery and on redelivery"
        assert {dict(r.headers)["touchpoint.errors.reason"] for r in dead} == {b"unsupported_type"}

        key = await stack.api_key(TENANT, ["read"])
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://timeline",
                                     headers={"Authorization": f"Bearer {key}"}) as client:
            profile = (await client.get(f"/v1/customers/{merged}")).json()
        assert profile["entry_count"] == 1, "feedback is not a contact"


async def held_while(pool, hold, concurrent) -> None:
    """Run ``hold(conn)`` in a transaction, start ``concurrent`` and check it waits until that transaction ends."""
    async with pool.acquire() as conn, conn.transaction():
        await hold(conn)
        task = asyncio.create_task(concurrent)
        await asyncio.sleep(0.5)
        assert not task.done(), "waits for the other transaction"
    await asyncio.wait_for(task, timeout=10)


@pytest.mark.parametrize("side", ["merge while an entry is stored", "entry stored while a merge is applied"])
async def test_merges_and_entries_stored_concurrently_end_on_the_survivor(infra, side):
    """The identity and routing topics are consumed concurrently: whichever of a merge and an entry under the
    merged-away id commits first, the entry ends on the survivor."""
    stack = await new_stack(infra.bootstrap_servers, infra.admin_dsn)
    pool = await create_pool(stack.database_url, default_scope=ALL_TENANTS)
    survivor, merged = str(uuid.uuid4()), str(uuid.uuid4())
    projection = TimelineProjection(pool, RecordingProducer(), "timeline", "customers")
    routing = consumer_record(topics.ROUTING, record(types.ROUTING_SLA_BREACHED, merged, customer_id=merged))
    merge = consumer_record(topics.IDENTITY, record(types.CUSTOMERS_MERGED, survivor, merge_id=str(uuid.uuid4()),
                                                    survivor_id=survivor, merged_ids=[merged]))
    entry = routing_entry(from_kafka(routing.value, routing.headers), SlaBreachedV1.model_validate_json(routing.value))

    async def store(conn) -> None:
        await repo.lock_tenants(conn, {TENANT}, exclusive=False)
        await repo.insert_entries(conn, [(TENANT, entry.entry_id(TENANT), merged, entry.occurred_at, entry.kind,
                                          entry.channel, entry.source, entry.event_id, entry.payload(TENANT), [])])

    async def apply_merge(conn) -> None:
        await repo.lock_tenants(conn, {TENANT}, exclusive=True)
        await repo.apply_merge(conn, TENANT, survivor, [merged])

    try:
        if side == "merge while an entry is stored":
            await held_while(pool, store, projection.process([merge]))
        else:
            await held_while(pool, apply_merge, projection.process([routing]))
        rows = await pool.fetch("SELECT customer_id FROM timeline.entries WHERE tenant = $1", TENANT)
        assert [r["customer_id"] for r in rows] == [survivor]
    finally:
        await pool.close()


def consumer_record(spec, rec: tuple[bytes, bytes, list]) -> ConsumerRecord:
    key, value, headers = rec
    return ConsumerRecord(spec.name, 0, 0, 0, 0, key, value, None, len(key), len(value), tuple(headers))


async def test_a_rebuild_restores_routing_notification_and_feedback_entries_on_the_survivor(infra):
    stack = await new_stack(infra.bootstrap_servers, infra.admin_dsn)
    survivor, merged = str(uuid.uuid4()), str(uuid.uuid4())
    await publish(stack, topics.ROUTING, [record(types.ROUTING_CONVERSATION_OFFERED, merged, customer_id=merged),
                                          record(types.ROUTING_QUEUE_POSITION_CHANGED, merged, customer_id=merged)])
    await publish(stack, topics.NOTIFICATIONS, [record(types.NOTIFICATION_SENT, merged, customer_id=merged)])
    await publish(stack, topics.FEEDBACK, [record(types.FEEDBACK_LOOP_CLOSED, merged, customer_id=merged),
                                           record(types.FEEDBACK_PRODUCT_ALERT, "fibre-250")])
    await publish(stack, topics.IDENTITY, [
        record(types.INTERACTION_RESOLVED, survivor, customer_id=survivor, event_id=str(uuid.uuid4())),
        record(types.CUSTOMERS_MERGED, survivor, merge_id=str(uuid.uuid4()), survivor_id=survivor, merged_ids=[merged])])
    settings = TimelineSettings(kafka_bootstrap_servers=stack.bootstrap_servers, database_url=stack.database_url,
                                topic_prefix=stack.prefix)
    assert await rebuild(settings) == 7
    rows = await fetch(stack, "SELECT customer_id, kind FROM timeline.entries WHERE tenant = $1 ORDER BY occurred_at", TENANT)
    assert [(r["customer_id"], r["kind"]) for r in rows] == [
        (survivor, "interaction"), (survivor, "routing.conversation_offered"), (survivor, "feedback"),
        (survivor, "notification")]
    assert await settled(stack), "the service's group resumes after what was replayed"


async def test_a_split_leaves_routing_entries_with_the_customer_and_an_erasure_removes_them_for_good(infra):
    stack = await new_stack(infra.bootstrap_servers, infra.admin_dsn)
    pool = await create_pool(stack.database_url, default_scope=ALL_TENANTS)
    customer, new_customer = str(uuid.uuid4()), str(uuid.uuid4())
    projection = TimelineProjection(pool, RecordingProducer(), "timeline", "customers")
    routing = consumer_record(topics.ROUTING, record(types.ROUTING_CONVERSATION_ASSIGNED, customer, customer_id=customer))
    later = consumer_record(topics.ROUTING, record(types.ROUTING_CONVERSATION_RESOLVED, customer, customer_id=customer))
    phone_only = [{"type": "phone", "value": "+49301234567"}]
    identity = [
        record(types.INTERACTION_RESOLVED, customer, customer_id=customer, event_id="call-1", identifiers=phone_only),
        record(types.CUSTOMER_SPLIT, customer, split_id=str(uuid.uuid4()), customer_id=customer,
               new_customer_id=new_customer, identifiers=phone_only),
    ]
    owners = "SELECT kind, customer_id FROM timeline.entries WHERE tenant = $1 ORDER BY kind"
    try:
        await projection.process([routing, *(consumer_record(topics.IDENTITY, r) for r in identity), later])
        assert [tuple(r) for r in await pool.fetch(owners, TENANT)] == [
            ("interaction", new_customer), ("routing.conversation_assigned", customer),
            ("routing.conversation_resolved", customer)]
        erase = record(types.CUSTOMER_ERASED, customer, erasure_id=str(uuid.uuid4()), customer_id=customer, merged_ids=[])
        await projection.process([consumer_record(topics.IDENTITY, erase)])
        await projection.process([routing, later])
        assert [tuple(r) for r in await pool.fetch(owners, TENANT)] == [("interaction", new_customer)]
    finally:
        await pool.close()


async def test_an_entry_arriving_after_merge_undo_merge_again_and_split_follows_the_latest_split(infra):
    """Merged, the merge undone (a split back), merged again, then the phone split off into a new customer: a
    phone-only interaction that arrives only now (a rebuild reading partitions in another order) belongs to the
    new customer, as it does when it arrived first."""
    stack = await new_stack(infra.bootstrap_servers, infra.admin_dsn)
    pool = await create_pool(stack.database_url, default_scope=ALL_TENANTS)
    anna, phone_customer, new_customer = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    phone = [{"type": "phone", "value": "+49305550001"}]
    email = [{"type": "email", "value": "anna@example.com"}]

    def merge() -> tuple:
        return record(types.CUSTOMERS_MERGED, anna, merge_id=str(uuid.uuid4()), survivor_id=anna,
                      merged_ids=[phone_customer], rule="manual", linking_identifiers=[])

    changes = [merge(),
               record(types.CUSTOMER_SPLIT, anna, split_id=str(uuid.uuid4()), customer_id=anna,
                      new_customer_id=phone_customer, identifiers=phone, reason="undo"),
               merge(),
               record(types.CUSTOMER_SPLIT, anna, split_id=str(uuid.uuid4()), customer_id=anna,
                      new_customer_id=new_customer, identifiers=phone, reason="operator")]
    interactions = [record(types.INTERACTION_RESOLVED, anna, customer_id=anna, event_id="mail-1", identifiers=email),
                    record(types.INTERACTION_RESOLVED, phone_customer, customer_id=phone_customer, event_id="call-1",
                           identifiers=phone)]
    owners = "SELECT event_id, customer_id FROM timeline.entries WHERE tenant = $1 ORDER BY event_id"
    try:
        early = TimelineProjection(pool, RecordingProducer(), "timeline", "customers")
        await early.process([consumer_record(topics.IDENTITY, r) for r in interactions + changes])
        first = [tuple(r) for r in await pool.fetch(owners, TENANT)]
        await pool.execute("DELETE FROM timeline.entries WHERE tenant = $1 AND event_id = 'call-1'", TENANT)
        await early.process([consumer_record(topics.IDENTITY, interactions[1])])
        late = [tuple(r) for r in await pool.fetch(owners, TENANT)]
    finally:
        await pool.close()
    assert first == [("call-1", new_customer), ("mail-1", anna)]
    assert late == first, "arriving after every change, the entry follows the latest split"


class UnacknowledgingProducer(RecordingProducer):
    """Kafka does not acknowledge the first ``failures`` publishes (a broker outage mid-batch)."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def send_all(self, records) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("no acknowledgement from the brokers")
        await super().send_all(records)


async def test_an_entry_whose_publish_was_not_acknowledged_waits_in_the_outbox_and_is_published_once_on_redelivery(infra):
    stack = await new_stack(infra.bootstrap_servers, infra.admin_dsn)
    pool = await create_pool(stack.database_url, default_scope=ALL_TENANTS)
    customer = str(uuid.uuid4())
    producer = UnacknowledgingProducer(failures=1)
    projection = TimelineProjection(pool, producer, "timeline", "customers")
    batch = [consumer_record(topics.ROUTING, record(types.ROUTING_CONVERSATION_ASSIGNED, customer, customer_id=customer)),
             consumer_record(topics.ROUTING, record(types.ROUTING_CONVERSATION_RESOLVED, customer, customer_id=customer))]
    waiting = "SELECT count(*) FROM timeline.outbox WHERE tenant = $1"
    try:
        with pytest.raises(ConnectionError):
            await projection.process(batch)
        assert await pool.fetchval("SELECT count(*) FROM timeline.entries WHERE tenant = $1", TENANT) == 2
        assert (await pool.fetchval(waiting, TENANT), producer.to("timeline")) == (2, [])

        await projection.process(batch)  # the offsets did not move: Kafka delivers the batch again
        published = [dict(r.headers)["ce_id"] for r in producer.to("timeline")]
        assert len(published) == 2 and await pool.fetchval(waiting, TENANT) == 0

        await projection.process(batch)  # once more (a rebalance before the offset commit)
        assert [dict(r.headers)["ce_id"] for r in producer.to("timeline")] == published, "published once"
    finally:
        await pool.close()


async def test_entries_stored_now_are_published_as_the_outbox_would_give_them(infra):
    """A batch whose entries are all new publishes them from what it inserted; a redelivery reads them back from
    the outbox. Both give the same records in the same (timeline) order, ties in the order they were stored."""
    customers = [str(uuid.uuid4()) for _ in range(3)]
    times = ["2026-11-20T10:00:03Z", "2026-11-20T10:00:01Z", "2026-11-20T10:00:03Z", "2026-11-20T10:00:02Z",
             "2026-11-20T10:00:01Z", "2026-11-20T10:00:03Z"]
    batch = [consumer_record(topics.ROUTING, record(types.ROUTING_CONVERSATION_ASSIGNED, customers[n % 3],
                                                    customer_id=customers[n % 3], at=at, conversation_id=f"c-{n}"))
             for n, at in enumerate(times)]

    async def published(failures: int) -> list[tuple]:
        stack = await new_stack(infra.bootstrap_servers, infra.admin_dsn)
        pool = await create_pool(stack.database_url, default_scope=ALL_TENANTS)
        producer = UnacknowledgingProducer(failures)
        try:
            projection = TimelineProjection(pool, producer, "timeline", "customers")
            for _ in range(failures):
                with pytest.raises(ConnectionError):
                    await projection.process(batch)
            await projection.process(batch)
        finally:
            await pool.close()
        return [(r.key, orjson.loads(r.value), r.headers) for r in producer.to("timeline")]

    fresh, redelivered = await published(0), await published(1)
    assert [data["conversation_id"] for _, data, _ in fresh] == ["c-1", "c-4", "c-3", "c-0", "c-2", "c-5"]
    assert fresh == redelivered
