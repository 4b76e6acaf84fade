"""NotificationService in this process on real Kafka and PostgreSQL, sending through real local SMTP, Twilio
and WhatsApp receivers (tests/support/receivers.py): what the service adds on top of the pure decision
pipeline — fallback and retries, digests, throttles, quiet hours and caps in the recipient's zone,
support-aware suppression, the WhatsApp window, case timers, de-duplication, identity, provider callbacks,
answer links and consent checked again at send time.

Every test gets its own database and tenant (the topics are the module's) and a clock it moves by hand, so
delays and windows need no sleeping. Upstream events are published to their topic, read back and handed to
the consumer the service subscribes there (``process_business`` and friends); ``tick()`` decides and sends
what is due; what the service reports is read back from the notification topic.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from services.notification import api
from services.notification.adapters.smtp import message_id_for
from services.notification.config import ConfigSource
from services.notification.main import make_senders
from services.notification.service import NotificationService
from services.notification.settings import NotificationSettings
from shared import db, topics
from shared.cloudevents import CloudEvent
from shared.contracts import types
from shared.httpapi import install_error_handlers
from shared.kafka import EventProducer, event_record
from tests.support import kafka_io
from tests.support.receivers import SmtpReceiver, TwilioReceiver, WhatsAppReceiver
from tests.support.service_harness import Clock, TopicReader
from tests.support.stack import Stack, new_stack, with_fresh_database

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)  # a Tuesday, 10:00 in Berlin
PHONE = "+4915112345678"
SMS_CALLBACK = "https://notify.shop.example/v1/callbacks/twilio"
ANSWERS = "https://notify.shop.example/v1/answers"
CONSUMERS = {topics.BUSINESS.name: "process_business", topics.CONSENT.name: "process_consent",
             topics.CUSTOMERS.name: "process_customers", topics.IDENTITY.name: "process_identity",
             topics.ROUTING.name: "process_routing"}
CONSENT_TYPES = (types.CONSENT_GRANTED, types.CONSENT_WITHDRAWN, types.PREFERENCES_CHANGED)

TEMPLATES = {
    "case_follow_up": ("Is your problem solved?", "Hello $name, is case $case_id solved? Yes: $yes_link No: $no_link"),
    "case_stale": ("Your case $case_id", "Hello $name, case $case_id is still open and we are on it."),
    "shipment_delayed": ("Order $order_id is late", "Hello $name, news about order $order_id:\n$items"),
    "shipment_dispatched": ("Order $order_id is on its way", "Hello $name, order $order_id is on its way."),
    "shipment_delivered": ("Order $order_id arrived", "Hello $name, order $order_id was delivered."),
    "order_offer": ("Offers for you", "Hello $name, more offers like order $order_id."),
    "sla_apology": ("Sorry for the wait", "Hello $name, sorry for the wait in $conversation_id."),
}


def tenant_config(caps: list[dict]) -> dict:
    triggers = {
        "case_follow_up": {"on": types.CASE_RESOLVED, "purpose": "service", "topic": "case_updates",
                           "delay_s": 86400, "weekend_to": "09:00", "answer": "solved",
                           "whatsapp_template": "case_follow_up_v1"},
        "case_stale": {"on": "case_stale", "stale_after_days": 3, "purpose": "service", "topic": "case_updates"},
        "shipment_delayed": {"on": types.SHIPMENT_DELAYED, "purpose": "service", "topic": "shipping",
                             "transactional": True, "digest_s": 3600, "throttle": {"max": 3, "window_s": 86400}},
        "shipment_dispatched": {"on": types.SHIPMENT_DISPATCHED, "purpose": "service", "topic": "shipping",
                                "whatsapp_template": "shipment_update_v1"},
        "shipment_delivered": {"on": types.SHIPMENT_DELIVERED, "purpose": "service", "topic": "shipping",
                               "transactional": True},
        "order_offer": {"on": types.ORDER_PLACED, "purpose": "marketing", "topic": "offers"},
        "sla_apology": {"on": types.ROUTING_SLA_BREACHED, "purpose": "service", "topic": "case_updates",
                        "transactional": True},
    }
    return {"version": 1, "company": "Shop", "languages": ["en"], "default_language": "en",
            "default_time_zone": "Europe/Berlin", "default_quiet_hours": None,
            "channels": ["email", "sms", "whatsapp"], "caps": caps, "answer_link_base": ANSWERS,
            "answer_ttl_s": 7 * 86400, "triggers": triggers,
            "templates": {name: {"en": {"subject": s, "body": b}} for name, (s, b) in TEMPLATES.items()}}


CONFIG = {"tenants": {
    "default": tenant_config([{"name": "daily", "max": 20, "window": "calendar_day"}]),
    "capped": tenant_config([{"name": "daily", "max": 2, "window": "calendar_day"},
                             {"name": "weekly", "max": 10, "window": "rolling", "days": 7}]),
}}


@dataclass
class Harness:
    stack: Stack
    settings: NotificationSettings
    service: NotificationService
    clock: Clock
    smtp: SmtpReceiver
    twilio: TwilioReceiver
    whatsapp: WhatsAppReceiver
    tenant: str = field(default_factory=lambda: f"shop-{uuid.uuid4().hex[:8]}")
    readers: dict[str, TopicReader] = field(default_factory=dict)
    notification_events: list[tuple[str, dict]] = field(default_factory=list)

    # ---- feeding upstream events through Kafka ----

    def record(self, event_type: str, key: str, data: dict, event_id: str | None = None) -> tuple:
        event = CloudEvent(id=event_id or str(uuid.uuid4()), source="test/upstream", type=event_type,
                           time=self.clock(), data=data, extensions={"tenant": self.tenant})
        r = event_record("unused", key, event)
        return r.key, r.value, r.headers

    async def feed(self, topic: str, *records: tuple) -> None:
        """Publish ``records`` to ``topic``, read them back and hand them, in publishing order, to the
        consumer the service subscribes to that topic."""
        await getattr(self.service, CONSUMERS[topic])(await self.published(topic, *records))

    async def published(self, topic: str, *records: tuple) -> list:
        """The Kafka records ``records`` became on ``topic``, in publishing order."""
        await kafka_io.publish(self.stack.bootstrap_servers, self.stack.topic(topic), list(records))
        order: dict[bytes, int] = {}
        for n, (_, _, headers) in enumerate(records):
            order.setdefault(dict(headers)["ce_id"], n)
        fresh = [r for r in await self.read(topic) if dict(r.headers)["ce_id"] in order]
        fresh.sort(key=lambda r: (order[dict(r.headers)["ce_id"]], r.offset))
        assert len(fresh) == len(records)
        return fresh

    async def upstream(self, event_type: str, key: str, data: dict, event_id: str | None = None) -> tuple:
        record = self.record(event_type, key, data, event_id)
        await self.feed(topics.CONSENT.name if event_type in CONSENT_TYPES else topics.BUSINESS.name, record)
        return record

    async def customer(self, cid: str, channels: tuple[str, ...] = ("email",), purposes: tuple[str, ...] = ("service",),
                       **preferences: Any) -> None:
        """Contact points and preferences, then a consent per purpose and channel (``<cid>:<purpose>:<channel>``)."""
        prefs = {"customer": {"customer_id": cid}, "occurred_at": self.clock().isoformat(), "display_name": "Anna",
                 "addresses": {"email": f"{cid}@shop.example", "sms": PHONE, "whatsapp": PHONE}, **preferences}
        records = [self.record(types.PREFERENCES_CHANGED, cid, prefs)] + [
            self.record(types.CONSENT_GRANTED, cid, consent(cid, purpose, channel, self.clock()))
            for purpose in purposes for channel in channels]
        await self.feed(topics.CONSENT.name, *records)

    async def case(self, event_type: str, case_id: str, cid: str, **fields: Any) -> tuple:
        data = {"case_id": case_id, "customer": {"customer_id": cid}, "occurred_at": self.clock().isoformat(),
                "channel": "email", "conversation_id": f"conv-{case_id}", "agent_id": "ana",
                "subject": "Router broken", **fields}
        return await self.upstream(event_type, case_id, data)

    def shipment_record(self, event_type: str, shipment_id: str, order_id: str, customer: dict, **fields) -> tuple:
        data = {"shipment_id": shipment_id, "order_id": order_id, "customer": customer,
                "occurred_at": self.clock().isoformat(), "carrier": "DHL", **fields}
        if event_type == types.SHIPMENT_DELAYED:
            data.setdefault("new_eta", (self.clock() + timedelta(days=2)).isoformat())
        return self.record(event_type, order_id, data)

    async def shipment(self, event_type: str, shipment_id: str, order_id: str, cid: str, **fields) -> None:
        await self.feed(topics.BUSINESS.name,
                        self.shipment_record(event_type, shipment_id, order_id, {"customer_id": cid}, **fields))

    async def order(self, order_id: str, cid: str) -> None:
        await self.upstream(types.ORDER_PLACED, order_id, {"order_id": order_id, "customer": {"customer_id": cid},
                                                           "occurred_at": self.clock().isoformat()})

    async def routing(self, event_type: str, conversation_id: str, cid: str, **fields: Any) -> None:
        data = {"conversation_id": conversation_id, "customer_id": cid, "channel": "chat", "queue": "general",
                "priority": 10, "at": self.clock().isoformat(), **fields}
        await self.feed(topics.ROUTING.name, self.record(event_type, conversation_id, data))

    async def tick(self, times: int = 2) -> None:
        """Scheduler ticks at the current time; a fallback goes out on the tick after the failure."""
        for _ in range(times):
            await self.service.tick()

    async def read(self, topic: str) -> list:
        """The records that arrived on ``topic`` since the previous read."""
        if topic not in self.readers:
            self.readers[topic] = TopicReader(self.stack.bootstrap_servers, self.stack.topic(topic))
            await self.readers[topic].start()
        return await self.readers[topic].new()

    # ---- what the service did ----

    async def events(self, *kinds: str) -> list[tuple[str, dict]]:
        """(kind, data) of this tenant's notification events, e.g. ("sent", {...}), in topic order per
        customer."""
        for r in await self.read(topics.NOTIFICATIONS.name):
            headers = dict(r.headers)
            if headers["ce_tenant"].decode() == self.tenant:
                self.notification_events.append((headers["ce_type"].decode().split(".")[2], orjson.loads(r.value)))
        return [(kind, data) for kind, data in self.notification_events if not kinds or kind in kinds]

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        async with self.service.pool.acquire() as conn:
            return await conn.fetch(sql, *args)

    async def notifications(self) -> list[Any]:
        return await self.fetch("SELECT * FROM notification.notifications WHERE tenant = $1 ORDER BY created_at, "
                                "trigger_instance", self.tenant)

    def another_instance(self) -> NotificationService:
        """A second service instance on the same database, as a second replica would be."""
        s = self.service
        return NotificationService(s.pool, s.producer, s.config_source, s.senders, s.topic, s.answer_secret,
                                   clock=self.clock, send_attempts=s.send_attempts)

    def http(self) -> httpx.AsyncClient:
        """The notification HTTP API (answers and provider callbacks) on this service."""
        app = FastAPI()
        install_error_handlers(app)
        app.include_router(api.router)
        app.state.service, app.state.settings = self.service, self.settings
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://notification")


def consent(cid: str, purpose: str, channel: str, at: datetime) -> dict:
    return {"consent_id": f"{cid}:{purpose}:{channel}", "customer": {"customer_id": cid}, "purpose": purpose,
            "channel": channel, "wording_version": "2026-01", "source": "preference-centre",
            "occurred_at": at.isoformat()}


def only(events: list[tuple[str, dict]], kind: str) -> dict:
    found = [data for k, data in events if k == kind]
    assert len(found) == 1, (kind, events)
    return found[0]


def text_of(mail) -> str:
    return mail.get_body(("plain",)).get_content()


def items(mail) -> list[str]:
    """The shipments a digest e-mail lists, one "- <shipment>: <new eta>" line each."""
    return [line[2:].split(":")[0] for line in text_of(mail).splitlines() if line.startswith("- ")]


@pytest.fixture(scope="module")
def receivers():
    with SmtpReceiver() as smtp, TwilioReceiver() as twilio, WhatsAppReceiver() as whatsapp:
        yield smtp, twilio, whatsapp


@pytest.fixture(scope="module")
def config_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("notification") / "notification.json"
    path.write_text(json.dumps(CONFIG))
    return path


@pytest.fixture(scope="module")
async def topic_stack(infra):
    """The module's topics (each test filters them by its tenant); their database goes unused."""
    return await new_stack(infra.bootstrap_servers, infra.admin_dsn)


