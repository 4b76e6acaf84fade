"""FeedbackService in this process on real Kafka and PostgreSQL: what the service adds on top of the pure domain
(surveys, fatigue, metrics) — triggers and the attribution they copy, the fatigue rules against the customer's
stored invitations when triggered and again when due, survey links and the response endpoints, upstream
responses (dead letters, ad-hoc surveys, parking until the customer is known), detractor follow-ups and their
loops, metrics by API and as Prometheus gauges, product alerts and merges.

Every test gets its own database and tenant (the topics are the module's) and a clock it moves by hand, so
delays and windows need no sleeping. Upstream events are published to their topic, read back and handed to
the consumer the service subscribes there (``process_business`` and friends); ``tick()`` sends what is due;
what the service reports is read back from the feedback topic.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Gauge
from pydantic import SecretStr

from services.feedback import api
from services.feedback.config import ConfigSource
from services.feedback.domain import fatigue, metrics
from services.feedback.service import FeedbackService
from shared import db, tokens, topics
from shared.auth import ApiKeyVerifier
from shared.cloudevents import CloudEvent
from shared.contracts import types
from shared.httpapi import install_error_handlers
from shared.kafka import EventProducer, event_record
from tests.support import kafka_io
from tests.support.service_harness import Clock, TopicReader
from tests.support.stack import Stack, new_stack, with_fresh_database

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)  # a Tuesday
SITE = "https://feedback.shop.example"
LINK_BASE = SITE + "/v1/surveys"
SECRET = SecretStr("survey-secret")
TTL_S = 14 * 86400
PHONE = "+4915112345678"
AS_JSON = {"Accept": "application/json"}
ATTRIBUTION = ("channel", "conversation_id", "case_id", "agent_id", "team", "product")
CONSUMERS = {topics.BUSINESS.name: "process_business", topics.ROUTING.name: "process_routing",
             topics.IDENTITY.name: "process_identity", topics.CUSTOMERS.name: "process_customers",
             topics.AGENTS.name: "process_agents", topics.FEEDBACK_INBOUND.name: "process_inbound"}


def wording(en: str, de: str) -> dict[str, str]:
    return {"en": en, "de": de}


SURVEYS = {
    "csat_after_case": {
        "version": 1, "recontact_days": 30,
        "title": wording("How satisfied were you with us?", "Wie zufrieden waren Sie mit uns?"),
        "questions": [{"id": "csat", "kind": "csat", "text": wording("How satisfied are you?", "Wie zufrieden?")},
                      {"id": "comment", "kind": "text", "required": False,
                       "text": wording("Anything else?", "Sonst noch etwas?")}]},
    "nps_relationship": {
        "version": 2, "recontact_days": 90,
        "title": wording("Would you recommend us?", "Würden Sie uns weiterempfehlen?"),
        "questions": [{"id": "nps", "kind": "nps", "text": wording("How likely?", "Wie wahrscheinlich?")}]},
    "ces_after_call": {
        "version": 1, "recontact_days": 14, "title": wording("Your call with us", "Ihr Anruf bei uns"),
        "questions": [{"id": "ces", "kind": "ces", "text": wording("It was easy.", "Es war einfach.")}]},
    "service_check": {  # on demand only; its wording needs escaping on the page
        "version": 3, "title": wording('Service <check> & "more"', "Service-<Check> & „mehr“"),
        "questions": [
            {"id": "csat", "kind": "csat", "text": wording("Satisfied? <1-5>", "Zufrieden? <1-5>")},
            {"id": "topic", "kind": "choice", "text": wording("About?", "Worum ging es?"),
             "choices": [{"id": "order", "text": wording("An order", "Eine Bestellung")},
                         {"id": "return", "text": wording("A return & refund", "Rücksendung & Erstattung")}]},
            {"id": "friendliness", "kind": "scale", "min": 1, "max": 10, "text": wording("Friendly?", "Freundlich?")},
            {"id": "comment", "kind": "text", "required": False, "max_length": 20,
             "text": wording("Comment", "Kommentar")}]},
}
TRIGGERS = {
    "case_resolved": {"on": types.CASE_RESOLVED, "survey": "csat_after_case", "delay_s": 86400},
    "conversation_resolved": {"on": types.ROUTING_CONVERSATION_RESOLVED, "survey": "nps_relationship",
                              "delay_s": 86400},
    "after_call": {"on": "call", "survey": "ces_after_call", "delay_s": 3600},
}


def tenant_config(**overrides: Any) -> dict:
    return {"version": 1, "languages": ["de", "en"], "default_language": "en", "survey_link_base": LINK_BASE,
            "token_ttl_s": TTL_S, "fatigue": {"min_days_between": 7, "duplicate_window_h": 12},
            "detractor_follow_up": {"sla_s": 172800, "priority": 10, "resurvey": True, "resurvey_delay_s": 86400},
            "product_alert": {"threshold": 2.0, "min_count": 5}, "surveys": SURVEYS, "triggers": TRIGGERS,
            **overrides}


@dataclass
class Harness:
    stack: Stack
    service: FeedbackService
    clock: Clock
    config_dir: Path
    tenant: str
    readers: dict[str, TopicReader] = field(default_factory=dict)
    feedback_events: list[tuple[str, dict]] = field(default_factory=list)

    def configure(self, **overrides: Any) -> None:
        """Put ``tenant_config(**overrides)`` in force, as an edited configuration file would."""
        path = self.config_dir / f"feedback-{uuid.uuid4().hex[:8]}.json"
        path.write_text(json.dumps({"tenants": {"default": tenant_config(**overrides)}}))
        self.service.config_source = ConfigSource(path)

    # ---- feeding upstream events through Kafka ----

    def record(self, event_type: str, key: str, data: dict, tenant: str | None = None) -> tuple:
        event = CloudEvent(id=str(uuid.uuid4()), source="test/upstream", type=event_type, time=self.clock(),
                           data=data, extensions={"tenant": tenant or self.tenant})
        r = event_record("unused", key, event)
        return r.key, r.value, r.headers

    @staticmethod
    def again(record: tuple) -> tuple:
        """``record`` sent once more by its producer: the same data under a new event id."""
        key, value, headers = record
        return key, value, [(n, str(uuid.uuid4()).encode() if n == "ce_id" else v) for n, v in headers]

    async def feed(self, topic: str, *records: tuple) -> None:
        """Publish ``records`` to ``topic``, read them back and hand them, in publishing order, to the
        consumer the service subscribes to that topic."""
        await kafka_io.publish(self.stack.bootstrap_servers, self.stack.topic(topic), list(records))
        order: dict[bytes, int] = {}
        for n, (_, _, headers) in enumerate(records):
            order.setdefault(dict(headers)["ce_id"], n)
        fresh = [r for r in await self.read(self.stack.topic(topic)) if dict(r.headers)["ce_id"] in order]
        fresh.sort(key=lambda r: (order[dict(r.headers)["ce_id"]], r.offset))
        assert len(fresh) == len(records)
        await getattr(self.service, CONSUMERS[topic])(fresh)

    def case(self, case_id: str, cid: str, **fields: Any) -> tuple:
        return self.record(types.CASE_RESOLVED, case_id, {
            "case_id": case_id, "customer": {"customer_id": cid}, "occurred_at": self.clock().isoformat(),
            "channel": "email", "conversation_id": f"conv-{case_id}", "agent_id": "ana", **fields})

    async def case_resolved(self, case_id: str, cid: str, **fields: Any) -> None:
        await self.feed(topics.BUSINESS.name, self.case(case_id, cid, **fields))

    def conversation(self, conversation_id: str, cid: str, **fields: Any) -> tuple:
        return self.record(types.ROUTING_CONVERSATION_RESOLVED, conversation_id, {
            "conversation_id": conversation_id, "customer_id": cid, "channel": "chat", "queue": "general",
            "priority": 10, "at": self.clock().isoformat(), **fields})

    async def conversation_resolved(self, conversation_id: str, cid: str, **fields: Any) -> None:
        await self.feed(topics.ROUTING.name, self.conversation(conversation_id, cid, **fields))

    def call(self, cid: str, call_id: str, **fields: Any) -> tuple:
        now = self.clock().isoformat()
        return self.record(types.INTERACTION_RESOLVED, cid, {
            "channel": "phone", "direction": "inbound", "identifiers": [{"type": "phone", "value": PHONE}],
            "source": "test/telephony", "event_id": call_id, "occurred_at": now, "received_at": now,
            "customer_id": cid, "conversation_id": call_id, **fields})

    async def called(self, cid: str, call_id: str, **fields: Any) -> None:
        await self.feed(topics.IDENTITY.name, self.call(cid, call_id, **fields))

    def response(self, response_id: str, survey_id: str, answers: dict, customer: str | dict = "c1",
                 tenant: str | None = None, **fields: Any) -> tuple:
        ref = {"customer_id": customer} if isinstance(customer, str) else customer
        return self.record(types.FEEDBACK_RESPONSE_SUBMITTED, response_id, {
            "response_id": response_id, "survey_id": survey_id, "customer": ref,
            "submitted_at": self.clock().isoformat(), "answers": answers, **fields}, tenant=tenant)

    async def responses(self, *records: tuple) -> None:
        await self.feed(topics.FEEDBACK_INBOUND.name, *records)

    def rating(self, rating_id: str, product: str, stars: int, customer: str | dict = "c1") -> tuple:
        ref = {"customer_id": customer} if isinstance(customer, str) else customer
        return self.record(types.PRODUCT_RATED, product, {
            "rating_id": rating_id, "product_id": product, "rating": stars, "customer": ref,
            "occurred_at": self.clock().isoformat()})

    async def agent(self, agent_id: str, team: str) -> None:
        await self.feed(topics.AGENTS.name, self.record(types.AGENT_PROFILE_UPDATED, agent_id, {
            "agent_id": agent_id, "skills": {}, "languages": ["de", "en"], "teams": [team]}))

    async def merge(self, merged: str, survivor: str) -> None:
        await self.feed(topics.IDENTITY.name, self.record(types.CUSTOMERS_MERGED, survivor, {
            "merge_id": f"m-{merged}", "survivor_id": survivor, "merged_ids": [merged], "rule": "shared_identifier",
            "linking_identifiers": [{"type": "email", "value": "anna@shop.example"}], "trigger_source": "test",
            "trigger_event_id": "e-1", "merged_at": self.clock().isoformat()}))

    async def tick(self) -> int:
        return await self.service.tick()

    async def read(self, topic: str) -> list:
        """The records that arrived on ``topic`` (its full name) since the previous read."""
        if topic not in self.readers:
            self.readers[topic] = TopicReader(self.stack.bootstrap_servers, topic)
            await self.readers[topic].start()
        return await self.readers[topic].new()

    async def dead_letters(self, topic: str) -> list:
        """This tenant's records that arrived on ``topic``'s dead-letter topic since the previous read."""
        return [r for r in await self.read(self.stack.topic(topic) + ".dlq")
                if dict(r.headers)["ce_tenant"].decode() == self.tenant]

    # ---- what the service did ----

    async def events(self, *kinds: str) -> list[tuple[str, dict]]:
        """(kind, data) of this tenant's feedback events, e.g. ("invited", {...}), in topic order per key."""
        for r in await self.read(self.stack.topic(topics.FEEDBACK.name)):
            headers = dict(r.headers)
            if headers["ce_tenant"].decode() == self.tenant:
                self.feedback_events.append((headers["ce_type"].decode().split(".")[2], orjson.loads(r.value)))
        return [(kind, data) for kind, data in self.feedback_events if not kinds or kind in kinds]

    async def of(self, kind: str) -> dict[str, dict]:
        """This tenant's events of ``kind`` by customer (one each)."""
        found = [data for _, data in await self.events(kind)]
        by_customer = {data["customer_id"]: data for data in found}
        assert len(by_customer) == len(found), found
        return by_customer

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        return await self.stack.fetch(sql, *args)  # the test's own view: every tenant

    async def invitations(self) -> list[Any]:
        return await self.fetch("SELECT * FROM feedback.invitations ORDER BY created_at, customer_id")

    async def api_key(self, scopes: list[str], tenant: str | None = None) -> dict[str, str]:
        key = await self.stack.api_key(tenant or self.tenant, scopes)
        return {"Authorization": f"Bearer {key}"}

    def http(self) -> httpx.AsyncClient:
        """The feedback HTTP API on this service."""
        app = FastAPI()
        install_error_handlers(app)
        app.include_router(api.router)
        app.state.service = self.service
        app.state.verifier = ApiKeyVerifier(self.service.pool)
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=SITE)

    async def invite(self, cid: str, survey_id: str = "service_check", **body: Any) -> dict:
        """An invitation on demand, sent at once; returns its ``invited`` event."""
        async with self.http() as client:
            resp = await client.post("/v1/invitations", headers=await self.api_key(["ingest"]), json={
                "customer_id": cid, "survey_id": survey_id, "request_id": f"req-{cid}-{survey_id}", **body})
        assert resp.status_code == 202 and resp.json()["status"] == "scheduled", resp.text
        await self.tick()
        return (await self.of("invited"))[cid]


