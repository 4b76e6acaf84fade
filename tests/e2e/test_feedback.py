"""Feedback on real Kafka and PostgreSQL with every service as its own process: a resolved case leads to a survey
e-mail (through the notification service, to a local SMTP receiver), an NPS 3 answer opens a prioritised
follow-up conversation for the original team with a 48 h SLA, and resolving it closes the loop on the timeline."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone

import httpx
import orjson
import pytest

from shared.cloudevents import CloudEvent
from shared.contracts import types
from shared.kafka import event_record
from tests.support import kafka_io
from tests.support.receivers import SmtpReceiver
from tests.support.stack import ServiceProcess, new_stack

pytestmark = pytest.mark.e2e

ROUTING = """
tenants:
  shop:
    version: 1
    offer_timeout_s: 600
    sla:
      - {name: detractor-follow-up, match: "tags HAS 'detractor_follow_up'", resolution_s: 172800}
    workflow:
      filters:
        - name: follow-ups
          match: "tags HAS 'detractor_follow_up'"
          targets:
            - {queue: follow-ups, expression: "teams HAS task.team"}
      default_targets:
        - {queue: general, expression: "true"}
"""

NOTIFICATION = """
tenants:
  default:
    version: 1
    default_quiet_hours: null
    channels: [email]
    triggers:
      survey_invitation:
        on: touchpoint.feedback.invited.v1
        purpose: surveys
        topic: surveys
        channel: event
    templates:
      survey_invitation:
        en: {subject: "$survey_title", body: "Please tell us: $survey_link"}
        de: {subject: "$survey_title", body: "Bitte sagen Sie uns: $survey_link"}
"""


def feedback_config(link_base: str) -> str:
    return f"""
tenants:
  default:
    version: 1
    survey_link_base: "{link_base}"
    detractor_follow_up: {{sla_s: 172800, priority: 10, resurvey: false}}
    product_alert: {{threshold: 2.0, min_count: 5}}
    surveys:
      nps_after_case:
        version: 3
        title: {{en: "How likely are you to recommend us?", de: "Wie wahrscheinlich empfehlen Sie uns weiter?"}}
        questions:
          - {{id: nps, kind: nps, text: {{en: "How likely are you to recommend us to a friend?", de: "Wie wahrscheinlich ist es, dass Sie uns weiterempfehlen?"}}}}
          - {{id: comment, kind: text, required: false, text: {{en: "Anything to add?", de: "Möchten Sie etwas ergänzen?"}}}}
    triggers:
      case_resolved: {{on: touchpoint.case.resolved.v1, survey: nps_after_case, delay_s: 1}}