@pytest.fixture
async def h(infra, topic_stack, receivers, config_path):
    """A fresh database and tenant, and the service wired as services/notification/main.py wires it, with a
    hand-moved clock."""
    smtp, twilio, whatsapp = receivers
    for receiver in receivers:
        receiver.clear()
    stack = await with_fresh_database(topic_stack, infra.admin_dsn)
    settings = NotificationSettings(
        kafka_bootstrap_servers=stack.bootstrap_servers, database_url=stack.database_url, topic_prefix=stack.prefix,
        notification_config=config_path, answer_secret=SecretStr("answer-secret"),
        smtp_host=smtp.host, smtp_port=smtp.port, smtp_from="Shop <service@shop.example>",
        twilio_base_url=twilio.url, twilio_account_sid=twilio.account_sid,
        twilio_auth_token=SecretStr(twilio.auth_token), twilio_from="+4930555000",
        twilio_status_callback_url=SMS_CALLBACK, whatsapp_base_url=whatsapp.url,
        whatsapp_phone_number_id=whatsapp.phone_number_id, whatsapp_access_token=SecretStr(whatsapp.access_token),
        whatsapp_app_secret=SecretStr(whatsapp.app_secret))
    pool = await db.create_pool(stack.database_url, max_size=8, default_scope=db.ALL_TENANTS)
    producer = EventProducer(stack.bootstrap_servers, client_id="test-notification")
    await producer.start()
    senders = make_senders(settings)
    clock = Clock(T0)
    service = NotificationService(
        pool, producer, ConfigSource(settings.notification_config), senders,
        stack.topic(topics.NOTIFICATIONS.name), settings.answer_secret, clock=clock, lease_s=settings.lease_s,
        batch_size=settings.send_batch, concurrency=settings.send_concurrency, send_attempts=settings.send_attempts)
    harness = Harness(stack, settings, service, clock, smtp, twilio, whatsapp)
    yield harness
    for reader in harness.readers.values():
        await reader.stop()
    for sender in senders.values():
        await sender.aclose()
    await producer.stop()
    await pool.close()


