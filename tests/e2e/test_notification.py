"""Notification on real Kafka and PostgreSQL with every service as its own process and real SMTP / HTTP
receivers: the "is your problem solved?" loop back into routing, consent enforcement at volume, and exactly-once
delivery across ``kill -9`` of the notification process."""

from __future__ import annotations

import asyncio
import random
import re
import time
import uuid
from collections import Counter
from datetime import datetime, timezone

import httpx
import orjson
import pytest

from shared.cloudevents import CloudEvent
from shared.contracts import types
from shared.kafka import event_record
from tests.support import kafka_io
from tests.support.receivers import SmtpReceiver, TwilioReceiver
from tests.support.scale import scaled
from tests.support.stack import ServiceProcess, new_stack

pytestmark = pytest.mark.e2e

ROUTING = """
tenants:
  shop:
    version: 1
    offer_timeout_s: 600
    continuity: {window_s: 86400, wait_s: 0}
    workflow:
      default_targets:
        - {queue: general, expression: "true"}
"""

TEMPLATES = """
      {trigger}:
        en: {{subject: "{subject}", body: "Hello $name, {body}"}}
        de: {{subject: "{subject}", body: "Hallo $name, {body}"}}
"""


def notification_config(answer_base: str) -> str:
    templates = "".join(TEMPLATES.format(trigger=t, subject=s, body=b) for t, s, b in (
        ("case_follow_up", "Is your problem solved?", "case $case_id. Yes: $yes_link No: $no_link"),
        ("shipment_delayed", "Your delivery is late", "order $order_id now arrives $new_eta."),
    ))
    return f"""
tenants:
  default:
    version: 1
    company: Shop
    default_language: en
    default_time_zone: Europe/Berlin
    default_quiet_hours: null
    channels: [email, sms]
    caps:
      - {{name: daily, max: 50, window: calendar_day}}
    answer_link_base: "{answer_base}"
    triggers:
      case_follow_up:
        on: touchpoint.case.resolved.v1
        purpose: service
        topic: case_updates
        delay_s: 2
        channel: event
        answer: solved
      shipment_delayed:
        on: touchpoint.shipment.delayed.v1
        purpose: service
        topic: shipping
        transactional: true
    templates:{templates}"""


def record(tenant: str, event_type: str, key: str, data: dict, source: str = "test/crm") -> tuple:
    event = CloudEvent(id=str(uuid.uuid4()), source=source, type=event_type, time=datetime.now(timezone.utc),
                       data=data, extensions={"tenant": tenant})
    r = event_record("unused", key, event)
    return r.key, r.value, r.headers


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


@pytest.fixture(scope="module")
async def receivers():
    smtp, sms = SmtpReceiver(), TwilioReceiver()
    smtp.start()
    sms.start()
    yield smtp, sms
    smtp.stop()
    sms.stop()


@pytest.fixture(scope="module")
async def notification_stack(infra, receivers, tmp_path_factory):
    smtp, sms = receivers
    folder = tmp_path_factory.mktemp("notification")
    (folder / "routing.yaml").write_text(ROUTING)
    s = await new_stack(infra.bootstrap_servers, infra.admin_dsn)
    for service in ("ingestion", "identity", "timeline"):
        s.start(service)
    s.start("routing", TOUCHPOINT_ROUTING_CONFIG=str(folder / "routing.yaml"), TOUCHPOINT_TIMER_INTERVAL_S="0.1")
    env = dict(TOUCHPOINT_TICK_INTERVAL_S="0.1", TOUCHPOINT_LEASE_S="3",
               TOUCHPOINT_SMTP_HOST="127.0.0.1", TOUCHPOINT_SMTP_PORT=str(smtp.port),
               TOUCHPOINT_SMTP_FROM="Shop <service@shop.example>",
               TOUCHPOINT_TWILIO_BASE_URL=sms.url, TOUCHPOINT_TWILIO_ACCOUNT_SID=sms.account_sid,
               TOUCHPOINT_TWILIO_AUTH_TOKEN=sms.auth_token, TOUCHPOINT_TWILIO_FROM="+4930000000")
    # The answer links point at the notification process, whose port is chosen before it starts.
    notification = ServiceProcess("notification", "notification", s.env(**env))
    (folder / "notification.yaml").write_text(notification_config(f"{notification.url}/v1/answers"))
    notification.env["TOUCHPOINT_NOTIFICATION_CONFIG"] = str(folder / "notification.yaml")
    notification.start()
    s.processes["notification"] = notification
    for proc in s.processes.values():
        await proc.wait_ready()
    yield s
    s.stop_all()