def token_of(invited: dict) -> str:
    assert invited["link"].startswith(LINK_BASE + "/"), invited["link"]
    return invited["link"].removeprefix(LINK_BASE + "/")


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


def reason(resp: httpx.Response) -> str:
    return resp.json()["error"]["reason"]


@pytest.fixture(scope="module")
async def topic_stack(infra):
    """The module's topics (each test filters them by its tenant); their database goes unused."""
    return await new_stack(infra.bootstrap_servers, infra.admin_dsn)


@pytest.fixture
async def h(infra, topic_stack, tmp_path, request):
    """A fresh database, a tenant named after the test (so sampling decides alike on every run), and the
    service built as services/feedback/main.py builds it, with a hand-moved clock; instead of subscribing, the
    test hands the records to its consumers."""
    stack = await with_fresh_database(topic_stack, infra.admin_dsn)
    pool = await db.create_pool(stack.database_url, max_size=8, default_scope=db.ALL_TENANTS)
    producer = EventProducer(stack.bootstrap_servers, client_id="test-feedback")
    await producer.start()
    clock = Clock(T0)
    service = FeedbackService(pool, producer, None, stack.topic(topics.FEEDBACK.name), SECRET, clock=clock)
    tenant = "shop-" + hashlib.sha256(request.node.name.encode()).hexdigest()[:8]
    harness = Harness(stack, service, clock, tmp_path, tenant)
    harness.configure()
    yield harness
    for reader in harness.readers.values():
        await reader.stop()
    await producer.stop()
    await pool.close()