# ---- sending: fallback, retries, digests, throttles -----------------------------------------------------------


async def test_permanent_email_failure_falls_back_to_sms_on_the_sms_consent(h):
    await h.customer("c1", channels=("email", "sms"))
    await h.case(types.CASE_RESOLVED, "C-1", "c1")
    h.clock.advance(days=1)
    h.smtp.fail_next(1, code=550)
    await h.tick()

    assert not h.smtp.messages
    [sms] = h.twilio.messages
    assert sms.to == PHONE and "C-1" in sms.body and sms.status_callback == SMS_CALLBACK
    events = await h.events()
    assert [kind for kind, _ in events] == ["scheduled", "failed", "sent"]
    failed, sent = only(events, "failed"), only(events, "sent")
    assert (failed["channel"], failed["reason"], failed["permanent"], failed["next_channel"]) == (
        "email", "smtp_550", True, "sms")
    assert sent["notification_id"] == failed["notification_id"]
    assert (sent["channel"], sent["fallback_from"], sent["consent_id"], sent["provider_message_id"]) == (
        "sms", "email", "c1:service:sms", sms.sid)
    [n] = await h.notifications()
    assert (n["status"], n["channel"], n["consent_id"]) == ("sent", "sms", "c1:service:sms")


async def test_transient_failure_is_retried_with_the_same_message_id_then_falls_back(h):
    await h.customer("c2", channels=("email", "sms"))
    await h.case(types.CASE_RESOLVED, "C-2", "c2")
    h.clock.advance(days=1)
    h.smtp.fail_next(1, code=451)
    await h.tick()
    assert not h.smtp.messages, "451: nothing accepted"
    h.clock.advance(seconds=4)
    await h.tick()
    assert not h.smtp.messages, "not retried before the backoff"
    h.clock.advance(seconds=1)
    await h.tick()

    [n] = await h.notifications()
    [mail] = h.smtp.messages
    assert mail["Message-ID"] == message_id_for(f"{n['notification_id']}:email")
    [attempt] = await h.fetch("SELECT * FROM notification.attempts WHERE notification_id = $1", n["notification_id"])
    assert (attempt["tries"], attempt["state"], attempt["idempotency_key"]) == (
        2, "sent", f"{n['notification_id']}:email"), "one attempt, tried twice with one key"
    assert not h.twilio.messages and not await h.events("failed")
    assert only(await h.events(), "sent")["attempt"] == 2

    # send_attempts (3) transient failures in a row: the next channel.
    await h.case(types.CASE_RESOLVED, "C-3", "c2")
    h.clock.advance(days=1)
    h.smtp.fail_next(3, code=451)
    for wait in (0, 5, 30):
        h.clock.advance(seconds=wait)
        await h.tick()
    assert len(h.smtp.messages) == 1 and len(h.twilio.messages) == 1
    failed = only(await h.events(), "failed")
    assert (failed["channel"], failed["reason"], failed["permanent"], failed["next_channel"]) == (
        "email", "smtp_451", False, "sms")
    sent = [data for kind, data in await h.events() if kind == "sent"][-1]
    assert (sent["notification_id"], sent["channel"], sent["fallback_from"]) == (
        failed["notification_id"], "sms", "email")