async def notification_events(stack, tenant: str) -> list[tuple[str, dict]]:
    out = []
    for r in await kafka_io.read_all(stack.bootstrap_servers, stack.topic("touchpoint.notification.v1")):
        headers = dict(r.headers)
        if headers.get("ce_tenant", b"").decode() == tenant:
            out.append((headers["ce_type"].decode(), orjson.loads(r.value)))
    return out


async def routing_events(stack, tenant: str) -> list[tuple[str, dict]]:
    out = []
    for r in await kafka_io.read_all(stack.bootstrap_servers, stack.topic("touchpoint.routing.v1")):
        headers = dict(r.headers)
        if headers.get("ce_tenant", b"").decode() == tenant:
            out.append((headers["ce_type"].decode(), orjson.loads(r.value)))
    return out


def mails_to(smtp, address: str) -> list:
    return [m for m in smtp.messages if address in m["To"]]


async def test_follow_up_no_reopens_the_conversation_with_the_same_agent(notification_stack, receivers):
    stack, tenant = notification_stack, "shop"
    smtp, _ = receivers
    email = "loop-customer@example.com"
    key = await stack.api_key(tenant, ["ingest", "read", "agent"])
    await kafka_io.publish(stack.bootstrap_servers, stack.topic("touchpoint.agents.v1"), [
        record(tenant, types.AGENT_PROFILE_UPDATED, "ana", {"agent_id": "ana", "teams": ["care"]}),
        record(tenant, types.AGENT_PRESENCE_CHANGED, "ana", {"agent_id": "ana", "presence": "online",
                                                              "changed_at": now_iso()}),
    ])
    async with httpx.AsyncClient(base_url=stack.processes["ingestion"].url, timeout=10,
                                 headers={"Authorization": f"Bearer {key}"}) as client:
        resp = await client.post("/v1/events", json={
            "specversion": "1.0", "id": "loop-1", "source": "test/mail", "type": types.INTERACTION_OCCURRED,
            "tenant": tenant, "data": {"channel": "email", "direction": "inbound", "subject": "Router broken",
                                       "identifiers": [{"type": "email", "value": email}], "text": "no internet"}},
            headers={"Content-Type": "application/cloudevents+json"})
        assert resp.status_code == 202, resp.text

    async def offered():
        found = [d for t, d in await routing_events(stack, tenant) if t == types.ROUTING_CONVERSATION_OFFERED]
        return found or None

    offer = (await kafka_io.wait_for(offered, timeout=60, what="the conversation offered to ana"))[0]
    assert offer["agent_id"] == "ana"
    conversation, customer = offer["conversation_id"], offer["customer_id"]
    async with httpx.AsyncClient(base_url=stack.processes["routing"].url, timeout=10,
                                 headers={"Authorization": f"Bearer {key}"}) as client:
        assert (await client.post(f"/v1/agents/ana/offers/{offer['offer_id']}/accept")).status_code == 200
        for event in ("agent_replied", "resolved"):
            resp = await client.post(f"/v1/agents/ana/conversations/{conversation}/events", json={"type": event})
            assert resp.status_code == 200, resp.text

    ref = {"identifiers": [{"type": "email", "value": email}]}
    await kafka_io.publish(stack.bootstrap_servers, stack.topic("touchpoint.consent.v1"), [
        record(tenant, types.CONSENT_GRANTED, email, {"consent_id": "consent-loop-1", "customer": ref,
                                                      "purpose": "service", "channel": "email",
                                                      "wording_version": "2026-01", "source": "web-form",
                                                      "occurred_at": now_iso()})])
    resolved_at = time.monotonic()
    await kafka_io.publish(stack.bootstrap_servers, stack.topic("touchpoint.business.v1"), [
        record(tenant, types.CASE_RESOLVED, "CASE-1", {"case_id": "CASE-1", "customer": ref, "occurred_at": now_iso(),
                                                       "channel": "email", "conversation_id": conversation,
                                                       "agent_id": "ana", "subject": "Router broken"},
               source="test/helpdesk")])

    mail = (await kafka_io.wait_for(lambda: _async(mails_to(smtp, email)), timeout=60, what="the follow-up e-mail"))[0]
    waited = time.monotonic() - resolved_at
    body = mail.get_body(("plain",)).get_content()
    print(f"\nfollow-up e-mail after {waited:.1f} s (delay 2 s): {mail['Subject']!r}")
    assert waited >= 2, "sent before the configured delay"
    assert mail["Subject"] == "Is your problem solved?" and "CASE-1" in body
    no_link = re.search(r"No: (\S+)", body).group(1)
    async with httpx.AsyncClient(timeout=10) as client:
        page = await client.get(no_link)
        assert page.status_code == 200 and "<form" in page.text, "GET only shows the confirmation"
        resp = await client.post(no_link, headers={"Accept": "application/json"})
        assert resp.status_code == 200 and resp.json()["solved"] is False, resp.text
        again = await client.post(no_link, headers={"Accept": "application/json"})
        assert again.status_code == 409 and again.json()["error"]["reason"] == "already_answered"
        forged = await client.post(no_link[:-3] + "abc", headers={"Accept": "application/json"})
        assert forged.status_code == 400

    async def reoffered():
        offers = [d for t, d in await routing_events(stack, tenant)
                  if t == types.ROUTING_CONVERSATION_OFFERED and d["conversation_id"] == conversation]
        return offers if len(offers) >= 2 else None

    second = (await kafka_io.wait_for(reoffered, timeout=60, what="the reopened conversation offered again"))[-1]
    print(f"reopened conversation {conversation} offered to {second['agent_id']}")
    assert second["agent_id"] == "ana", "the reopened conversation goes back to the same agent"

    kinds = [t for t, _ in await notification_events(stack, tenant)]
    for kind in (types.NOTIFICATION_SCHEDULED, types.NOTIFICATION_SENT, types.NOTIFICATION_FOLLOW_UP_ANSWERED):
        assert kind in kinds, kind
    sent = next(d for t, d in await notification_events(stack, tenant) if t == types.NOTIFICATION_SENT)
    assert sent["consent_id"] == "consent-loop-1" and sent["customer_id"] == customer

    async def on_timeline():
        async with httpx.AsyncClient(base_url=stack.processes["timeline"].url, timeout=10,
                                     headers={"Authorization": f"Bearer {key}"}) as client:
            entries = (await client.get(f"/v1/customers/{customer}/timeline", params={"limit": 100})).json()["entries"]
        found = Counter((e.get("details") or {}).get("event") for e in entries if e["kind"] == "notification")
        return found if found.get("follow_up_answered") else None

    timeline = await kafka_io.wait_for(on_timeline, timeout=60, what="notification entries on the timeline")
    print(f"timeline: {dict(timeline)}")
    assert timeline["sent"] == 1 and timeline["scheduled"] == 1

    async with httpx.AsyncClient(base_url=stack.processes["notification"].url, timeout=10,
                                 headers={"Authorization": f"Bearer {key}"}) as client:
        listing = (await client.get(f"/v1/customers/{customer}/notifications")).json()["notifications"]
    [n] = listing
    assert n["status"] == "sent" and n["consent"]["wording_version"] == "2026-01"
    assert [d["outcome"] for d in n["decisions"]][:3] == ["schedule", "send", "sent"]