# ---- triggers -------------------------------------------------------------------------------------------------


async def test_each_trigger_invites_after_its_delay_with_attribution_and_a_working_link(h):
    await h.agent("ana", "returns")
    await h.agent("ben", "hotline")
    await h.case_resolved("C-1", "c1", product="router-x", language="de-DE")
    await h.case_resolved("C-2", "c4", team="billing")  # a team the event names wins over the agent's
    await h.conversation_resolved("V-1", "c2", agent_id="ben")
    await h.called("c3", "call-1", agent_id="ben", language="en-GB")
    assert [(r["customer_id"], r["status"]) for r in await h.invitations()] == [
        ("c1", "scheduled"), ("c2", "scheduled"), ("c3", "scheduled"), ("c4", "scheduled")]

    h.clock.advance(minutes=59)
    await h.tick()
    assert not await h.events()
    h.clock.advance(minutes=1)
    await h.tick()
    assert list(await h.of("invited")) == ["c3"], "the call's survey after its hour"
    h.clock.advance(hours=23)
    await h.tick()

    invited = await h.of("invited")
    assert sorted(invited) == ["c1", "c2", "c3", "c4"] and not await h.events("suppressed")
    case, conversation, call, team_named = invited["c1"], invited["c2"], invited["c3"], invited["c4"]
    assert {k: case.get(k) for k in ATTRIBUTION} == {
        "channel": "email", "conversation_id": "conv-C-1", "case_id": "C-1", "agent_id": "ana", "team": "returns",
        "product": "router-x"}
    assert (case["survey_id"], case["trigger"], case["language"], case["survey_title"]) == (
        "csat_after_case", "case_resolved", "de", "Wie zufrieden waren Sie mit uns?")
    assert at(case["at"]) == T0 + timedelta(days=1) and at(case["expires_at"]) == T0 + timedelta(days=15)
    assert team_named["team"] == "billing"
    assert {k: conversation.get(k) for k in ATTRIBUTION} == {
        "channel": "chat", "conversation_id": "V-1", "case_id": None, "agent_id": "ben", "team": "hotline",
        "product": None}
    assert (conversation["survey_id"], conversation["trigger"], conversation["language"],
            conversation["survey_title"]) == ("nps_relationship", "conversation_resolved", "en",
                                              "Would you recommend us?")
    assert {k: call.get(k) for k in ATTRIBUTION} == {
        "channel": "phone", "conversation_id": "call-1", "case_id": None, "agent_id": "ben", "team": "hotline",
        "product": None}
    assert (call["survey_id"], call["trigger"], call["language"], call["survey_title"], at(call["at"])) == (
        "ces_after_call", "after_call", "en", "Your call with us", T0 + timedelta(hours=1))

    claims = tokens.verify(token_of(case), SECRET, h.clock())
    assert claims["i"] == case["invitation_id"]
    async with h.http() as client:
        page = await client.get(case["link"].removeprefix(SITE), headers=AS_JSON)
    assert page.status_code == 200, page.text
    assert (page.json()["survey_id"], page.json()["language"], page.json()["title"]) == (
        "csat_after_case", "de", "Wie zufrieden waren Sie mit uns?")
    assert {r["status"] for r in await h.invitations()} == {"invited"}


async def test_a_redelivered_or_re_sent_trigger_makes_no_second_invitation(h):
    case, conversation, call = h.case("C-1", "c1"), h.conversation("V-1", "c2"), h.call("c3", "call-1")
    await h.feed(topics.BUSINESS.name, case, case)
    await h.feed(topics.ROUTING.name, conversation, conversation)
    await h.feed(topics.IDENTITY.name, call, call)
    h.clock.advance(minutes=30)
    # Redelivered (same event id) and re-sent by their producers (a new event id, the same resolution).
    await h.feed(topics.BUSINESS.name, case, h.again(case))
    await h.feed(topics.ROUTING.name, conversation, h.again(conversation))
    await h.feed(topics.IDENTITY.name, call, h.again(call))

    assert [(r["customer_id"], r["status"]) for r in await h.invitations()] == [
        ("c1", "scheduled"), ("c2", "scheduled"), ("c3", "scheduled")]
    h.clock.advance(days=1)
    await h.tick()
    assert sorted(kind for kind, _ in await h.events()) == ["invited"] * 3


# ---- fatigue --------------------------------------------------------------------------------------------------


async def test_each_fatigue_rule_suppresses_a_trigger_with_its_reason(h):
    for case_id, cid in (("C-1", "c1"), ("C-2", "c2"), ("C-3", "c3"), ("C-5", "c4")):
        await h.case_resolved(case_id, cid)
    h.clock.advance(hours=1)
    await h.case_resolved("C-1", "c1")                  # resolved again after a reopening
    h.clock.advance(hours=1)
    await h.called("c2", "call-1")                      # another survey 2 h after the first
    h.clock.now = T0 + timedelta(days=1)
    await h.tick()
    h.clock.now = T0 + timedelta(days=3)
    await h.called("c4", "call-2")                      # another channel, 2 days after the case's survey
    h.clock.now = T0 + timedelta(days=8)
    await h.case_resolved("C-4", "c3")                  # the same survey again after 7 days, within its 30
    h.clock.now = T0 + timedelta(days=8, hours=1)
    await h.called("c4", "call-3")                      # 7 days and 1 h after the case's survey went out
    h.clock.advance(hours=1)
    await h.tick()

    suppressed = await h.of("suppressed")
    assert {cid: (s["trigger"], s["reason"]) for cid, s in suppressed.items()} == {
        "c1": ("case_resolved", "duplicate_conversation"), "c2": ("after_call", "duplicate_window"),
        "c3": ("case_resolved", "recontact_days"), "c4": ("after_call", "customer_fatigue")}
    assert all(s["detail"] for s in suppressed.values())
    assert "case:C-1" in suppressed["c1"]["detail"]
    invited = [(d["customer_id"], d["trigger"]) for _, d in await h.events("invited")]
    assert sorted(invited) == [("c1", "case_resolved"), ("c2", "case_resolved"), ("c3", "case_resolved"),
                               ("c4", "after_call"), ("c4", "case_resolved")]
    rows = await h.invitations()
    assert sorted((r["customer_id"], r["status"], r["reason"]) for r in rows if r["status"] == "suppressed") == [
        ("c1", "suppressed", "duplicate_conversation"), ("c2", "suppressed", "duplicate_window"),
        ("c3", "suppressed", "recontact_days"), ("c4", "suppressed", "customer_fatigue")]