async def test_delays_of_one_order_within_the_digest_window_go_out_as_one_message(h):
    await h.customer("c3")
    for n, minutes in enumerate((0, 10, 40), start=1):
        h.clock.now = T0 + timedelta(minutes=minutes)
        await h.shipment(types.SHIPMENT_DELAYED, f"S-{n}", "O-7", "c3")
    h.clock.now = T0 + timedelta(minutes=59)
    await h.tick()
    assert not h.smtp.messages, "the digest waits for its window"
    h.clock.now = T0 + timedelta(minutes=60)
    await h.shipment(types.SHIPMENT_DELAYED, "S-4", "O-7", "c3")  # the window has closed, its message not sent yet
    await h.tick()
    [mail] = h.smtp.messages
    assert items(mail) == ["S-1", "S-2", "S-3"]
    h.clock.now = T0 + timedelta(minutes=119)
    await h.tick()
    assert len(h.smtp.messages) == 1
    h.clock.now = T0 + timedelta(minutes=120)
    await h.tick()
    assert len(h.smtp.messages) == 2 and items(h.smtp.messages[1]) == ["S-4"]
    assert [kind for kind, _ in await h.events()] == ["scheduled", "scheduled", "sent", "sent"]


async def test_a_trigger_is_throttled_per_customer(h):
    await h.customer("c4")
    await h.feed(topics.BUSINESS.name, *[h.shipment_record(types.SHIPMENT_DELAYED, f"S-{n}", f"O-{n}",
                                                           {"customer_id": "c4"}) for n in range(1, 5)])
    suppressed = only(await h.events(), "suppressed")
    assert (suppressed["step"], suppressed["reason"], suppressed["trigger"]) == (
        "throttle", "throttled", "shipment_delayed")
    assert ":S-4:" in suppressed["trigger_instance"]
    h.clock.advance(hours=1)
    await h.tick()
    assert sorted(m["Subject"] for m in h.smtp.messages) == [f"Order O-{n} is late" for n in (1, 2, 3)]

    h.clock.now = T0 + timedelta(days=1, minutes=1)
    await h.shipment(types.SHIPMENT_DELAYED, "S-5", "O-5", "c4")
    h.clock.advance(hours=1)
    await h.tick()
    assert h.smtp.messages[-1]["Subject"] == "Order O-5 is late", "a new window allows the trigger again"