async def _async(value):
    return value or None


async def _publish_profiles(stack, tenant: str, customers: list[str], domain: str) -> None:
    """Each customer's e-mail address as an explicit contact point (preferences), keyed by customer id."""
    await kafka_io.publish(stack.bootstrap_servers, stack.topic("touchpoint.consent.v1"), [
        record(tenant, types.PREFERENCES_CHANGED, c, {"customer": {"customer_id": c}, "occurred_at": now_iso(),
                                                      "addresses": {"email": f"{c}@{domain}"}, "language": "en"})
        for c in customers])


def _consent(tenant: str, customer: str, event_type: str, consent_id: str) -> tuple:
    return record(tenant, event_type, customer, {"consent_id": consent_id, "customer": {"customer_id": customer},
                                                 "purpose": "service", "channel": "email",
                                                 "wording_version": "2026-01", "source": "preference-centre",
                                                 "occurred_at": now_iso()})


def _delay(tenant: str, customer: str, shipment: str) -> tuple:
    return record(tenant, types.SHIPMENT_DELAYED, shipment, {
        "shipment_id": shipment, "order_id": f"O-{shipment}", "customer": {"customer_id": customer},
        "occurred_at": now_iso(), "new_eta": "2026-12-01T12:00:00+00:00"}, source="test/carrier")


