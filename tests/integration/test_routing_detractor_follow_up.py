"""A detractor's feedback, through real Kafka and PostgreSQL: the routing service (in this process) reads
``touchpoint.feedback.v1``, opens the follow-up conversation the event names once however often it is delivered,
queues it for the event's team with raised priority under the 48-hour SLA rule that matches its tag, and reports
its resolution on ``touchpoint.routing.v1`` under the follow-up's id; other feedback events change nothing."""

from __future__ import annotations

import json
import uuid
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone

import httpx
import orjson
import pytest

from services.routing.main import build_app
from services.routing.settings import RoutingSettings
from shared import topics
from shared.cloudevents import CloudEvent, from_structured, to_kafka_headers
from shared.contracts import EXAMPLES_DIR, types
from shared.kafka import event_record
from tests.support import kafka_io
from tests.support.stack import new_stack

pytestmark = pytest.mark.integration
TENANT = "detractors"
CONFIG = """
tenants:
  detractors:
    version: 1
    offer_timeout_s: 600
    continuity: {window_s: 0, wait_s: 0}
    sla:
      - {name: detractor-follow-up, match: "tags HAS 'detractor_follow_up'", resolution_s: 172800}
    workflow:
      filters:
        - name: detractor-follow-ups
          match: "tags HAS 'detractor_follow_up'"
          targets:
            - {queue: follow-ups, expression: "teams HAS task.team"}
      default_targets:
        - {queue: general, expression: "true"}
"""


@asynccontextmanager
async def routing_service(infra, tmp_path):
    stack = await new_stack(infra.bootstrap_servers, infra.admin_dsn)
    config = tmp_path / "routing.yaml"
    config.write_text(CONFIG)
    app = build_app(RoutingSettings(kafka_bootstrap_servers=stack.bootstrap_servers, database_url=stack.database_url,
                                    topic_prefix=stack.prefix, routing_config=config, timer_interval_s=0.1))
    async with app.router.lifespan_context(app):
        yield stack, app


def record(event_type: str, key: str, data: dict) -> tuple[bytes, bytes, list]:
    event = CloudEvent(id=str(uuid.uuid4()), source="test/upstream", type=event_type,
                       time=datetime.now(timezone.utc), data=data, extensions={"tenant": TENANT})
    r = event_record("unused", key, event)
    return r.key, r.value, r.headers


def feedback(event_type: str, customer: str, **data) -> tuple[bytes, bytes, list]:
    """The contract example of ``event_type`` for this customer, with a fresh id and ``data`` overrides."""
    raw = json.loads((EXAMPLES_DIR / f"{event_type}.json").read_text())
    raw.update(id=str(uuid.uuid4()), tenant=TENANT)
    raw["data"].update(customer_id=customer, **data)
    event = from_structured(raw)
    return customer.encode(), orjson.dumps(event.data), to_kafka_headers(event)


async def routing_events(stack, event_type: str, conversation_id: str) -> list[dict]:
    return [e for e in (orjson.loads(r.value) for r in
                        await kafka_io.read_all(stack.bootstrap_servers, stack.topic(topics.ROUTING.name))
                        if dict(r.headers)["ce_type"].decode() == event_type)
            if e["conversation_id"] == conversation_id]


async def settled(stack) -> bool:
    return not await kafka_io.lag(stack.bootstrap_servers, stack.prefix + "touchpoint-routing",
                                  stack.topic(topics.FEEDBACK.name))


async def agents_online(stack) -> None:
    now = datetime.now(timezone.utc).isoformat()
    teams = {"ana": ["billing"], "ben": ["support"]}
    await kafka_io.publish(stack.bootstrap_servers, stack.topic(topics.AGENTS.name), [
        record(types.AGENT_PROFILE_UPDATED, agent, {"agent_id": agent, "skills": {"support": 5}, "languages": ["de"],
                                                    "teams": team})
        for agent, team in teams.items()] + [
        record(types.AGENT_PRESENCE_CHANGED, agent, {"agent_id": agent, "presence": "online", "changed_at": now})
        for agent in teams])


