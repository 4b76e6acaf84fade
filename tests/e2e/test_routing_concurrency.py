"""Two routing instances in one consumer group, 5,000 conversations, simulated agents resolving what they get:
no conversation is assigned twice and no agent ever holds more than its capacity."""

from __future__ import annotations

import time
import uuid
from collections import Counter, defaultdict
from datetime import datetime, timezone

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from shared.cloudevents import CloudEvent
from shared.contracts import types
from shared.kafka import event_record
from tests.e2e.test_routing import agent_event, resolved_interaction
from tests.support import kafka_io
from tests.support.stack import new_stack

pytestmark = pytest.mark.e2e

TENANT, AGENTS, CONVERSATIONS, COST, CAPACITY = "busy", 20, 5000, 20, 100
CONFIG = f"""
tenants:
  {TENANT}:
    auto_accept: true
    reassign_after_s: 0
    continuity: {{window_s: 0, wait_s: 0}}
    capacity: {{total: {CAPACITY}, cost: {{chat: {COST}}}}}
"""


@pytest.fixture(scope="module")
async def two_routers(infra, tmp_path_factory):
    path = tmp_path_factory.mktemp("routing-concurrency") / "routing.yaml"
    path.write_text(CONFIG)
    s = await new_stack(infra.bootstrap_servers, infra.admin_dsn)
    for name in ("routing-a", "routing-b"):
        s.start("routing", name, TOUCHPOINT_ROUTING_CONFIG=str(path), TOUCHPOINT_TIMER_INTERVAL_S="0.2")
    for proc in s.processes.values():
        await proc.wait_ready()
    yield s
    s.stop_all()


def resolved_activity(conversation_id: str, agent_id: str) -> tuple:
    now = datetime.now(timezone.utc)
    event = CloudEvent(id=str(uuid.uuid4()), source="test/desk", type=types.CONVERSATION_RESOLVED, time=now,
                       data={"conversation_id": conversation_id, "agent_id": agent_id, "occurred_at": now.isoformat()},
                       extensions={"tenant": TENANT})
    r = event_record("unused", conversation_id, event)
    return r.key, r.value, r.headers


async def test_two_instances_never_assign_twice_or_exceed_capacity(two_routers):
    stack = two_routers
    now = datetime.now(timezone.utc).isoformat()
    agents = [f"agent-{n:02d}" for n in range(AGENTS)]
    await kafka_io.publish(stack.bootstrap_servers, stack.topic("touchpoint.agents.v1"), [
        agent_event(TENANT, types.AGENT_PROFILE_UPDATED, {"agent_id": a, "skills": {"support": 5}, "languages": ["en"],
                                                          "teams": ["t"], "capacity_total": CAPACITY}) for a in agents
    ] + [agent_event(TENANT, types.AGENT_PRESENCE_CHANGED, {"agent_id": a, "presence": "online", "changed_at": now})
         for a in agents])
    started = time.monotonic()
    await kafka_io.publish(stack.bootstrap_servers, stack.topic("touchpoint.identity.v1"),
                           [resolved_interaction(TENANT, f"cust-{n}") for n in range(CONVERSATIONS)])

    assigned: dict[str, list[tuple[str, str]]] = defaultdict(list)  # conversation → [(event id, agent)]
    resolved: set[str] = set()
    answered: set[str] = set()
    consumer = AIOKafkaConsumer(stack.topic("touchpoint.routing.v1"), bootstrap_servers=stack.bootstrap_servers,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        deadline = time.monotonic() + 300
        while len(resolved) < CONVERSATIONS:
            assert time.monotonic() < deadline, f"only {len(resolved)} of {CONVERSATIONS} resolved in 300 s"
            batch = await consumer.getmany(timeout_ms=200, max_records=5000)
            todo = []
            for record in (r for records in batch.values() for r in records):
                headers = dict(record.headers)
                kind, data = headers["ce_type"].decode(), orjson.loads(record.value)
                if kind == types.ROUTING_CONVERSATION_ASSIGNED:
                    assigned[data["conversation_id"]].append((headers["ce_id"].decode(), data["agent_id"]))
                    if data["conversation_id"] not in answered:
                        answered.add(data["conversation_id"])
                        todo.append(resolved_activity(data["conversation_id"], data["agent_id"]))
                elif kind == types.ROUTING_CONVERSATION_RESOLVED:
                    resolved.add(data["conversation_id"])
            if todo:
                await kafka_io.publish(stack.bootstrap_servers, stack.topic("touchpoint.conversations.v1"), todo)
    finally:
        await consumer.stop()
    elapsed = time.monotonic() - started

    distinct = {cid: {event_id for event_id, _ in events} for cid, events in assigned.items()}
    twice = [cid for cid, ids in distinct.items() if len(ids) > 1]
    conn = await stack.connect()
    try:
        rows = await conn.fetch("SELECT agent_id, assigned_at, released_at FROM routing.assignments WHERE tenant = $1",
                                TENANT)
    finally:
        await conn.close()
    peak = max_concurrent(rows)
    per_agent = Counter(agent for events in assigned.values() for _, agent in events[:1])
    print(f"\n{CONVERSATIONS} conversations over 2 routing instances in {elapsed:.0f}s: assigned {len(distinct)}, "
          f"assigned twice {len(twice)}, resolved {len(resolved)}, assignment rows {len(rows)}, "
          f"peak per agent {max(peak.values())} × {COST} of {CAPACITY}, busiest agent {max(per_agent.values())}, "
          f"least busy {min(per_agent.values())}")
    assert len(distinct) == CONVERSATIONS and not twice
    assert len(rows) == CONVERSATIONS
    assert max(peak.values()) * COST <= CAPACITY, peak
    assert set(per_agent) == set(agents), "every agent took work"


def max_concurrent(rows) -> dict[str, int]:
    """Most conversations any agent held at one instant, from assignment intervals (release before assign on ties)."""
    points: dict[str, list[tuple[datetime, int]]] = defaultdict(list)
    for r in rows:
        points[r["agent_id"]].append((r["assigned_at"], 1))
        if r["released_at"] is not None:
            points[r["agent_id"]].append((r["released_at"], -1))
    peak = {}
    for agent, marks in points.items():
        level = top = 0
        for _, delta in sorted(marks, key=lambda m: (m[0], m[1])):
            level += delta
            top = max(top, level)
        peak[agent] = top
    return peak