async def test_consent_gates_every_send_and_a_withdrawal_stops_sends_within_5_s(notification_stack, receivers):
    stack, tenant = notification_stack, "consent"
    smtp, _ = receivers
    domain = "consent.example"
    groups = {"none": [f"none-{n}" for n in range(334)], "withdrawn": [f"withdrawn-{n}" for n in range(333)],
              "valid": [f"valid-{n}" for n in range(333)]}
    everyone = [c for members in groups.values() for c in members]
    await _publish_profiles(stack, tenant, everyone, domain)
    grants = [_consent(tenant, c, types.CONSENT_GRANTED, f"grant-{c}") for c in groups["withdrawn"] + groups["valid"]]
    await kafka_io.publish(stack.bootstrap_servers, stack.topic("touchpoint.consent.v1"), grants)
    await kafka_io.publish(stack.bootstrap_servers, stack.topic("touchpoint.consent.v1"),
                           [_consent(tenant, c, types.CONSENT_WITHDRAWN, f"withdraw-{c}") for c in groups["withdrawn"]])

    async def consents_applied():
        n = await stack.fetchval("SELECT count(*) FROM notification.consent_log WHERE tenant = $1", tenant)
        return n == 333 * 3 or None

    await kafka_io.wait_for(consents_applied, timeout=60, what="every consent event applied")
    await kafka_io.publish(stack.bootstrap_servers, stack.topic("touchpoint.business.v1"),
                           [_delay(tenant, c, f"S-{c}") for c in everyone])

    async def decided():
        n = await stack.fetchval("""SELECT count(*) FROM notification.notifications
                                      WHERE tenant = $1 AND status IN ('sent', 'suppressed')""", tenant)
        return n == len(everyone) or None

    await kafka_io.wait_for(decided, timeout=120, what="1,000 triggers decided")
    await asyncio.sleep(0.5)
    received = Counter(m["To"].split("-")[0] for m in smtp.messages if m["To"].endswith("@" + domain))
    print(f"\n1,000 triggers: e-mails received per group {dict(received)}")
    assert received == {"valid": 333}, "no send without a valid consent"
    conn = await stack.connect()
    try:
        reasons = Counter(dict(await conn.fetch(
            """SELECT d.reason, count(*) FROM notification.decisions d JOIN notification.notifications n
               USING (tenant, notification_id) WHERE d.tenant = $1 AND d.outcome = 'suppress' GROUP BY d.reason""",
            tenant)))
        linked = await conn.fetch(
            """SELECT n.customer_id, n.consent_id, l.status, l.wording_version FROM notification.notifications n
               LEFT JOIN notification.consent_log l ON l.tenant = n.tenant AND l.consent_id = n.consent_id
               WHERE n.tenant = $1 AND n.status = 'sent'""", tenant)
    finally:
        await conn.close()
    print(f"suppressed by reason: {dict(reasons)}")
    assert reasons == {"no_consent": 334, "consent_withdrawn": 333}
    assert len(linked) == 333 and all(r["consent_id"] == f"grant-{r['customer_id']}" and r["status"] == "granted"
                                       and r["wording_version"] == "2026-01" for r in linked), \
        "every send names the consent record it relied on"

    # A withdrawal stops sends within 5 s: withdraw for 50 customers who have consent, then trigger again 5 s
    # later; measure how long the withdrawal took to take effect.
    late = groups["valid"][:50]
    before = len(smtp.messages)
    started = time.monotonic()
    await kafka_io.publish(stack.bootstrap_servers, stack.topic("touchpoint.consent.v1"),
                           [_consent(tenant, c, types.CONSENT_WITHDRAWN, f"late-withdraw-{c}") for c in late])

    async def withdrawn():
        n = await stack.fetchval("""SELECT count(*) FROM notification.consents WHERE tenant = $1
                                      AND status = 'withdrawn' AND consent_id LIKE 'late-withdraw-%'""", tenant)
        return n == len(late) or None

    await kafka_io.wait_for(withdrawn, timeout=5, interval=0.05, what="the withdrawals in force within 5 s")
    effective = time.monotonic() - started
    await asyncio.sleep(max(0.0, 5 - effective))
    await kafka_io.publish(stack.bootstrap_servers, stack.topic("touchpoint.business.v1"),
                           [_delay(tenant, c, f"S2-{c}") for c in late])

    async def late_decided():
        n = await stack.fetchval("""SELECT count(*) FROM notification.notifications WHERE tenant = $1
                                      AND trigger_instance LIKE '%S2-%' AND status IN ('sent', 'suppressed')""", tenant)
        return n == len(late) or None

    await kafka_io.wait_for(late_decided, timeout=60, what="the triggers after the withdrawal decided")
    await asyncio.sleep(0.5)
    print(f"withdrawal in force after {effective * 1000:.0f} ms; sends after it: {len(smtp.messages) - before}")
    assert len(smtp.messages) == before, "no send after the withdrawal"