async def test_sampling_decides_per_customer_survey_and_conversation_alike_on_every_delivery(h):
    h.configure(triggers={**TRIGGERS, "conversation_resolved": {**TRIGGERS["conversation_resolved"],
                                                                "sampling_pct": 50, "delay_s": 3600}})
    customers = [f"s{n}" for n in range(16)]
    expected = {cid for cid in customers if fatigue.sampled(
        fatigue.sample_key(h.tenant, cid, "nps_relationship", f"conversation:V-{cid}"), 50)}
    assert expected and expected != set(customers)
    records = [h.conversation(f"V-{cid}", cid) for cid in customers]
    await h.feed(topics.ROUTING.name, *records)
    await h.feed(topics.ROUTING.name, *[h.again(r) for r in records])
    h.clock.advance(hours=1)
    await h.tick()

    assert set(await h.of("invited")) == expected
    suppressed = await h.of("suppressed")
    assert set(suppressed) == set(customers) - expected
    assert {s["reason"] for s in suppressed.values()} == {"not_sampled"}
    assert len(await h.invitations()) == len(customers)


async def test_a_survey_that_went_out_before_another_was_due_suppresses_it_when_due(h):
    first = {"customer_id": "c1", "survey_id": "service_check", "request_id": "req-1", "delay_s": 9 * 86400}
    async with h.http() as client:
        resp = await client.post("/v1/invitations", headers=await h.api_key(["ingest"]), json=first)
    assert resp.json()["status"] == "scheduled", resp.text
    h.clock.now = T0 + timedelta(days=8)
    await h.called("c1", "call-1")  # 8 days after the first was scheduled: allowed
    h.clock.advance(hours=1)
    await h.tick()
    assert [d["survey_id"] for _, d in await h.events("invited")] == ["ces_after_call"]
    h.clock.now = T0 + timedelta(days=9)
    await h.tick()

    suppressed = (await h.of("suppressed"))["c1"]
    assert (suppressed["invitation_id"], suppressed["trigger"], suppressed["reason"]) == (
        resp.json()["invitation_id"], "api", "customer_fatigue")
    assert at(suppressed["at"]) == T0 + timedelta(days=9)
    assert len(await h.events("invited")) == 1
    assert {(r["survey_id"], r["status"]) for r in await h.invitations()} == {
        ("service_check", "suppressed"), ("ces_after_call", "invited")}


# ---- the HTTP API ---------------------------------------------------------------------------------------------


async def test_invitations_on_demand_need_the_ingest_scope_and_count_once_per_request(h):
    body = {"customer_id": "c1", "survey_id": "service_check", "request_id": "req-1", "delay_s": 600,
            "channel": "whatsapp", "conversation_id": "W-1", "agent_id": "ana", "team": "returns",
            "product": "router-x", "language": "de"}
    ingest = await h.api_key(["ingest"])
    async with h.http() as client:
        missing = await client.post("/v1/invitations", json=body)
        assert missing.status_code == 401 and missing.headers["WWW-Authenticate"] == "Bearer"
        forbidden = await client.post("/v1/invitations", json=body, headers=await h.api_key(["read"]))
        assert forbidden.status_code == 403 and reason(forbidden) == "insufficient_scope"
        first = await client.post("/v1/invitations", json=body, headers=ingest)
        again = await client.post("/v1/invitations", json=body, headers=ingest)
        unknown = await client.post("/v1/invitations", json={**body, "survey_id": "nope", "request_id": "req-2"},
                                    headers=ingest)
        tired = await client.post("/v1/invitations", json={**body, "request_id": "req-3", "conversation_id": "W-2"},
                                  headers=ingest)
    assert first.status_code == 202 and first.json()["status"] == "scheduled"
    assert again.status_code == 202 and again.json() == first.json()
    assert unknown.status_code == 422 and reason(unknown) == "unknown_survey"
    assert tired.status_code == 202 and tired.json()["status"] == "suppressed"
    assert len(await h.invitations()) == 2

    h.clock.advance(minutes=10)
    await h.tick()
    [(_, invited)] = await h.events("invited")
    assert invited["invitation_id"] == first.json()["invitation_id"]
    assert {k: invited.get(k) for k in ATTRIBUTION} == {
        "channel": "whatsapp", "conversation_id": "W-1", "case_id": None, "agent_id": "ana", "team": "returns",
        "product": "router-x"}
    assert (invited["trigger"], invited["language"], invited["survey_title"]) == (
        "api", "de", "Service-<Check> & „mehr“")
    suppressed = (await h.of("suppressed"))["c1"]
    assert (suppressed["invitation_id"], suppressed["reason"]) == (tired.json()["invitation_id"], "duplicate_window")


async def test_a_key_reads_only_its_own_tenants_metrics(h):
    other = h.tenant + "-b"
    await h.responses(h.response("r-a", "csat_after_case", {"csat": 5}),
                      h.response("r-b", "csat_after_case", {"csat": 1}, tenant=other),
                      h.response("r-b2", "csat_after_case", {"csat": 2}, tenant=other))
    async with h.http() as client:
        mine = await client.get("/v1/metrics", params={"metric": "csat"}, headers=await h.api_key(["read"]))
        theirs = await client.get("/v1/metrics", params={"metric": "csat"},
                                  headers=await h.api_key(["read"], tenant=other))
        loops = await client.get("/v1/loops", headers=await h.api_key(["read"]))
        no_read = await client.get("/v1/metrics", params={"metric": "csat"}, headers=await h.api_key(["ingest"]))
    assert [(i["value"], i["count"]) for i in mine.json()["items"]] == [(100.0, 1)]
    assert [(i["value"], i["count"]) for i in theirs.json()["items"]] == [(0.0, 2)]
    assert loops.json()["opened"] == 0, "the other tenant's detractors are not this tenant's loops"
    assert no_read.status_code == 403


