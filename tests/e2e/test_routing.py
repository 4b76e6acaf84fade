"""Routing on real Kafka and PostgreSQL with every service as its own process: an interaction becomes a queued
conversation, is offered to the skilled agent, times out to the next one, is accepted, and every step lands on
the customer's timeline; SLA timers survive ``kill -9`` of the routing process and fire exactly once."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone

import httpx
import orjson
import pytest

from shared.cloudevents import CloudEvent
from shared.contracts import types
from shared.kafka import event_record
from tests.support import checks, kafka_io
from tests.support.stack import new_stack

pytestmark = pytest.mark.e2e

CONFIG = """
tenants:
  shop:
    version: 1
    offer_timeout_s: 6  # the first offer must time out; the second must still be open when accepted, under load too
    reassign_after_s: 600
    continuity: {window_s: 86400, wait_s: 0}
    sla:
      - {match: "true", first_response_s: 3600, resolution_s: 86400}
    workflow:
      filters:
        - name: billing
          match: "tags HAS 'billing'"
          targets:
            - {queue: billing, expression: "skills.billing >= 5", timeout_s: 600}
      default_targets:
        - {queue: general, expression: "true"}
  slow:
    version: 1
    sla:
      - {name: fast-first-response, match: "true", first_response_s: 4}
"""


@pytest.fixture(scope="module")
async def routing_stack(infra, tmp_path_factory):
    path = tmp_path_factory.mktemp("routing") / "routing.yaml"
    path.write_text(CONFIG)
    s = await new_stack(infra.bootstrap_servers, infra.admin_dsn)
    for service in ("ingestion", "identity", "timeline"):
        s.start(service)
    s.start("routing", TOUCHPOINT_ROUTING_CONFIG=str(path), TOUCHPOINT_TIMER_INTERVAL_S="0.1")
    for proc in s.processes.values():
        await proc.wait_ready()
    s.routing_config = str(path)
    yield s
    s.stop_all()


def agent_event(tenant: str, event_type: str, data: dict) -> tuple:
    event = CloudEvent(id=str(uuid.uuid4()), source="test/wfm", type=event_type, time=datetime.now(timezone.utc),
                       data=data, extensions={"tenant": tenant})
    r = event_record("unused", data["agent_id"], event)
    return r.key, r.value, r.headers


def resolved_interaction(tenant: str, customer: str, channel: str = "chat", tags: list[str] | None = None,
                         occurred_at: datetime | None = None) -> tuple:
    now = occurred_at or datetime.now(timezone.utc)
    data = {"channel": channel, "direction": "inbound", "identifiers": [{"type": "email", "value": f"{customer}@example.com"}],
            "tags": tags or [], "source": "test/web", "event_id": str(uuid.uuid4()), "occurred_at": now.isoformat(),
            "received_at": now.isoformat(), "customer_id": customer, "text": "hello"}
    event = CloudEvent(id=str(uuid.uuid4()), source="touchpoint/identity", type=types.INTERACTION_RESOLVED, time=now,
                       data=data, extensions={"tenant": tenant})
    r = event_record("unused", customer, event)
    return r.key, r.value, r.headers


async def routing_events(stack, tenant: str) -> list[tuple[str, dict]]:
    out = []
    for record in await kafka_io.read_all(stack.bootstrap_servers, stack.topic("touchpoint.routing.v1")):
        headers = dict(record.headers)
        if headers.get("ce_tenant", b"").decode() == tenant:
            out.append((headers["ce_type"].decode(), orjson.loads(record.value), headers["ce_id"].decode()))
    return out


async def test_conversation_is_routed_by_skill_times_out_and_lands_on_the_timeline(routing_stack):
    stack, tenant = routing_stack, "shop"
    key = await stack.api_key(tenant, ["ingest", "read", "agent"])
    now = datetime.now(timezone.utc).isoformat()
    await kafka_io.publish(stack.bootstrap_servers, stack.topic("touchpoint.agents.v1"), [
        agent_event(tenant, types.AGENT_PROFILE_UPDATED, {"agent_id": "ana", "skills": {"billing": 8}, "languages": ["de"],
                                                          "teams": ["billing"]}),
        agent_event(tenant, types.AGENT_PROFILE_UPDATED, {"agent_id": "ben", "skills": {"billing": 6}, "languages": ["en"],
                                                          "teams": ["billing"]}),
        agent_event(tenant, types.AGENT_PROFILE_UPDATED, {"agent_id": "cy", "skills": {"returns": 9}, "languages": ["en"],
                                                          "teams": ["returns"]}),
        agent_event(tenant, types.AGENT_PRESENCE_CHANGED, {"agent_id": "ana", "presence": "online", "changed_at": now}),
        agent_event(tenant, types.AGENT_PRESENCE_CHANGED, {"agent_id": "ben", "presence": "online", "changed_at": now}),
        agent_event(tenant, types.AGENT_PRESENCE_CHANGED, {"agent_id": "cy", "presence": "online", "changed_at": now}),
    ])
    async with httpx.AsyncClient(base_url=stack.processes["ingestion"].url, timeout=10,
                                 headers={"Authorization": f"Bearer {key}"}) as client:
        resp = await client.post("/v1/events", json={
            "specversion": "1.0", "id": "billing-question-1", "source": "test/webchat", "type": types.INTERACTION_OCCURRED,
            "tenant": tenant, "data": {"channel": "chat", "direction": "inbound", "tags": ["billing"],
                                       "identifiers": [{"type": "email", "value": "routing-e2e@example.com"}],
                                       "text": "my invoice is wrong"}},
            headers={"Content-Type": "application/cloudevents+json"})
        assert resp.status_code == 202, resp.text

    async def offers():
        return [e for e in await routing_events(stack, tenant) if e[0] == types.ROUTING_CONVERSATION_OFFERED]

    first = (await kafka_io.wait_for(offers, timeout=60, what="a first offer"))[0][1]
    assert first["agent_id"] in ("ana", "ben"), "only agents with billing >= 5 qualify"
    assert first["queue"] == "billing"

    async def two_offers():
        found = await offers()
        return found if len(found) >= 2 else None

    second = (await kafka_io.wait_for(two_offers, timeout=30, what="a re-route after the offer timed out"))[1][1]
    assert {first["agent_id"], second["agent_id"]} == {"ana", "ben"}, "the offer moved to the other billing agent"
    events = await routing_events(stack, tenant)
    reassigned = [e[1] for e in events if e[0] == types.ROUTING_CONVERSATION_REASSIGNED]
    assert reassigned and reassigned[0]["reason"] == "offer_timeout" and reassigned[0]["from_agent_id"] == first["agent_id"]

    agent = second["agent_id"]
    async with httpx.AsyncClient(base_url=stack.processes["routing"].url, timeout=10,
                                 headers={"Authorization": f"Bearer {key}"}) as client:
        resp = await client.post(f"/v1/agents/{first['agent_id']}/offers/{second['offer_id']}/accept")
        assert resp.status_code == 403, "an agent cannot take another agent's offer"
        resp = await client.post(f"/v1/agents/{agent}/offers/{second['offer_id']}/accept")
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["status"] == "assigned" and body["agent_id"] == agent and body["sla"]["status"] == "active"
        resp = await client.post(f"/v1/agents/{agent}/offers/{second['offer_id']}/accept")
        assert resp.status_code == 409
        mine = (await client.get(f"/v1/agents/{agent}/conversations")).json()["conversations"]
        assert [c["conversation_id"] for c in mine] == [second["conversation_id"]]
        resp = await client.post(f"/v1/agents/{agent}/conversations/{second['conversation_id']}/events",
                                 json={"type": "agent_replied"})
        assert resp.status_code == 200 and resp.json()["sla"]["clocks"]["first_response"]["state"] == "hit"
        resp = await client.post(f"/v1/agents/{agent}/conversations/{second['conversation_id']}/events",
                                 json={"type": "resolved"})
        assert resp.status_code == 200 and resp.json()["status"] == "resolved"

    customer = second["customer_id"]

    async def timeline_kinds():
        async with httpx.AsyncClient(base_url=stack.processes["timeline"].url, timeout=10,
                                     headers={"Authorization": f"Bearer {key}"}) as client:
            resp = await client.get(f"/v1/customers/{customer}/timeline", params={"limit": 100})
            kinds = Counter(e["kind"] for e in resp.json().get("entries", []))
        return kinds if kinds.get("routing.conversation_resolved") else None

    kinds = await kafka_io.wait_for(timeline_kinds, timeout=60, what="routing entries on the timeline")
    print(f"\ntimeline of the customer: {dict(kinds)}")
    for kind in ("routing.conversation_queued", "routing.conversation_offered", "routing.conversation_reassigned",
                 "routing.conversation_assigned", "routing.conversation_resolved"):
        assert kinds[kind] >= 1, kind
    assert kinds["routing.conversation_offered"] == 2


async def test_the_queue_overview_numbers_conversations_in_serving_order_after_an_older_one_arrives_late(routing_stack):
    """Customers hear their position only every minute beyond 10th place; supervisors see it as it is now."""
    stack, tenant = routing_stack, "lateq"
    customers = [f"late-{n}" for n in range(15)]
    await kafka_io.publish(stack.bootstrap_servers, stack.topic("touchpoint.identity.v1"),
                           [resolved_interaction(tenant, c) for c in customers])
    key = await stack.api_key(tenant, ["read"])
    async with httpx.AsyncClient(base_url=stack.processes["routing"].url, timeout=10,
                                 headers={"Authorization": f"Bearer {key}"}) as client:
        async def waiting(n: int):
            queues = (await client.get("/v1/queues")).json()["queues"]
            return queues[0]["conversations"] if queues and queues[0]["waiting"] == n else None

        await kafka_io.wait_for(lambda: waiting(15), timeout=60, what="15 queued conversations")
        older = datetime.now(timezone.utc) - timedelta(minutes=5)
        await kafka_io.publish(stack.bootstrap_servers, stack.topic("touchpoint.identity.v1"),
                               [resolved_interaction(tenant, "late-early-bird", occurred_at=older)])
        listed = await kafka_io.wait_for(lambda: waiting(16), timeout=60, what="the late, older conversation queued")
    assert [c["position"] for c in listed] == list(range(1, 17))
    assert listed[0]["customer_id"] == "late-early-bird"
    assert [c["customer_id"] for c in listed[1:]] == customers


async def test_sla_timers_survive_kill_9_and_fire_exactly_once(routing_stack):
    stack, tenant = routing_stack, "slow"
    customers = [f"sla-{n}" for n in range(30)]
    await kafka_io.publish(stack.bootstrap_servers, stack.topic("touchpoint.identity.v1"),
                           [resolved_interaction(tenant, c) for c in customers])

    async def queued():
        found = {e[1]["conversation_id"] for e in await routing_events(stack, tenant)
                 if e[0] == types.ROUTING_CONVERSATION_QUEUED}
        return len(found) == len(customers)

    await kafka_io.wait_for(queued, timeout=60, what="30 queued conversations")
    key = await stack.api_key(tenant, ["read"])
    async with httpx.AsyncClient(base_url=stack.processes["routing"].url, timeout=10,
                                 headers={"Authorization": f"Bearer {key}"}) as client:
        overview = (await client.get("/v1/queues")).json()
        [general] = overview["queues"]
        assert general["waiting"] == len(customers)
        assert [c["position"] for c in general["conversations"]] == list(range(1, len(customers) + 1))
        assert all(c["eta_s"] > 0 for c in general["conversations"])
        sla = (await client.get("/v1/sla")).json()
        assert sla["by_status"] == {"active": len(customers)} and sla["next_due"][0]["metric"] == "first_response"
        one = general["conversations"][0]["conversation_id"]
        detail = (await client.get(f"/v1/conversations/{one}")).json()
        assert detail["status"] == "queued" and detail["position"] == 1
        assert (await client.get("/v1/queues", headers={"Authorization": "Bearer tp_x_y"})).status_code == 401
    routing = stack.processes["routing"]
    routing.kill()
    conn = await stack.connect()
    try:
        pending = await conn.fetchval(
            "SELECT count(*) FROM routing.timers WHERE tenant = $1 AND kind = 'sla_due' AND fired_at IS NULL", tenant)
        assert pending == len(customers), "every first-response clock has a durable timer"
        await asyncio.sleep(5)  # the timers fall due while the service is down
        routing.start()
        await routing.wait_ready()

        async def breached():
            events = [e for e in await routing_events(stack, tenant) if e[0] == types.ROUTING_SLA_BREACHED]
            return events if len({e[1]["conversation_id"] for e in events}) == len(customers) else None

        events = await kafka_io.wait_for(breached, timeout=60, what="30 SLA breaches after the restart")
        await asyncio.sleep(2)  # a second firing would show up within a few timer ticks
        events = [e for e in await routing_events(stack, tenant) if e[0] == types.ROUTING_SLA_BREACHED]
        per_conversation = Counter(e[1]["conversation_id"] for e in events)
        distinct_ids = {e[2] for e in events}
        fired = await conn.fetchval(
            "SELECT count(*) FROM routing.timers WHERE tenant = $1 AND kind = 'sla_due' AND fired_at IS NOT NULL", tenant)
    finally:
        await conn.close()
    print(f"\nSLA breaches after kill -9: {len(per_conversation)} conversations, {len(distinct_ids)} distinct events, "
          f"{len(events)} records, timers fired {fired}")
    assert len(distinct_ids) == len(customers), "exactly one breach event per conversation"
    assert fired == len(customers)
    assert all(e[1]["metric"] == "first_response" and e[1]["policy"] == "fast-first-response" for e in events)
    assert await checks.timeline_count(stack, tenant) >= len(customers) * 2, "queued and breached are on the timeline"