# ---- the recipient's time: quiet hours and caps ----------------------------------------------------------


@pytest.mark.parametrize(("trigger_at", "release_at"), [
    (datetime(2026, 10, 30, 7, 0, tzinfo=UTC), datetime(2026, 10, 30, 11, 0, tzinfo=UTC)),  # 03:00 EDT → 07:00 EDT
    (datetime(2026, 11, 1, 8, 0, tzinfo=UTC), datetime(2026, 11, 1, 12, 0, tzinfo=UTC)),   # 03:00 EST after the change
], ids=["edt", "dst-end"])
async def test_quiet_hours_hold_until_local_morning(h, trigger_at, release_at):
    h.clock.now = trigger_at
    await h.customer("c5", time_zone="America/New_York", quiet_hours={"start": "22:00", "end": "07:00"})
    await h.shipment(types.SHIPMENT_DISPATCHED, "S-1", "O-1", "c5")
    await h.tick()
    held = only(await h.events(), "held")
    assert held["reason"] == "quiet_hours"
    assert datetime.fromisoformat(held["release_at"]) == release_at
    h.clock.now = release_at - timedelta(hours=1)  # 06:00 local: still quiet (07:00 on the other offset)
    await h.tick()
    h.clock.now = release_at - timedelta(seconds=1)
    await h.tick()
    assert not h.smtp.messages
    h.clock.now = release_at
    await h.tick()
    [mail] = h.smtp.messages
    assert mail["Subject"] == "Order O-1 is on its way"
    assert [kind for kind, _ in await h.events()] == ["scheduled", "held", "sent"]


async def test_daily_cap_counts_the_recipients_calendar_day_and_spares_transactional_messages(h):
    h.tenant = "capped"
    la = datetime(2026, 3, 10, 17, 0, tzinfo=UTC)  # 10:00 in Los Angeles (PDT, UTC-7)
    h.clock.now = la
    await h.customer("c6", time_zone="America/Los_Angeles")
    for n, local_hour in enumerate((10, 16, 18), start=1):  # 18:00 PDT is the next day in UTC
        h.clock.now = la + timedelta(hours=local_hour - 10)
        await h.shipment(types.SHIPMENT_DISPATCHED, f"S-{n}", f"O-{n}", "c6")
        await h.tick()
    assert [m["Subject"] for m in h.smtp.messages] == ["Order O-1 is on its way", "Order O-2 is on its way"]
    suppressed = only(await h.events(), "suppressed")
    assert (suppressed["step"], suppressed["reason"]) == ("caps", "frequency_cap:daily")

    h.clock.now = la + timedelta(hours=8, minutes=30)
    await h.shipment(types.SHIPMENT_DELIVERED, "S-1", "O-1", "c6")
    await h.tick()
    assert h.smtp.messages[-1]["Subject"] == "Order O-1 arrived", "transactional: exempt from the cap"

    h.clock.now = datetime(2026, 3, 11, 7, 30, tzinfo=UTC)  # 00:30 the next local day
    await h.shipment(types.SHIPMENT_DISPATCHED, "S-4", "O-4", "c6")
    await h.tick()
    assert h.smtp.messages[-1]["Subject"] == "Order O-4 is on its way"
    assert len(h.smtp.messages) == 4


# ---- support state ----------------------------------------------------------------------------------------