# ---- responses through the link -------------------------------------------------------------------------------


async def test_the_survey_page_speaks_the_customers_language_and_escapes_the_wording(h):
    german = await h.invite("c1", language="de")
    english = await h.invite("c2", language="en")
    austrian = await h.invite("c3", language="de-AT")
    async with h.http() as client:
        de = await client.get(german["link"].removeprefix(SITE))
        en = await client.get(english["link"].removeprefix(SITE))
        at_page = await client.get(austrian["link"].removeprefix(SITE))
        form = await client.get(english["link"].removeprefix(SITE), headers=AS_JSON)

    assert de.status_code == 200 and de.headers["content-type"].startswith("text/html")
    assert '<html lang="de">' in de.text
    for escaped in ("<title>Service-&lt;Check&gt; &amp; „mehr“</title>", "Zufrieden? &lt;1-5&gt;",
                    "Rücksendung &amp; Erstattung", ">Absenden</button>",
                    f'action="/v1/responses/{token_of(german)}"'):
        assert escaped in de.text, escaped
    assert "<Check>" not in de.text and "<1-5>" not in de.text
    assert de.text.count('name="csat"') == 5 and de.text.count('name="friendliness"') == 10
    assert '<html lang="en">' in en.text and ">Send</button>" in en.text
    assert "Service &lt;check&gt; &amp; &quot;more&quot;" in en.text and "A return &amp; refund" in en.text
    assert '<html lang="de">' in at_page.text, "de-AT is shown in German"

    assert form.status_code == 200
    survey = form.json()
    assert (survey["survey_id"], survey["version"], survey["language"], survey["title"]) == (
        "service_check", 3, "en", 'Service <check> & "more"')
    assert [(q["id"], q["kind"], q["required"], q["bounds"], q["choices"]) for q in survey["questions"]] == [
        ("csat", "csat", True, [1, 5], None), ("topic", "choice", True, None, ["order", "return"]),
        ("friendliness", "scale", True, [1, 10], None), ("comment", "text", False, None, None)]


async def test_answers_by_json_or_form_are_validated_per_question_and_free_text_stays_private(h):
    english = await h.invite("c1", language="en", channel="email", agent_id="ana", team="returns")
    german = await h.invite("c2", language="de", channel="chat")
    valid = {"csat": 4, "topic": "order", "friendliness": 5}
    invalid = [({**valid, "csat": 9}, "csat"), ({"csat": 4, "friendliness": 5}, "topic"),
               ({**valid, "topic": "gift"}, "topic"), ({**valid, "friendliness": 11}, "friendliness"),
               ({**valid, "csat": "4.5"}, "csat"), ({**valid, "comment": "x" * 21}, "comment"),
               ({**valid, "mood": "fine"}, "mood")]
    path = f"/v1/responses/{token_of(english)}"
    async with h.http() as client:
        for answers, question in invalid:
            resp = await client.post(path, json=answers)
            assert resp.status_code == 400 and reason(resp) == f"invalid_answer:{question}", (answers, resp.text)
            assert resp.json()["error"]["detail"]
        not_an_object = await client.post(path, json=[4])
        assert not_an_object.status_code == 400 and reason(not_an_object) == "invalid_body"
        by_json = await client.post(path, json={**valid, "friendliness": "8", "comment": "  Danke <3  "})
        form_path = f"/v1/responses/{token_of(german)}"
        bad_form = await client.post(form_path, data={"csat": "0", "topic": "order", "friendliness": "3"})
        by_form = await client.post(form_path, data={"csat": "2", "topic": "return", "friendliness": "3",
                                                     "comment": " zu <langsam> "})

    assert by_json.status_code == 200, by_json.text
    assert by_json.json() == {"response_id": english["invitation_id"], "metric": "csat", "score": 4,
                              "language": "en"}
    assert bad_form.status_code == 400 and bad_form.headers["content-type"].startswith("text/html")
    assert "csat" in bad_form.text
    assert by_form.status_code == 200, by_form.text
    assert by_form.headers["content-type"].startswith("text/html")
    assert '<html lang="de">' in by_form.text and "Vielen Dank für Ihr Feedback." in by_form.text

    stored = {r["customer_id"]: r for r in await h.fetch("SELECT * FROM feedback.responses")}
    assert json.loads(stored["c1"]["answers"]) == {"csat": 4, "topic": "order", "friendliness": 8,
                                                   "comment": "Danke <3"}
    assert json.loads(stored["c2"]["answers"]) == {"csat": 2, "topic": "return", "friendliness": 3,
                                                   "comment": "zu <langsam>"}
    await h.tick()
    responded = await h.of("responded")
    assert responded["c1"]["answers"] == {"csat": 4, "topic": "order", "friendliness": 8}
    assert responded["c2"]["answers"] == {"csat": 2, "topic": "return", "friendliness": 3}
    assert (responded["c1"]["source"], responded["c1"]["metric"], responded["c1"]["score"]) == ("link", "csat", 4)
    assert {k: responded["c1"].get(k) for k in ("channel", "agent_id", "team")} == {
        "channel": "email", "agent_id": "ana", "team": "returns"}
    assert list(await h.of("detractor_detected")) == ["c2"]
    assert {r["status"] for r in await h.invitations()} == {"responded"}


async def test_a_link_answers_once_and_cannot_be_forged_or_used_after_it_expired(h):
    answered = await h.invite("c1")
    later = await h.invite("c2")
    answer = {"csat": 5, "topic": "order", "friendliness": 9}
    token = token_of(later)
    payload, _, signature = token.partition(".")
    tampered = f"{payload}.{signature[:-2]}{'BB' if signature.endswith('AA') else 'AA'}"
    foreign = tokens.issue({"t": h.tenant, "i": later["invitation_id"]}, T0 + timedelta(days=1),
                           SecretStr("another-secret"))
    async with h.http() as client:
        assert (await client.post(f"/v1/responses/{token_of(answered)}", json=answer)).status_code == 200
        reused = await client.post(f"/v1/responses/{token_of(answered)}", json=answer)
        assert reused.status_code == 409 and reason(reused) == "already_answered"
        page = await client.get(f"/v1/surveys/{token_of(answered)}", headers=AS_JSON)
        assert page.status_code == 409 and reason(page) == "already_answered"

        for forged in (tampered, foreign, "not-a-token"):
            resp = await client.post(f"/v1/responses/{forged}", json=answer)
            assert resp.status_code == 400 and reason(resp) in ("bad_signature", "malformed"), resp.text
            assert (await client.get(f"/v1/surveys/{forged}", headers=AS_JSON)).status_code == 400

        h.clock.now = at(later["expires_at"]) - timedelta(seconds=1)
        assert (await client.get(f"/v1/surveys/{token}", headers=AS_JSON)).status_code == 200
        h.clock.advance(seconds=1)
        expired = await client.post(f"/v1/responses/{token}", json=answer)
        assert expired.status_code == 410 and reason(expired) == "expired"
        expired_page = await client.get(f"/v1/surveys/{token}")
        assert expired_page.status_code == 410 and expired_page.headers["content-type"].startswith("text/html")
    assert len(await h.fetch("SELECT * FROM feedback.responses")) == 1