# ``kill -9`` during sends: 1,000 messages and 2 kills, or 2,000 and 3 to 5 kills with TOUCHPOINT_TEST_SCALE=full.
# The time goes to the restarts (a restarted process rejoins its consumer groups before it sends again), not to
# the sends; 1,000 leaves enough unsent between kills that every kill lands while sends are outstanding.
KILL_SENDS, MIN_KILLS, MAX_KILLS = scaled((1000, 2, 2), (2000, 3, 5))


async def test_kill_9_during_sends_delivers_each_message_exactly_once(notification_stack, receivers):
    """``kill -9`` of the notification process at random moments while ``KILL_SENDS`` messages go out. Each
    message reaches the SMTP receiver's mailbox once: nothing is lost, and a message whose send a kill left in
    doubt is sent again with the same Message-ID (its idempotency key), which the mailbox keeps once."""
    stack, tenant = notification_stack, "crash"
    smtp, _ = receivers
    domain = "crash.example"
    customers = [f"c{n}" for n in range(KILL_SENDS)]
    await _publish_profiles(stack, tenant, customers, domain)
    await kafka_io.publish(stack.bootstrap_servers, stack.topic("touchpoint.consent.v1"),
                           [_consent(tenant, c, types.CONSENT_GRANTED, f"grant-{c}") for c in customers])

    async def consents_applied():
        n = await stack.fetchval("SELECT count(*) FROM notification.consents WHERE tenant = $1", tenant)
        return n == len(customers) or None

    await kafka_io.wait_for(consents_applied, timeout=60, what=f"{KILL_SENDS:,} consents applied")
    started = time.monotonic()
    await kafka_io.publish(stack.bootstrap_servers, stack.topic("touchpoint.business.v1"),
                           [_delay(tenant, c, f"K-{c}") for c in customers])
    notification = stack.processes["notification"]
    rng = random.Random(7)
    kills = 0
    mine = lambda: [m for m in smtp.messages if m["To"].endswith("@" + domain)]  # noqa: E731
    while len({m["Message-ID"] for m in mine()}) < len(customers) and kills < MAX_KILLS:
        await asyncio.sleep(rng.uniform(0.5, 2.5))
        if len({m["Message-ID"] for m in mine()}) >= len(customers):
            break
        notification.kill()
        kills += 1
        notification.start()
        await notification.wait_ready()

    async def all_sent():
        n = await stack.fetchval("SELECT count(*) FROM notification.notifications WHERE tenant = $1 AND status = 'sent'",
                            tenant)
        return n == len(customers) or None

    await kafka_io.wait_for(all_sent, timeout=180, what=f"{KILL_SENDS:,} notifications sent")
    elapsed = time.monotonic() - started
    await asyncio.sleep(1)
    mails = mine()
    ids = Counter(m["Message-ID"] for m in mails)
    per_customer = Counter(m["To"] for m in mails)
    resent = sum(n - 1 for n in ids.values())
    in_doubt = await stack.fetchval("""SELECT count(*) FROM notification.attempts WHERE tenant = $1 AND tries > 1""",
                               tenant)
    print(f"\n{kills} x kill -9 during {KILL_SENDS:,} sends ({elapsed:.1f} s): distinct messages in the mailbox "
          f"{len(ids)}, customers reached {len(per_customer)}, SMTP transactions {len(mails)} (repeats of an "
          f"in-doubt send with the same Message-ID: {resent}; attempts repeated after a lost lease: {in_doubt})")
    assert kills >= MIN_KILLS, "the process was killed while sending"
    assert len(ids) == len(customers) and set(per_customer) == {f"{c}@{domain}" for c in customers}
    assert all(n == 1 for n in Counter(frozenset([m["To"], m["Message-ID"]]) for m in mails if ids[m["Message-ID"]] == 1).values())
    assert resent <= in_doubt, "a repeat only ever comes from a send left in doubt, under the same key"
    repeated_keys = {mid for mid, n in ids.items() if n > 1}
    assert all(len({m["To"] for m in mails if m["Message-ID"] == mid}) == 1 for mid in repeated_keys)
