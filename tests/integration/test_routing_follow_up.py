"""A customer's "not solved" answer to a follow-up, through real Kafka and PostgreSQL: the routing service (in
this process) reads ``touchpoint.notification.v1``, reopens the resolved conversation once however often the
answer is delivered, and offers it to the agent who resolved it; a "solved" answer changes nothing."""

from __future__ import annotations

import json
import uuid
from contextlib import asynccontextmanager
from datetime import datetime, timezone

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
TENANT = "followup"
CONFIG = """
tenants:
  followup:
    version: 1
    offer_timeout_s: 600
    continuity: {window_s: 86400, wait_s: 0}
    workflow:
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


def record(event_type: str, key: str, data: dict, event_id: str | None = None) -> tuple[bytes, bytes, list]:
    event = CloudEvent(id=event_id or str(uuid.uuid4()), source="test/upstream", type=event_type,
                       time=datetime.now(timezone.utc), data=data, extensions={"tenant": TENANT})
    r = event_record("unused", key, event)
    return r.key, r.value, r.headers


def answer(customer: str, conversation_id: str, agent_id: str, solved: bool) -> tuple[bytes, bytes, list]:
    """The follow-up answer example for this conversation, answered now, with a fresh id."""
    raw = json.loads((EXAMPLES_DIR / f"{types.NOTIFICATION_FOLLOW_UP_ANSWERED}.json").read_text())
    raw.update(id=str(uuid.uuid4()), tenant=TENANT)
    raw["data"].update(customer_id=customer, conversation_id=conversation_id, agent_id=agent_id, solved=solved,
                       at=datetime.now(timezone.utc).isoformat())
    event = from_structured(raw)
    return customer.encode(), orjson.dumps(event.data), to_kafka_headers(event)


async def routing_events(stack, event_type: str) -> list[dict]:
    return [orjson.loads(r.value) for r in await kafka_io.read_all(stack.bootstrap_servers, stack.topic(topics.ROUTING.name))
            if dict(r.headers)["ce_type"].decode() == event_type]


async def settled(stack) -> bool:
    return not await kafka_io.lag(stack.bootstrap_servers, stack.prefix + "touchpoint-routing",
                                  stack.topic(topics.NOTIFICATIONS.name))


async def resolved_conversation(stack, app, customer: str) -> tuple[str, str]:
    """(conversation id, agent) of a chat one of two online agents accepted and resolved."""
    now = datetime.now(timezone.utc).isoformat()
    await kafka_io.publish(stack.bootstrap_servers, stack.topic(topics.AGENTS.name), [
        record(types.AGENT_PROFILE_UPDATED, agent, {"agent_id": agent, "skills": {"support": 5}, "languages": ["de"],
                                                    "teams": ["support"]}) for agent in ("ana", "ben")] + [
        record(types.AGENT_PRESENCE_CHANGED, agent, {"agent_id": agent, "presence": "online", "changed_at": now})
        for agent in ("ana", "ben")])
    await kafka_io.publish(stack.bootstrap_servers, stack.topic(topics.IDENTITY.name), [record(
        types.INTERACTION_RESOLVED, customer,
        {"channel": "chat", "direction": "inbound", "identifiers": [{"type": "email", "value": f"{customer}@example.com"}],
         "source": "test/web", "event_id": str(uuid.uuid4()), "occurred_at": now, "received_at": now,
         "customer_id": customer, "text": "my router drops the connection"})])
    offers = await kafka_io.wait_for(lambda: routing_events(stack, types.ROUTING_CONVERSATION_OFFERED), timeout=60,
                                     what="the first offer")
    offer = offers[0]
    key = await stack.api_key(TENANT, ["agent", "read"])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://routing",
                                 headers={"Authorization": f"Bearer {key}"}) as client:
        agent, conversation_id = offer["agent_id"], offer["conversation_id"]
        resp = await client.post(f"/v1/agents/{agent}/offers/{offer['offer_id']}/accept")
        assert resp.status_code == 200, resp.text
        resp = await client.post(f"/v1/agents/{agent}/conversations/{conversation_id}/events", json={"type": "resolved"})
        assert resp.status_code == 200 and resp.json()["status"] == "resolved", resp.text
    return conversation_id, agent


async def test_not_solved_reopens_the_conversation_once_and_offers_it_to_the_same_agent(infra, tmp_path):
    customer = str(uuid.uuid4())
    async with routing_service(infra, tmp_path) as (stack, app):
        conversation_id, agent = await resolved_conversation(stack, app, customer)
        solved = answer(customer, conversation_id, agent, solved=True)
        not_solved = answer(customer, conversation_id, agent, solved=False)
        await kafka_io.publish(stack.bootstrap_servers, stack.topic(topics.NOTIFICATIONS.name), [solved])
        await kafka_io.wait_for(lambda: settled(stack), timeout=60, what="the solved answer consumed")
        assert len(await routing_events(stack, types.ROUTING_CONVERSATION_OFFERED)) == 1, "solved: nothing reopens"

        await kafka_io.publish(stack.bootstrap_servers, stack.topic(topics.NOTIFICATIONS.name), [not_solved, not_solved])
        await kafka_io.wait_for(lambda: settled(stack), timeout=60, what="the not-solved answer consumed")
        redelivered = await kafka_io.read_all(stack.bootstrap_servers, stack.topic(topics.NOTIFICATIONS.name))
        with kafka_io.as_consumer(redelivered):
            await app.state.service.process_notifications(redelivered)

        async def second_offer():
            offers = await routing_events(stack, types.ROUTING_CONVERSATION_OFFERED)
            return offers if len(offers) >= 2 else None

        offers = await kafka_io.wait_for(second_offer, timeout=30, what="the reopened conversation offered")
        reopened = [e for e in await routing_events(stack, types.ROUTING_CONVERSATION_QUEUED) if e["reason"] == "reopened"]
        assert [e["conversation_id"] for e in reopened] == [conversation_id], "reopened once"
        assert len(offers) == 2
        assert (offers[1]["conversation_id"], offers[1]["agent_id"], offers[1]["continuity"]) == (
            conversation_id, agent, True)

        key = await stack.api_key(TENANT, ["read"])
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://routing",
                                     headers={"Authorization": f"Bearer {key}"}) as client:
            detail = (await client.get(f"/v1/conversations/{conversation_id}")).json()
        assert (detail["status"], detail["agent_id"]) == ("offered", agent)
        conn = await stack.connect()
        try:
            applied = await conn.fetchval("SELECT count(*) FROM routing.processed_events WHERE tenant = $1 AND source ="
                                          " 'touchpoint/notification'", TENANT)
        finally:
            await conn.close()
        assert applied == 1, "the not-solved answer is applied once; the solved one asks for nothing"
        dead = await kafka_io.read_all(stack.bootstrap_servers, stack.topic(topics.NOTIFICATIONS.dead_letter()))
        assert not dead