# ---- upstream responses ---------------------------------------------------------------------------------------


async def test_upstream_responses_are_checked_against_their_survey_and_count_once(h):
    out_of_range = h.response("r-bad", "csat_after_case", {"csat": 9})
    no_metric = h.response("r-none", "unknown_survey", {"comment": "hi"})
    adhoc = h.response("r-adhoc", "app_pulse", {"nps": 9, "why": "fast"}, channel="app", product="app")
    ok = h.response("r-ok", "csat_after_case", {"csat": 4, "comment": "fine"}, channel="email")
    await h.responses(out_of_range, no_metric, adhoc, ok)
    await h.responses(ok, h.again(ok), h.again(adhoc))

    dead = {r.key.decode(): dict(r.headers) for r in await h.dead_letters(topics.FEEDBACK_INBOUND.name)}
    assert sorted(dead) == ["r-bad", "r-none"]
    assert {k: v["touchpoint.errors.reason"] for k, v in dead.items()} == {"r-bad": b"invalid_data",
                                                                         "r-none": b"invalid_data"}
    assert b"csat: out of range" in dead["r-bad"]["__connect.errors.exception.message"]
    assert b"not configured" in dead["r-none"]["__connect.errors.exception.message"]
    assert dead["r-bad"]["ce_id"] == dict(out_of_range[2])["ce_id"]

    await h.service.publish_pending()
    responded = {d["response_id"]: d for _, d in await h.events("responded")}
    assert sorted(responded) == ["upstream:r-adhoc", "upstream:r-ok"]
    assert {k: responded["upstream:r-adhoc"].get(k) for k in ("survey_id", "metric", "score", "answers", "source",
                                                               "product")} == {
        "survey_id": "app_pulse", "metric": "nps", "score": 9, "answers": {"nps": 9}, "source": "upstream",
        "product": "app"}
    assert responded["upstream:r-ok"]["answers"] == {"csat": 4}
    assert [(i["value"], i["count"]) for i in await h.service.metric(h.tenant, "csat", None, None, None, None)] == [
        (100.0, 1)]


async def test_a_response_naming_only_an_email_waits_for_the_customer_snapshot(h):
    shouted = {"identifiers": [{"type": "email", "value": " Anna.Berg@Example.COM"}]}
    invalid = h.response("r-2", "csat_after_case", {"csat": 9}, customer=shouted)
    await h.responses(h.response("r-1", "csat_after_case", {"csat": 2}, customer=shouted, team="returns"), invalid)
    await h.feed(topics.FEEDBACK_INBOUND.name, h.rating("g-1", "router-x", 4, customer=shouted))
    assert not await h.fetch("SELECT * FROM feedback.responses")
    assert len(await h.fetch("SELECT * FROM feedback.unresolved")) == 2, "the response and the rating"
    [dead] = await h.dead_letters(topics.FEEDBACK_INBOUND.name)
    assert dead.key == b"r-2", "an invalid response is refused when it arrives, not when its customer is known"

    await h.feed(topics.CUSTOMERS.name, h.record(types.CUSTOMER_SNAPSHOT, "cust-anna", {
        "customer_id": "cust-anna", "identifiers": [{"type": "email", "value": "anna.berg@example.com"},
                                                    {"type": "phone", "value": PHONE}]}))
    assert [(r["response_id"], r["customer_id"], r["team"]) for r in await h.fetch(
        "SELECT * FROM feedback.responses")] == [("upstream:r-1", "cust-anna", "returns")]
    assert [r["customer_id"] for r in await h.fetch("SELECT * FROM feedback.product_ratings")] == ["cust-anna"]
    assert not await h.fetch("SELECT * FROM feedback.unresolved")
    assert not await h.dead_letters(topics.CUSTOMERS.name) and not await h.dead_letters(topics.FEEDBACK_INBOUND.name)
    await h.service.publish_pending()
    assert (await h.of("responded"))["cust-anna"]["response_id"] == "upstream:r-1"
    assert (await h.of("detractor_detected"))["cust-anna"]["team"] == "returns"


# ---- detractors and their loops -------------------------------------------------------------------------------


async def test_detractors_are_nps_0_to_6_csat_up_to_2_and_ces_up_to_3(h):
    surveys = {"nps": "nps_relationship", "csat": "csat_after_case", "ces": "ces_after_call"}
    scores = [("nps", 0), ("nps", 6), ("nps", 7), ("nps", 10), ("csat", 1), ("csat", 2), ("csat", 3),
              ("ces", 1), ("ces", 3), ("ces", 4)]
    await h.responses(*[h.response(f"r-{metric}-{score}", surveys[metric], {metric: score}, channel="chat",
                                   conversation_id="V-1", agent_id="ana", team="returns") for metric, score in scores])
    await h.service.publish_pending()

    assert len(await h.events("responded")) == len(scores)
    detected = {d["response_id"]: d for _, d in await h.events("detractor_detected")}
    assert sorted(detected) == sorted(f"upstream:r-{m}-{s}" for m, s in (
        ("nps", 0), ("nps", 6), ("csat", 1), ("csat", 2), ("ces", 1), ("ces", 3)))
    nps6 = detected["upstream:r-nps-6"]
    assert {k: nps6.get(k) for k in ("metric", "score", "follow_up_conversation_id", "priority", "sla_s",
                                     "conversation_id", "team", "agent_id", "channel", "survey_id")} == {
        "metric": "nps", "score": 6, "follow_up_conversation_id": "feedback-followup:upstream:r-nps-6",
        "priority": 10, "sla_s": 172800, "conversation_id": "V-1", "team": "returns", "agent_id": "ana",
        "channel": "chat", "survey_id": "nps_relationship"}
    assert all(at(d["due_at"]) == at(d["at"]) + timedelta(hours=48) == T0 + timedelta(hours=48)
               for d in detected.values())
    assert len(await h.fetch("SELECT * FROM feedback.loops")) == 6