async def test_marketing_waits_for_open_complaints_and_breached_slas(h):
    await h.customer("c7", purposes=("service", "marketing"))

    async def offer(order_id: str) -> tuple[str, dict]:
        await h.order(order_id, "c7")
        await h.tick()
        return next((kind, data) for kind, data in await h.events("sent", "suppressed")
                    if data["trigger"] == "order_offer" and order_id in data["trigger_instance"])

    await h.case(types.CASE_OPENED, "C-9", "c7", complaint=True)
    kind, data = await offer("O-1")
    assert (kind, data["step"], data["reason"]) == ("suppressed", "support", "open_complaint")
    await h.case(types.CASE_RESOLVED, "C-9", "c7")
    assert (await offer("O-2"))[0] == "sent"

    await h.routing(types.ROUTING_SLA_BREACHED, "V-1", "c7", metric="first_response", due_at=h.clock().isoformat(),
                    policy="standard")
    kind, data = await offer("O-3")
    assert (kind, data["reason"]) == ("suppressed", "sla_breached")
    await h.routing(types.ROUTING_SLA_BREACHED, "V-1", "c7", metric="next_response", due_at=h.clock().isoformat(),
                    policy="standard")
    await h.tick()
    apologies = [data for kind, data in await h.events("sent") if data["trigger"] == "sla_apology"]
    assert len(apologies) == 2, "each breached metric is its own trigger instance; service messages still go out"
    await h.routing(types.ROUTING_CONVERSATION_RESOLVED, "V-1", "c7", agent_id="ana", sla_status="missed")
    assert (await offer("O-4"))[0] == "sent"
    assert sorted(m["Subject"] for m in h.smtp.messages) == ["Offers for you"] * 2 + ["Sorry for the wait"] * 2


async def test_whatsapp_free_form_inside_the_24_hour_window_template_outside(h):
    await h.customer("c8", channels=("whatsapp",))
    inbound_at = h.clock() - timedelta(hours=1)
    await h.feed(topics.IDENTITY.name, h.record(types.INTERACTION_RESOLVED, "c8", {
        "channel": "whatsapp", "direction": "inbound", "identifiers": [{"type": "whatsapp", "value": PHONE}],
        "source": "test/whatsapp", "event_id": str(uuid.uuid4()), "occurred_at": inbound_at.isoformat(),
        "received_at": inbound_at.isoformat(), "customer_id": "c8", "text": "where is my parcel?"}))
    await h.shipment(types.SHIPMENT_DISPATCHED, "S-1", "O-1", "c8")
    await h.tick()
    h.clock.advance(hours=24)
    await h.shipment(types.SHIPMENT_DISPATCHED, "S-2", "O-2", "c8")
    await h.tick()

    inside, outside = h.whatsapp.messages
    assert (inside.type, inside.to) == ("text", PHONE) and "O-1" in inside.payload["text"]["body"]
    assert outside.type == "template"
    assert outside.payload["template"]["name"] == "shipment_update_v1"
    assert outside.payload["template"]["language"] == {"code": "en"}
    assert [p["text"] for p in outside.payload["template"]["components"][0]["parameters"]] == ["Anna", "O-2"]
    sent = [data for _, data in await h.events("sent")]
    assert [(s["channel"], s.get("template")) for s in sent] == [("whatsapp", None), ("whatsapp", "shipment_update_v1")]
    assert not h.smtp.messages and not h.twilio.messages


# ---- case timers ------------------------------------------------------------------------------------------


async def test_a_reopened_case_cancels_its_follow_up(h):
    await h.customer("c9")
    await h.case(types.CASE_RESOLVED, "C-3", "c9")
    h.clock.advance(hours=2)
    await h.case(types.CASE_REOPENED, "C-3", "c9")
    h.clock.advance(days=1)
    await h.tick()
    assert not h.smtp.messages
    events = await h.events()
    assert [kind for kind, _ in events] == ["scheduled", "suppressed"]
    assert (only(events, "suppressed")["step"], only(events, "suppressed")["reason"]) == ("trigger", "case_reopened")


async def test_a_stale_case_gets_one_status_update_per_stale_state(h):
    await h.customer("c10")
    await h.case(types.CASE_OPENED, "C-4", "c10")
    for days in (2, 3, 3.1, 4):
        h.clock.now = T0 + timedelta(days=days)
        await h.tick()
    [update] = h.smtp.messages
    assert update["Subject"] == "Your case C-4"
    await h.case(types.CASE_UPDATED, "C-4", "c10", note="waiting for a spare part")
    for days in (6, 6.9):
        h.clock.now = T0 + timedelta(days=days)
        await h.tick()
    assert len(h.smtp.messages) == 1
    h.clock.now = T0 + timedelta(days=7)
    await h.tick(times=3)
    assert len(h.smtp.messages) == 2, "stale again after the update: one more status update"
    assert [n["trigger"] for n in await h.notifications()] == ["case_stale", "case_stale"]


# ---- de-duplication and identity --------------------------------------------------------------------------