async def test_a_detractor_queues_one_follow_up_for_the_team_with_a_48h_resolution_sla(infra, tmp_path):
    customer, response_id = str(uuid.uuid4()), str(uuid.uuid4())
    follow_up_id = f"feedback-followup:{response_id}"
    at = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(seconds=1)
    async with routing_service(infra, tmp_path) as (stack, app):
        await agents_online(stack)
        detractor = feedback(types.FEEDBACK_DETRACTOR_DETECTED, customer, response_id=response_id,
                             follow_up_conversation_id=follow_up_id, team="billing", channel="whatsapp",
                             priority=10, at=at.isoformat())
        others = [feedback(t, customer) for t in (types.FEEDBACK_INVITED, types.FEEDBACK_RESPONDED,
                                                  types.FEEDBACK_LOOP_CLOSED)]
        await kafka_io.publish(stack.bootstrap_servers, stack.topic(topics.FEEDBACK.name), [*others, detractor, detractor])
        await kafka_io.wait_for(lambda: settled(stack), timeout=60, what="the feedback events consumed")
        redelivered = await kafka_io.read_all(stack.bootstrap_servers, stack.topic(topics.FEEDBACK.name))
        with kafka_io.as_consumer(redelivered):
            await app.state.service.process_feedback(redelivered)

        offers = await kafka_io.wait_for(
            lambda: routing_events(stack, types.ROUTING_CONVERSATION_OFFERED, follow_up_id), timeout=30,
            what="the follow-up offered")
        queued = await routing_events(stack, types.ROUTING_CONVERSATION_QUEUED, follow_up_id)
        assert [(e["customer_id"], e["channel"], e["queue"], e["priority"]) for e in queued] == [
            (customer, "whatsapp", "follow-ups", 10)], "queued once, for the team, with the event's priority"
        assert [(o["agent_id"], o["queue"]) for o in offers] == [("ana", "follow-ups")], "only the team's agent"

        key = await stack.api_key(TENANT, ["agent", "read"])
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://routing",
                                     headers={"Authorization": f"Bearer {key}"}) as client:
            detail = (await client.get(f"/v1/conversations/{follow_up_id}")).json()
            assert (detail["customer_id"], detail["status"], detail["agent_id"]) == (customer, "offered", "ana")
            resolution = detail["sla"]["clocks"]["resolution"]
            assert datetime.fromisoformat(resolution["due_at"]) == at + timedelta(hours=48)
            resp = await client.post(f"/v1/agents/ana/offers/{offers[0]['offer_id']}/accept")
            assert resp.status_code == 200, resp.text
            resp = await client.post(f"/v1/agents/ana/conversations/{follow_up_id}/events", json={"type": "resolved"})
            assert resp.status_code == 200 and resp.json()["status"] == "resolved", resp.text

        resolved = await kafka_io.wait_for(
            lambda: routing_events(stack, types.ROUTING_CONVERSATION_RESOLVED, follow_up_id), timeout=30,
            what="the follow-up resolved")
        assert [(e["customer_id"], e["agent_id"], e["sla_status"]) for e in resolved] == [(customer, "ana", "hit")]

        replayed = feedback(types.FEEDBACK_DETRACTOR_DETECTED, customer, response_id=response_id,
                            follow_up_conversation_id=follow_up_id, team="billing", at=at.isoformat())
        await kafka_io.publish(stack.bootstrap_servers, stack.topic(topics.FEEDBACK.name), [replayed])
        await kafka_io.wait_for(lambda: settled(stack), timeout=60, what="the replayed detractor consumed")
        assert len(await routing_events(stack, types.ROUTING_CONVERSATION_QUEUED, follow_up_id)) == 1, (
            "a resolved follow-up is not opened again by a replay under a new event id")

        conn = await stack.connect()
        try:
            applied = await conn.fetchval("SELECT count(*) FROM routing.processed_events WHERE tenant = $1 AND source ="
                                          " 'touchpoint/feedback'", TENANT)
            opened = await conn.fetchval("SELECT count(*) FROM routing.conversations WHERE tenant = $1", TENANT)
        finally:
            await conn.close()
        assert applied == 2, "each detractor event applied once; the other feedback events ask for nothing"
        assert opened == 1
        dead = await kafka_io.read_all(stack.bootstrap_servers, stack.topic(topics.FEEDBACK.dead_letter()))
        assert not dead