async def test_a_resolved_follow_up_closes_the_loop_and_asks_again_exempt_from_fatigue(h):
    await h.agent("ana", "returns")
    await h.case_resolved("C-1", "c1", language="de")
    h.clock.advance(days=1)
    await h.tick()
    invited = (await h.of("invited"))["c1"]
    h.clock.advance(hours=1)
    opened = h.clock()
    async with h.http() as client:
        answered = await client.post(f"/v1/responses/{token_of(invited)}", json={"csat": 1})
    assert answered.status_code == 200, answered.text
    await h.tick()
    detected = (await h.of("detractor_detected"))["c1"]
    follow_up = "feedback-followup:" + invited["invitation_id"]
    assert (detected["follow_up_conversation_id"], detected["team"], detected["metric"], detected["score"],
            at(detected["due_at"])) == (follow_up, "returns", "csat", 1, opened + timedelta(hours=48))

    h.clock.advance(hours=5)
    resolved = h.conversation(follow_up, "c1", agent_id="ben")
    await h.feed(topics.ROUTING.name, resolved)
    await h.feed(topics.ROUTING.name, h.again(resolved))  # resolved once more: the loop closes once
    # An upstream tool's own survey: its loop closes too, but there is nothing to ask again.
    await h.responses(h.response("r-pulse", "app_pulse", {"nps": 2}, customer="c2"))
    h.clock.advance(hours=2)
    await h.conversation_resolved("feedback-followup:upstream:r-pulse", "c2")
    await h.responses(h.response("r-open", "csat_after_case", {"csat": 2}, customer="c3"))
    await h.service.publish_pending()

    closed = await h.of("loop_closed")
    assert sorted(closed) == ["c1", "c2"]
    assert (closed["c1"]["follow_up_conversation_id"], closed["c1"]["time_to_close_s"], at(closed["c1"]["opened_at"]),
            at(closed["c1"]["closed_at"])) == (follow_up, 5 * 3600, opened, opened + timedelta(hours=5))
    assert closed["c1"]["resurvey_invitation_id"]
    assert (closed["c2"]["time_to_close_s"], closed["c2"].get("resurvey_invitation_id")) == (7200, None)
    assert not [s for s in await h.events("suppressed")], "the re-survey is exempt from fatigue"

    h.clock.now = opened + timedelta(hours=5, days=1)
    await h.tick()
    resurvey = [d for _, d in await h.events("invited") if d["trigger"] == "resurvey"]
    assert [(d["invitation_id"], d["survey_id"], d["case_id"], d["team"], d["language"]) for d in resurvey] == [
        (closed["c1"]["resurvey_invitation_id"], "csat_after_case", "C-1", "returns", "de")]

    h.clock.now = opened + timedelta(days=3)  # the third follow-up's 48 h have passed
    async with h.http() as client:
        loops = await client.get("/v1/loops", headers=await h.api_key(["read"]))
    assert loops.status_code == 200, loops.text
    assert loops.json() == {"opened": 3, "closed": 2, "overdue": 1, "mean_close_s": 12600.0,
                            "median_close_s": 12600.0}


async def test_no_resurvey_when_the_tenant_does_not_ask_again(h):
    h.configure(detractor_follow_up={"sla_s": 3600, "priority": 5, "resurvey": False})
    await h.responses(h.response("r-1", "ces_after_call", {"ces": 2}))
    await h.service.publish_pending()
    detected = (await h.of("detractor_detected"))["c1"]
    assert (detected["priority"], detected["sla_s"], at(detected["due_at"])) == (5, 3600, T0 + timedelta(hours=1))
    h.clock.advance(minutes=30)
    await h.conversation_resolved(detected["follow_up_conversation_id"], "c1")
    h.clock.advance(days=2)
    await h.tick()
    closed = (await h.of("loop_closed"))["c1"]
    assert (closed["time_to_close_s"], closed.get("resurvey_invitation_id")) == (1800, None)
    assert not await h.invitations(), "a resolved follow-up is no trigger of its own"


# ---- metrics --------------------------------------------------------------------------------------------------

# (metric, score, channel, team, agent, product, days after T0); each answered at 23:30 UTC
ANSWERS = [("nps", 10, "email", "returns", "ana", "router", 0), ("nps", 9, "chat", "returns", "ana", "router", 0),
           ("nps", 8, "chat", "hotline", "ben", "modem", 1), ("nps", 6, "email", "hotline", "ben", "modem", 6),
           ("nps", 0, "phone", "hotline", "cem", None, 6), ("nps", 9, "email", "returns", "ana", "modem", 25),
           ("nps", 3, "chat", "returns", "cem", "router", 25), ("nps", 7, "phone", None, None, "router", 40),
           ("csat", 5, "email", "returns", "ana", "router", 0), ("csat", 4, "email", "returns", "ana", "router", 1),
           ("csat", 3, "chat", "hotline", "ben", "modem", 1), ("csat", 1, "chat", "hotline", "ben", "modem", 8),
           ("csat", 4, "phone", "hotline", "cem", "modem", 30),
           ("ces", 7, "phone", "hotline", "ben", None, 0), ("ces", 2, "phone", "hotline", "ben", None, 2),
           ("ces", 5, "chat", "returns", "ana", "router", 9), ("ces", 6, "chat", "returns", "ana", "router", 9)]
SURVEY_OF = {"nps": "nps_relationship", "csat": "csat_after_case", "ces": "ces_after_call"}
ESTIMATE = {"nps": metrics.nps, "csat": metrics.csat, "ces": metrics.ces}
DIMENSION = {"channel": 2, "team": 3, "agent": 4, "product": 5}


def submitted(days: int) -> datetime:
    return datetime(2026, 3, 10, 23, 30, tzinfo=UTC) + timedelta(days=days)


def bucket(when: datetime, period: str) -> datetime:
    day = when.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1) if period == "month" else day


def expected(metric: str, key_of, answers=ANSWERS) -> dict:
    groups: dict[Any, list[int]] = {}
    for answer in answers:
        if answer[0] == metric:
            groups.setdefault(key_of(answer), []).append(answer[1])
    return {key: ESTIMATE[metric](scores) for key, scores in groups.items()}


def figures(items: list[dict], with_period: bool = False) -> dict:
    return {((i["key"], at(i["period"])) if with_period else i["key"]): metrics.Estimate(
        i["value"], i["count"], i["low"], i["high"]) for i in items}