async def test_a_redelivered_case_resolved_makes_one_notification(h):
    await h.customer("c11")
    resolved = h.record(types.CASE_RESOLVED, "C-5", {
        "case_id": "C-5", "customer": {"customer_id": "c11"}, "occurred_at": h.clock().isoformat(),
        "channel": "email"})
    await h.feed(topics.BUSINESS.name, resolved, resolved)
    await h.feed(topics.BUSINESS.name, resolved)
    # Two replicas handed the same record at once (a rebalance) and ticking side by side.
    other = h.another_instance()
    again = h.record(types.CASE_RESOLVED, "C-6", {
        "case_id": "C-6", "customer": {"customer_id": "c11"}, "occurred_at": h.clock().isoformat(),
        "channel": "email"})
    delivered = await h.published(topics.BUSINESS.name, again)
    await asyncio.gather(h.service.process_business(delivered), other.process_business(delivered))
    h.clock.advance(days=1)
    await asyncio.gather(h.service.tick(), other.tick())
    await asyncio.gather(h.service.tick(), other.tick())

    assert sorted(n["trigger_instance"].split(":")[2] for n in await h.notifications()) == ["C-5", "C-6"]
    assert len(await h.events("scheduled")) == 2 and len(await h.events("sent")) == 2
    assert len(h.smtp.messages) == 2 and not h.smtp.duplicates


async def test_an_event_for_an_unknown_email_waits_for_the_customer_snapshot(h):
    ref = {"identifiers": [{"type": "email", "value": "anna.berg@example.com"}]}
    await h.upstream(types.CONSENT_GRANTED, "anna.berg@example.com", {
        **consent("x", "service", "email", h.clock()), "consent_id": "anna-email", "customer": ref})
    shouted = {"identifiers": [{"type": "email", "value": " Anna.Berg@Example.COM"}]}
    await h.feed(topics.BUSINESS.name, h.shipment_record(types.SHIPMENT_DISPATCHED, "S-1", "O-1", shouted))
    await h.tick()
    assert not await h.notifications() and not h.smtp.messages
    assert len(await h.fetch("SELECT * FROM notification.unresolved")) == 2

    await h.feed(topics.CUSTOMERS.name, h.record(types.CUSTOMER_SNAPSHOT, "cust-anna", {
        "customer_id": "cust-anna", "identifiers": [{"type": "email", "value": "anna.berg@example.com"},
                                                    {"type": "phone", "value": PHONE}]}))
    await h.tick()
    [mail] = h.smtp.messages
    assert mail["To"] == "anna.berg@example.com" and mail["Subject"] == "Order O-1 is on its way"
    sent = only(await h.events(), "sent")
    assert (sent["customer_id"], sent["consent_id"]) == ("cust-anna", "anna-email")
    assert not await h.fetch("SELECT * FROM notification.unresolved")


async def test_a_merge_moves_consents_and_notifications_to_the_survivor(h):
    await h.customer("cust-old")
    await h.case(types.CASE_RESOLVED, "C-8", "cust-old")
    await h.feed(topics.IDENTITY.name, h.record(types.CUSTOMERS_MERGED, "cust-new", {
        "merge_id": "m-1", "survivor_id": "cust-new", "merged_ids": ["cust-old"], "rule": "shared_identifier",
        "linking_identifiers": [{"type": "email", "value": "cust-old@shop.example"}], "trigger_source": "test",
        "trigger_event_id": "e-1", "merged_at": h.clock().isoformat()}))
    assert [(r["customer_id"], r["consent_id"]) for r in await h.fetch(
        "SELECT * FROM notification.consents")] == [("cust-new", "cust-old:service:email")]
    h.clock.advance(days=1)
    await h.tick()
    [mail] = h.smtp.messages
    assert mail["To"] == "cust-old@shop.example"
    sent = only(await h.events(), "sent")
    assert (sent["customer_id"], sent["consent_id"]) == ("cust-new", "cust-old:service:email")
    assert [n["customer_id"] for n in await h.notifications()] == ["cust-new"]

    # The CRM still names the merged id: its withdrawal and its next case are the survivor's.
    await h.upstream(types.CONSENT_WITHDRAWN, "cust-old", {
        "consent_id": "cust-old:service:email:withdrawn", "customer": {"customer_id": "cust-old"},
        "purpose": "service", "channel": "email", "source": "crm", "occurred_at": h.clock().isoformat()})
    await h.case(types.CASE_RESOLVED, "C-9", "cust-old")
    h.clock.advance(days=1)
    await h.tick()
    assert len(h.smtp.messages) == 1
    assert [(r["customer_id"], r["status"]) for r in await h.fetch("SELECT * FROM notification.consents")] == [
        ("cust-new", "withdrawn")]
    suppressed = only(await h.events(), "suppressed")
    assert (suppressed["customer_id"], suppressed["reason"]) == ("cust-new", "consent_withdrawn")


# ---- provider callbacks and answers through the HTTP API --------------------------------------------------


