"""The routing desk's rules on plain values: continuity, skills, capacity, offers and their timeouts,
reassignment when the agent does not reply, presence, queue positions, SLA pause and breach escalation."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from services.routing.config import parse_config
from services.routing.domain.desk import Desk, DeskError, LastAgent
from services.routing.domain.model import Agent, Conversation
from services.routing.domain.queueing import HandlingRate

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc)
CONFIG = parse_config("""
tenants:
  t:
    offer_timeout_s: 120
    reassign_after_s: 300
    continuity: {window_s: 86400, wait_s: 15}
    capacity: {total: 100, cost: {phone: 100, chat: 50, default: 50}}
    escalation: {queue: supervisors, priority_bump: 10}
    sla:
      - {name: chat, match: "channel == 'chat'", first_response_s: 600, resolution_s: 7200}
    workflow:
      filters:
        - name: german
          match: "language == 'de'"
          targets:
            - {queue: de, expression: "languages HAS 'de' AND skills.support >= 5", timeout_s: 60}
            - {queue: de, expression: "skills.support >= 1"}
      default_targets:
        - {queue: general, expression: "true"}
""").tenant("t")


class World:
    """A desk per instant over state that carries over, as the service does with the database."""

    def __init__(self, agents: dict[str, dict], config=CONFIG) -> None:
        self.config = config
        self.conversations: dict[str, Conversation] = {}
        self.agents = {name: Agent(name, presence=spec.get("presence", "online"), attributes=spec["attributes"],
                                   capacity_total=spec.get("capacity", 100)) for name, spec in agents.items()}
        self.last: dict[str, LastAgent] = {}
        self.events: list = []
        self.timers: list = []

    def desk(self, at: datetime) -> Desk:
        for a in self.agents.values():
            a.used = 0
        return Desk("t", self.config, at, self.conversations, self.agents, self.last, HandlingRate(900, 300))

    def run(self, at: datetime, action=lambda desk: None, fire: bool = True):
        desk = self.desk(at)
        result = action(desk)
        if fire:
            for timer in sorted((t for t in self.timers if t.due_at <= at), key=lambda t: t.due_at):
                self.timers.remove(timer)
                desk.fire(timer)
        desk.dispatch()
        desk.finish()
        self.conversations.update(desk.conversations)
        self.agents.update(desk.agents)
        self.last.update(desk.last_agents)
        self.events.extend(desk.events)
        known = {t.timer_id for t in self.timers}
        self.timers.extend(t for t in desk.timers if t.timer_id not in known)
        return result

    def kinds(self, conversation_id: str) -> list[str]:
        return [e.kind for e in self.events if e.conversation_id == conversation_id and e.kind != "queue_position_changed"]


GERMAN = {"languages": ["de"], "skills": {"support": 7}}
ENGLISH = {"languages": ["en"], "skills": {"support": 3}}


def open_chat(world: World, at: datetime, customer: str = "c1", language: str | None = None, channel: str = "chat"):
    return world.run(at, lambda d: d.inbound(None, customer, channel, at, language, []))


def test_new_conversation_is_queued_and_offered_to_a_skilled_agent():
    world = World({"de1": {"attributes": GERMAN}, "en1": {"attributes": ENGLISH}})
    c = open_chat(world, T0, language="de")
    assert c.status == "offered" and c.agent_id == "de1" and c.queue == "de"
    kinds = world.kinds(c.conversation_id)
    assert "conversation_queued" in kinds and "conversation_offered" in kinds


def test_requirements_relax_after_the_target_timeout():
    world = World({"en1": {"attributes": ENGLISH}})
    c = open_chat(world, T0, language="de")
    assert c.status == "queued", "nobody speaks German with support >= 5 yet"
    world.run(T0 + timedelta(seconds=30))
    assert world.conversations[c.conversation_id].status == "queued"
    world.run(T0 + timedelta(seconds=61))
    assert world.conversations[c.conversation_id].agent_id == "en1", "after 60 s any support agent qualifies"


def test_offer_timeout_reroutes_to_the_next_agent_and_never_back():
    world = World({"a": {"attributes": ENGLISH}, "b": {"attributes": ENGLISH}})
    c = open_chat(world, T0)
    first = c.agent_id
    world.run(T0 + timedelta(seconds=121))
    c = world.conversations[c.conversation_id]
    assert c.status == "offered" and c.agent_id != first and first in c.excluded
    reassigned = [e for e in world.events if e.kind == "conversation_reassigned"]
    assert reassigned[0].data["reason"] == "offer_timeout" and reassigned[0].data["from_agent_id"] == first


def test_decline_reroutes_and_accept_assigns():
    world = World({"a": {"attributes": ENGLISH}, "b": {"attributes": ENGLISH}})
    c = open_chat(world, T0)
    first, offer = c.agent_id, c.offer_id
    world.run(T0 + timedelta(seconds=5), lambda d: d.decline(offer, first))
    c = world.conversations[c.conversation_id]
    second = c.agent_id
    assert second != first
    with pytest.raises(DeskError) as err:
        world.run(T0 + timedelta(seconds=6), lambda d: d.accept(c.offer_id, first))
    assert err.value.status == 403
    world.run(T0 + timedelta(seconds=7), lambda d: d.accept(c.offer_id, second))
    assert world.conversations[c.conversation_id].status == "assigned"
    assigned = [e for e in world.events if e.kind == "conversation_assigned"][0]
    assert assigned.data["waited_s"] == 7.0


def test_assigned_without_a_reply_goes_back_to_the_queue():
    world = World({"a": {"attributes": ENGLISH}, "b": {"attributes": ENGLISH}})
    c = open_chat(world, T0)
    agent = c.agent_id
    world.run(T0 + timedelta(seconds=1), lambda d: d.accept(c.offer_id, agent))
    world.run(T0 + timedelta(seconds=302))
    c = world.conversations[c.conversation_id]
    assert c.agent_id != agent and agent in c.excluded
    assert [e.data["reason"] for e in world.events if e.kind == "conversation_reassigned"] == ["no_reply"]


def test_a_reply_keeps_the_assignment():
    world = World({"a": {"attributes": ENGLISH}, "b": {"attributes": ENGLISH}})
    c = open_chat(world, T0)
    agent = c.agent_id
    world.run(T0 + timedelta(seconds=1), lambda d: d.accept(c.offer_id, agent))
    world.run(T0 + timedelta(seconds=60), lambda d: d.agent_replied(d.conversations[c.conversation_id], d.now, agent))
    world.run(T0 + timedelta(seconds=400))
    assert world.conversations[c.conversation_id].agent_id == agent
    assert not [e for e in world.events if e.kind == "conversation_reassigned"]


def test_capacity_weights_are_respected():
    world = World({"a": {"attributes": ENGLISH}})
    first = open_chat(world, T0, customer="c1")
    second = open_chat(world, T0 + timedelta(seconds=1), customer="c2")
    third = open_chat(world, T0 + timedelta(seconds=2), customer="c3")
    statuses = [world.conversations[c.conversation_id].status for c in (first, second, third)]
    assert statuses == ["offered", "offered", "queued"], "two chats of 50 fill a capacity of 100"
    call = open_chat(world, T0 + timedelta(seconds=3), customer="c4", channel="phone")
    assert world.conversations[call.conversation_id].status == "queued", "a call needs the whole capacity"


def test_continuity_prefers_the_last_agent_when_online():
    world = World({"a": {"attributes": ENGLISH}, "b": {"attributes": ENGLISH}})
    world.last["c1"] = LastAgent("b", T0 - timedelta(hours=1))
    c = open_chat(world, T0)
    assert c.agent_id == "b" and c.offer_continuity


def test_continuity_never_waits_for_an_offline_agent():
    world = World({"a": {"attributes": ENGLISH}, "b": {"attributes": ENGLISH, "presence": "offline"}})
    world.last["c1"] = LastAgent("b", T0 - timedelta(hours=1))
    c = open_chat(world, T0)
    assert c.agent_id == "a" and not c.offer_continuity


def test_continuity_waits_a_little_for_a_busy_last_agent_then_falls_back():
    world = World({"a": {"attributes": ENGLISH}, "b": {"attributes": ENGLISH, "presence": "away"}})
    world.last["c1"] = LastAgent("b", T0 - timedelta(hours=1))
    c = open_chat(world, T0)
    assert c.status == "queued", "the last agent is away: wait up to 15 s for them"
    world.run(T0 + timedelta(seconds=16))
    assert world.conversations[c.conversation_id].agent_id == "a"


def test_going_offline_hands_conversations_back():
    world = World({"a": {"attributes": ENGLISH}, "b": {"attributes": ENGLISH}})
    c = open_chat(world, T0)
    agent = c.agent_id
    world.run(T0 + timedelta(seconds=1), lambda d: d.accept(c.offer_id, agent))
    world.run(T0 + timedelta(seconds=2), lambda d: d.presence(agent, "offline", d.now))
    c = world.conversations[c.conversation_id]
    assert c.agent_id not in (None, agent)
    assert [e.data["reason"] for e in world.events if e.kind == "conversation_reassigned"] == ["agent_offline"]


def test_reopen_goes_back_to_the_same_agent():
    world = World({"a": {"attributes": ENGLISH}, "b": {"attributes": ENGLISH}})
    c = open_chat(world, T0)
    agent = c.agent_id
    world.run(T0 + timedelta(seconds=1), lambda d: d.accept(c.offer_id, agent))
    world.run(T0 + timedelta(seconds=60), lambda d: d.resolved(d.conversations[c.conversation_id], d.now))
    world.run(T0 + timedelta(days=1), lambda d: d.reopened(d.conversations[c.conversation_id], d.now, agent))
    c = world.conversations[c.conversation_id]
    assert c.status == "offered" and c.agent_id == agent and c.offer_continuity
    assert c.queue_reason == "reopened"


def test_queue_positions_and_eta():
    world = World({"a": {"attributes": ENGLISH, "presence": "offline"}})
    made = [open_chat(world, T0 + timedelta(seconds=n), customer=f"c{n}") for n in range(4)]
    queued = [e for e in world.events if e.kind == "conversation_queued"]
    assert [e.data["position"] for e in queued] == [1, 2, 3, 4]
    assert all(e.data["eta_s"] > 0 for e in queued)
    assert queued[3].data["eta_s"] > queued[0].data["eta_s"]
    world.run(T0 + timedelta(seconds=10), lambda d: d.resolved(d.conversations[made[0].conversation_id], d.now))
    moved = [e for e in world.events if e.kind == "queue_position_changed"]
    assert {e.conversation_id: e.data["position"] for e in moved} == {
        made[1].conversation_id: 1, made[2].conversation_id: 2, made[3].conversation_id: 3}


def test_priority_and_ageing_order_the_queue():
    """Ageing adds one priority point per 60 s waited: an urgent (+3) conversation overtakes one that has waited
    less than 180 s longer, not one that has waited more."""
    world = World({"a": {"attributes": ENGLISH, "presence": "offline"}})
    old = open_chat(world, T0, customer="old")
    recent = open_chat(world, T0 + timedelta(seconds=100), customer="recent")
    late = world.run(T0 + timedelta(seconds=100), lambda d: d.inbound(None, "vip1", "chat", d.now, None, ["urgent"]))
    later = world.run(T0 + timedelta(seconds=200), lambda d: d.inbound(None, "vip2", "chat", d.now, None, ["urgent"]))
    world.run(T0 + timedelta(seconds=201))
    order = sorted(world.conversations.values(), key=lambda c: c.position)
    assert [c.customer_id for c in order] == ["vip1", "old", "vip2", "recent"]
    assert {old.conversation_id, recent.conversation_id, late.conversation_id, later.conversation_id} == \
        {c.conversation_id for c in order}


def test_waiting_on_customer_pauses_the_sla_and_breach_escalates():
    world = World({"a": {"attributes": ENGLISH, "presence": "offline"}})
    c = open_chat(world, T0)
    due = {t.payload["metric"]: t.due_at for t in world.timers if t.kind == "sla_due"}
    assert due["first_response"] == T0 + timedelta(seconds=600)
    world.run(T0 + timedelta(seconds=601))
    c = world.conversations[c.conversation_id]
    breach = [e for e in world.events if e.kind == "sla_breached"]
    assert len(breach) == 1 and breach[0].data["metric"] == "first_response"
    assert c.queue == "supervisors" and c.priority == 10
    world.run(T0 + timedelta(seconds=700))
    assert len([e for e in world.events if e.kind == "sla_breached"]) == 1, "a breach fires once"


def test_pause_moves_the_resolution_due_time():
    world = World({"a": {"attributes": ENGLISH}})
    c = open_chat(world, T0)
    world.run(T0 + timedelta(seconds=1), lambda d: d.accept(c.offer_id, "a"))
    world.run(T0 + timedelta(seconds=100), lambda d: d.agent_replied(d.conversations[c.conversation_id], d.now, "a"))
    world.run(T0 + timedelta(seconds=200), lambda d: d.waiting_on_customer(d.conversations[c.conversation_id], d.now))
    world.run(T0 + timedelta(seconds=1200), lambda d: d.inbound(c.conversation_id, "c1", "chat", d.now, None, []))
    dues = sorted(t.due_at for t in world.timers if t.kind == "sla_due" and t.payload["metric"] == "resolution")
    assert dues[-1] == T0 + timedelta(seconds=7200 + 1000), "the 1,000 s waiting on the customer do not count"


def test_warnings_fire_before_the_breach_once_each():
    config = parse_config("""
tenants:
  t:
    sla:
      - {name: social, match: "true", first_response_s: 3600, warn_before_s: [1800, 600]}
""").tenant("t")
    world = World({}, config)
    c = open_chat(world, T0)
    for minutes in (29, 31, 49, 51, 59, 61, 90):
        world.run(T0 + timedelta(minutes=minutes))
    warnings = [(e.data["warn_before_s"], e.data["metric"]) for e in world.events if e.kind == "sla_warning"]
    assert warnings == [(1800, "first_response"), (600, "first_response")]
    assert [e.kind for e in world.events if e.kind.startswith("sla_")] == ["sla_warning", "sla_warning", "sla_breached"]
    assert world.conversations[c.conversation_id].sla_state is not None