async def test_metrics_per_dimension_and_period_are_exact_and_feed_the_gauges(h):
    # A database in a time zone far from UTC: periods are still UTC days, weeks and months.
    conn = await h.stack.connect()  # the database's settings are the owner's (here a superuser's) business
    try:
        name = await conn.fetchval("SELECT current_database()")
        await conn.execute(f"ALTER DATABASE {name} SET TimeZone = 'Pacific/Kiritimati'")
    finally:
        await conn.close()
    await h.service.pool.expire_connections()
    records = []
    for n, (metric, score, channel, team, agent, product, days) in enumerate(ANSWERS):
        h.clock.now = submitted(days)
        attribution = {k: v for k, v in (("channel", channel), ("team", team), ("agent_id", agent),
                                         ("product", product)) if v is not None}
        records.append(h.response(f"r-{n}", SURVEY_OF[metric], {metric: score}, customer=f"c{n}", **attribution))
    h.clock.now = submitted(0)
    records.append(h.response("r-pulse", "app_pulse", {"nps": 10}, customer="c99", channel="app"))
    await h.responses(*records)
    answers = ANSWERS + [("nps", 10, "app", None, None, None, 0)]
    read = await h.api_key(["read"])

    async def get(**params: Any) -> list[dict]:
        async with h.http() as client:
            resp = await client.get("/v1/metrics", params=params, headers=read)
        assert resp.status_code == 200, resp.text
        assert resp.json()["metric"] == params["metric"]
        return resp.json()["items"]

    for metric in ("nps", "csat", "ces"):
        for by, index in DIMENSION.items():
            assert figures(await get(metric=metric, by=by)) == expected(
                metric, lambda a, i=index: a[i] or "(none)", answers), (metric, by)
    assert figures(await get(metric="nps", by="survey")) == {
        "nps_relationship": metrics.nps([a[1] for a in ANSWERS if a[0] == "nps"]), "app_pulse": metrics.nps([10])}
    for period in ("day", "week", "month"):
        assert figures(await get(metric="nps", period=period), with_period=True) == {
            (None, start): estimate for start, estimate in expected(
                "nps", lambda a, p=period: bucket(submitted(a[6]), p), answers).items()}, period
    window = await get(metric="csat", by="team", since=submitted(1).isoformat(), until=submitted(30).isoformat())
    assert figures(window) == expected("csat", lambda a: a[3], [a for a in ANSWERS if 1 <= a[6] < 30])

    [csat] = await get(metric="csat")
    assert (csat["value"], csat["count"]) == (100 * 3 / 5, 5), "the share of 4-5"
    [ces] = await get(metric="ces")
    assert (ces["value"], ces["count"]) == ((7 + 2 + 5 + 6) / 4, 4), "the mean"
    assert await get(metric="ces", since=submitted(50).isoformat()) == []

    registry = CollectorRegistry()
    labels = ["tenant", "metric", "dimension", "key"]
    score = Gauge("touchpoint_feedback_score", "score", labels, registry=registry)
    count = Gauge("touchpoint_feedback_responses", "responses", labels, registry=registry)
    await h.service.refresh_gauges(score, count)
    for metric in ("nps", "csat", "ces"):
        for by in ("channel", "team", "product"):
            for key, estimate in expected(metric, lambda a, i=DIMENSION[by]: a[i] or "(none)", answers).items():
                names = {"tenant": h.tenant, "metric": metric, "dimension": by, "key": key}
                assert registry.get_sample_value("touchpoint_feedback_score", names) == estimate.value, names
                assert registry.get_sample_value("touchpoint_feedback_responses", names) == estimate.count, names
    assert registry.get_sample_value("touchpoint_feedback_score", {
        "tenant": h.tenant, "metric": "nps", "dimension": "channel", "key": "app"}) == 100.0


# ---- product ratings ------------------------------------------------------------------------------------------


async def test_a_product_alert_fires_once_per_fall_below_the_threshold(h):
    async def rate(*stars: int, product: str = "router-x") -> None:
        base = len(await h.fetch("SELECT * FROM feedback.product_ratings"))
        await h.feed(topics.FEEDBACK_INBOUND.name, *[
            h.rating(f"g-{base + n}", product, s, customer=f"c{n % 3}") for n, s in enumerate(stars)])
        await h.service.publish_pending()

    async def alerts() -> list[dict]:
        return [d for _, d in await h.events("product_alert")]

    await rate(1, 1, 1, 1)
    [fourth] = await h.fetch("SELECT rating_id FROM feedback.product_ratings ORDER BY rating_id DESC LIMIT 1")
    await h.feed(topics.FEEDBACK_INBOUND.name, h.rating(fourth["rating_id"], "router-x", 1))  # re-sent: counted once
    await rate(3, 3, 3, 3, 3, product="modem")
    assert not await alerts(), "4 ratings are too few to judge by"
    await rate(1)
    [first] = await alerts()
    assert (first["product"], first["average"], first["count"], first["threshold"]) == ("router-x", 1.0, 5, 2.0)
    assert "customer_id" not in first
    await rate(2, 1)
    assert len(await alerts()) == 1, "no new alert while it stays below"
    await rate(5, 5, 5, 5, 5, 5, 5)    # (1*6 + 2 + 35) / 14 = 3.07: recovered
    assert len(await alerts()) == 1
    await rate(*[1] * 20)              # below 2 again at the 16th: (43 + 16) / 30
    second = (await alerts())[1]
    assert (second["average"], second["count"]) == (round(59 / 30, 4), 30)
    assert len(await alerts()) == 2


# ---- merges ---------------------------------------------------------------------------------------------------


async def test_a_merge_moves_invitations_and_responses_to_the_survivor(h):
    await h.case_resolved("C-1", "cust-old", language="de")
    h.clock.advance(days=1)
    await h.tick()
    invited = (await h.of("invited"))["cust-old"]
    async with h.http() as client:
        assert (await client.post(f"/v1/responses/{token_of(invited)}", json={"csat": 5})).status_code == 200
    await h.responses(h.response("r-1", "app_pulse", {"nps": 9}, customer="cust-old"))
    h.clock.advance(hours=1)
    await h.merge("cust-old", "cust-new")
    for table in ("invitations", "responses"):
        assert {r["customer_id"] for r in await h.fetch(f"SELECT customer_id FROM feedback.{table}")} == {"cust-new"}

    h.clock.advance(days=2)
    await h.case_resolved("C-2", "cust-old")                 # a CRM still naming the merged id
    await h.conversation_resolved("V-1", "cust-old")         # routing's view from before the merge
    await h.responses(h.response("r-2", "app_pulse", {"nps": 10}, customer="cust-old"))
    await h.tick()

    suppressed = [d for _, d in await h.events("suppressed")]
    assert sorted((d["customer_id"], d["trigger"], d["reason"]) for d in suppressed) == [
        ("cust-new", "case_resolved", "recontact_days"), ("cust-new", "conversation_resolved", "customer_fatigue")]
    responded = [d for _, d in await h.events("responded")]
    assert [(d["response_id"], d["customer_id"]) for d in responded][-1] == ("upstream:r-2", "cust-new")
    assert {r["customer_id"] for r in await h.fetch("SELECT customer_id FROM feedback.invitations")} == {"cust-new"}
    assert {r["customer_id"] for r in await h.fetch("SELECT customer_id FROM feedback.responses")} == {"cust-new"}