async def test_twilio_delivery_callback_marks_the_sms_delivered(h):
    await h.customer("c12", channels=("sms",))
    await h.shipment(types.SHIPMENT_DISPATCHED, "S-1", "O-1", "c12")
    await h.tick()
    [sms] = h.twilio.messages
    delivered = h.twilio.status_callback(sms, "delivered")
    async with h.http() as client:
        forged = await client.post("/v1/callbacks/twilio", content=delivered.body,
                                   headers={**delivered.headers, "X-Twilio-Signature": "AAAA" + delivered.headers[
                                       "X-Twilio-Signature"][4:]})
        assert forged.status_code == 401 and forged.json()["error"]["reason"] == "signature_invalid"
        assert (await h.notifications())[0]["status"] == "sent"
        resp = await client.post("/v1/callbacks/twilio", content=delivered.body, headers=delivered.headers)
        assert resp.status_code == 200, resp.text
    [n] = await h.notifications()
    assert n["status"] == "delivered"
    event = only(await h.events(), "delivered")
    assert (event["channel"], event["provider_message_id"]) == ("sms", sms.sid)


async def test_whatsapp_failure_callback_falls_back_to_sms(h):
    await h.customer("c13", channels=("whatsapp", "sms"), preferred_channel="whatsapp")
    await h.shipment(types.SHIPMENT_DISPATCHED, "S-1", "O-1", "c13")
    await h.tick()
    [message] = h.whatsapp.messages
    failed = h.whatsapp.status_webhook(message.id, "failed", error_code=131026)
    async with h.http() as client:
        resp = await client.post("/v1/callbacks/whatsapp", content=failed.body, headers=failed.headers)
    assert resp.status_code == 200 and resp.json() == {"applied": 1}, resp.text
    await h.tick()
    [sms] = h.twilio.messages
    assert "O-1" in sms.body
    events = await h.events()
    assert [kind for kind, _ in events] == ["scheduled", "sent", "failed", "sent"]
    failure = only(events, "failed")
    assert (failure["channel"], failure["permanent"], failure["next_channel"]) == ("whatsapp", True, "sms")
    assert "131026" in failure["reason"]
    assert events[-1][1]["fallback_from"] == "whatsapp" and events[-1][1]["channel"] == "sms"


async def test_answer_links_expire_cannot_be_forged_and_count_once(h):
    await h.customer("c14")
    await h.case(types.CASE_RESOLVED, "C-7", "c14", channel="chat")  # chat: no notification channel
    h.clock.advance(days=1)
    await h.tick()
    [mail] = h.smtp.messages
    yes_link, no_link = re.search(r"Yes: (\S+) No: (\S+)", text_of(mail)).groups()
    assert yes_link.startswith(ANSWERS + "/") and no_link.startswith(ANSWERS + "/")
    no_path, yes_path = no_link.removeprefix("https://notify.shop.example"), yes_link.removeprefix(
        "https://notify.shop.example")
    as_json = {"Accept": "application/json"}
    async with h.http() as client:
        page = await client.get(no_path)
        assert page.status_code == 200 and "<form" in page.text
        resp = await client.post(no_path, headers=as_json)
        assert resp.status_code == 200 and resp.json()["solved"] is False and resp.json()["case_id"] == "C-7"
        assert (await client.post(no_path, headers=as_json)).status_code == 409
        reused = await client.post(yes_path, headers=as_json)
        assert reused.status_code == 409 and reused.json()["error"]["reason"] == "already_answered"
        forged = await client.post(yes_path[:-4] + ("AAAA" if not yes_path.endswith("AAAA") else "BBBB"), headers=as_json)
        assert forged.status_code == 400
        h.clock.advance(days=7)
        expired = await client.post(yes_path, headers=as_json)
        assert expired.status_code == 410 and expired.json()["error"]["reason"] == "expired"
    answered = only(await h.events(), "follow_up_answered")
    assert (answered["solved"], answered["case_id"], answered["conversation_id"], answered["agent_id"],
            answered["channel"]) == (False, "C-7", "conv-C-7", "ana", "email")
    assert "channel" not in only(await h.events(), "scheduled"), "a chat case names no notification channel"


async def test_a_consent_withdrawn_before_the_due_time_stops_the_send(h):
    await h.customer("c15")
    await h.case(types.CASE_RESOLVED, "C-10", "c15")
    h.clock.advance(hours=3)
    await h.upstream(types.CONSENT_WITHDRAWN, "c15", {
        "consent_id": "c15:service:email:withdrawn", "customer": {"customer_id": "c15"}, "purpose": "service",
        "channel": "email", "source": "preference-centre", "occurred_at": h.clock().isoformat()})
    h.clock.advance(days=1)
    await h.tick()
    assert not h.smtp.messages
    suppressed = only(await h.events(), "suppressed")
    assert (suppressed["step"], suppressed["reason"]) == ("consent", "consent_withdrawn")
    [n] = await h.notifications()
    assert n["status"] == "suppressed"