"""


def record(tenant: str, event_type: str, key: str, data: dict, source: str = "test/crm") -> tuple:
    event = CloudEvent(id=str(uuid.uuid4()), source=source, type=event_type, time=datetime.now(timezone.utc),
                       data=data, extensions={"tenant": tenant})
    r = event_record("unused", key, event)
    return r.key, r.value, r.headers


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


async def topic_events(stack, topic: str, tenant: str) -> list[tuple[str, dict]]:
    out = []
    for r in await kafka_io.read_all(stack.bootstrap_servers, stack.topic(topic)):
        headers = dict(r.headers)
        if headers.get("ce_tenant", b"").decode() == tenant:
            out.append((headers["ce_type"].decode(), orjson.loads(r.value)))
    return out


@pytest.fixture(scope="module")
async def feedback_stack(infra, tmp_path_factory):
    folder = tmp_path_factory.mktemp("feedback")
    smtp = SmtpReceiver()
    smtp.start()
    (folder / "routing.yaml").write_text(ROUTING)
    (folder / "notification.yaml").write_text(NOTIFICATION)
    s = await new_stack(infra.bootstrap_servers, infra.admin_dsn)
    for service in ("ingestion", "identity", "timeline"):
        s.start(service)
    s.start("routing", TOUCHPOINT_ROUTING_CONFIG=str(folder / "routing.yaml"), TOUCHPOINT_TIMER_INTERVAL_S="0.1")
    s.start("notification", TOUCHPOINT_NOTIFICATION_CONFIG=str(folder / "notification.yaml"),
            TOUCHPOINT_TICK_INTERVAL_S="0.1", TOUCHPOINT_SMTP_HOST="127.0.0.1", TOUCHPOINT_SMTP_PORT=str(smtp.port),
            TOUCHPOINT_SMTP_FROM="Shop <service@shop.example>")
    feedback = ServiceProcess("feedback", "feedback", s.env(TOUCHPOINT_TICK_INTERVAL_S="0.1",
                                                            TOUCHPOINT_GAUGE_INTERVAL_S="0.5"))
    (folder / "feedback.yaml").write_text(feedback_config(f"{feedback.url}/v1/surveys"))
    feedback.env["TOUCHPOINT_FEEDBACK_CONFIG"] = str(folder / "feedback.yaml")
    feedback.start()
    s.processes["feedback"] = feedback
    for proc in s.processes.values():
        await proc.wait_ready()
    s.smtp = smtp
    yield s
    s.stop_all()
    smtp.stop()


async def test_detractor_answer_opens_a_follow_up_for_the_team_and_closing_it_closes_the_loop(feedback_stack):
    stack, tenant = feedback_stack, "shop"
    email = "nps-customer@example.com"
    key = await stack.api_key(tenant, ["ingest", "read", "agent"])
    await kafka_io.publish(stack.bootstrap_servers, stack.topic("touchpoint.agents.v1"), [
        record(tenant, types.AGENT_PROFILE_UPDATED, "ana", {"agent_id": "ana", "teams": ["care"]}),
        record(tenant, types.AGENT_PROFILE_UPDATED, "zed", {"agent_id": "zed", "teams": ["sales"]}),
        record(tenant, types.AGENT_PRESENCE_CHANGED, "ana", {"agent_id": "ana", "presence": "online", "changed_at": now_iso()}),
        record(tenant, types.AGENT_PRESENCE_CHANGED, "zed", {"agent_id": "zed", "presence": "online", "changed_at": now_iso()}),
    ])
    async with httpx.AsyncClient(base_url=stack.processes["ingestion"].url, timeout=10,
                                 headers={"Authorization": f"Bearer {key}"}) as client:
        resp = await client.post("/v1/events", json={
            "specversion": "1.0", "id": "nps-mail-1", "source": "test/mail", "type": types.INTERACTION_OCCURRED,
            "tenant": tenant, "data": {"channel": "email", "direction": "inbound", "subject": "Invoice wrong",
                                       "identifiers": [{"type": "email", "value": email}], "text": "please fix"}},
            headers={"Content-Type": "application/cloudevents+json"})
        assert resp.status_code == 202, resp.text

    async def first_offer():
        return [d for t, d in await topic_events(stack, "touchpoint.routing.v1", tenant)
                if t == types.ROUTING_CONVERSATION_OFFERED] or None

    original = (await kafka_io.wait_for(first_offer, timeout=60, what="the customer's e-mail offered"))[0]
    async with httpx.AsyncClient(base_url=stack.processes["routing"].url, timeout=10,
                                 headers={"Authorization": f"Bearer {key}"}) as client:
        assert (await client.post(f"/v1/agents/ana/offers/{original['offer_id']}/accept")).status_code == 200
        for event in ("agent_replied", "resolved"):
            resp = await client.post(f"/v1/agents/ana/conversations/{original['conversation_id']}/events",
                                     json={"type": event})
            assert resp.status_code == 200, resp.text
    ref = {"identifiers": [{"type": "email", "value": email}]}
    await kafka_io.publish(stack.bootstrap_servers, stack.topic("touchpoint.consent.v1"), [
        record(tenant, types.CONSENT_GRANTED, email, {"consent_id": "survey-consent-1", "customer": ref,
                                                      "purpose": "surveys", "channel": "email",
                                                      "wording_version": "2026-02", "source": "web-form",
                                                      "occurred_at": now_iso()})])
    await kafka_io.publish(stack.bootstrap_servers, stack.topic("touchpoint.business.v1"), [
        record(tenant, types.CASE_RESOLVED, "CASE-9", {"case_id": "CASE-9", "customer": ref, "occurred_at": now_iso(),
                                                       "channel": "email", "agent_id": "ana", "team": "care",
                                                       "conversation_id": original["conversation_id"],
                                                       "subject": "Invoice wrong"}, source="test/helpdesk")])

    async def survey_mail():
        return [m for m in stack.smtp.messages if email in m["To"]] or None

    mail = (await kafka_io.wait_for(survey_mail, timeout=90, what="the survey invitation e-mail"))[0]
    body = mail.get_body(("plain",)).get_content()
    link = re.search(r"(http://\S+/v1/surveys/\S+)", body).group(1)
    print(f"\nsurvey e-mail: {mail['Subject']!r}")
    assert mail["Subject"] == "How likely are you to recommend us?"
    token = link.rsplit("/", 1)[1]
    answer_url = f"{stack.processes['feedback'].url}/v1/responses/{token}"
    async with httpx.AsyncClient(timeout=10) as client:
        page = await client.get(link)
        assert page.status_code == 200 and 'name="nps"' in page.text and "<form" in page.text
        bad = await client.post(answer_url, json={"nps": 11})
        assert bad.status_code == 400 and bad.json()["error"]["reason"] == "invalid_answer:nps"
        answered = await client.post(answer_url, json={"nps": 3, "comment": "took far too long"})
        assert answered.status_code == 200, answered.text
        assert answered.json()["metric"] == "nps" and answered.json()["score"] == 3
        again = await client.post(answer_url, json={"nps": 9})
        assert again.status_code == 409 and again.json()["error"]["reason"] == "already_answered"
        forged = await client.post(answer_url[:-4] + "AAAA", json={"nps": 9})
        assert forged.status_code == 400
    answered_at = time.monotonic()
    response_id = answered.json()["response_id"]
    follow_up = f"feedback-followup:{response_id}"

    async def offered():
        found = [d for t, d in await topic_events(stack, "touchpoint.routing.v1", tenant)
                 if t == types.ROUTING_CONVERSATION_OFFERED and d["conversation_id"] == follow_up]
        return found or None

    offer = (await kafka_io.wait_for(offered, timeout=60, what="the follow-up conversation offered"))[0]
    print(f"follow-up {follow_up} offered to {offer['agent_id']} in queue {offer['queue']} "
          f"{time.monotonic() - answered_at:.1f} s after the answer")
    assert offer["agent_id"] == "ana" and offer["queue"] == "follow-ups", "the original agent's team, not sales"
    async with httpx.AsyncClient(base_url=stack.processes["routing"].url, timeout=10,
                                 headers={"Authorization": f"Bearer {key}"}) as client:
        detail = (await client.get(f"/v1/conversations/{follow_up}")).json()
        resolution = detail["sla"]["clocks"]["resolution"]
        due = datetime.fromisoformat(resolution["due_at"])
        queued = datetime.fromisoformat(detail["queued_at"]) if detail.get("queued_at") else datetime.now(timezone.utc)
        print(f"follow-up SLA: resolution due {due.isoformat()} ({(due - queued).total_seconds() / 3600:.1f} h), "
              f"priority {detail['priority']}")
        assert abs((due - queued) - timedelta(hours=48)) < timedelta(minutes=1)
        assert detail["priority"] >= 10
        assert (await client.post(f"/v1/agents/ana/offers/{offer['offer_id']}/accept")).status_code == 200
        resp = await client.post(f"/v1/agents/ana/conversations/{follow_up}/events", json={"type": "resolved"})
        assert resp.status_code == 200, resp.text

    async def closed():
        found = [d for t, d in await topic_events(stack, "touchpoint.feedback.v1", tenant)
                 if t == types.FEEDBACK_LOOP_CLOSED and d["response_id"] == response_id]
        return found or None

    loop = (await kafka_io.wait_for(closed, timeout=60, what="the loop closed"))[0]
    print(f"loop closed after {loop['time_to_close_s']:.1f} s")
    customer = loop["customer_id"]

    async def on_timeline():
        async with httpx.AsyncClient(base_url=stack.processes["timeline"].url, timeout=10,
                                     headers={"Authorization": f"Bearer {key}"}) as client:
            entries = (await client.get(f"/v1/customers/{customer}/timeline", params={"limit": 100})).json()["entries"]
        found = Counter((e.get("details") or {}).get("event") for e in entries if e["kind"] == "feedback")
        return found if found.get("loop_closed") else None

    timeline = await kafka_io.wait_for(on_timeline, timeout=60, what="feedback entries on the timeline")
    print(f"feedback on the timeline: {dict(timeline)}")
    for event in ("invited", "responded", "detractor_detected", "loop_closed"):
        assert timeline[event] == 1, event
    async with httpx.AsyncClient(base_url=stack.processes["feedback"].url, timeout=10,
                                 headers={"Authorization": f"Bearer {key}"}) as client:
        nps = (await client.get("/v1/metrics", params={"metric": "nps", "by": "team"})).json()["items"]
        loops = (await client.get("/v1/loops")).json()
    assert nps == [{"key": "care", "period": None, "value": -100.0, "count": 1, "low": -100.0, "high": -100.0}]
    assert loops["opened"] == 1 and loops["closed"] == 1

    async def gauge():
        async with httpx.AsyncClient(base_url=stack.processes["feedback"].url, timeout=10) as client:
            text = (await client.get("/metrics")).text
        line = f'touchpoint_feedback_score{{dimension="team",key="care",metric="nps",tenant="{tenant}"}}'
        return next((row for row in text.splitlines() if row.startswith(line)), None)

    print(await kafka_io.wait_for(gauge, timeout=30, what="the NPS gauge on /metrics"))
    assert (await gauge()).endswith(" -100.0")


async def test_product_ratings_below_the_threshold_raise_one_alert(feedback_stack):
    stack, tenant = feedback_stack, "ratings"
    ratings = [("P-1", 1), ("P-1", 2), ("P-1", 1), ("P-1", 2), ("P-2", 5), ("P-1", 3), ("P-1", 1)]
    await kafka_io.publish(stack.bootstrap_servers, stack.topic("touchpoint.feedback-inbound.v1"), [
        record(tenant, types.PRODUCT_RATED, product, {"rating_id": f"r{n}", "product_id": product, "rating": stars,
                                                      "customer": {"customer_id": f"rater-{n}"},
                                                      "occurred_at": now_iso()}, source="test/shop-reviews")
        for n, (product, stars) in enumerate(ratings)])

    async def alerts():
        found = [d for t, d in await topic_events(stack, "touchpoint.feedback.v1", tenant)
                 if t == types.FEEDBACK_PRODUCT_ALERT]
        return found or None

    found = await kafka_io.wait_for(alerts, timeout=60, what="a product alert")
    await asyncio.sleep(1)
    found = await alerts()
    print(f"\nproduct alerts: {found}")
    assert [(a["product"], a["count"]) for a in found] in ([("P-1", 5)], [("P-1", 6)]), \
        "one alert once five ratings average below 2.0; none for P-2"
    assert found[0]["average"] < 2.0 and found[0]["threshold"] == 2.0
