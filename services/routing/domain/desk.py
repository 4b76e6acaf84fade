"""The routing desk: every routing decision for one tenant, on plain values, at one instant.

The service loads a tenant's open conversations and agents into a :class:`Desk` inside a transaction that holds
the tenant's routing lock, applies what happened (interactions, agent and conversation events, HTTP actions,
due timers), calls :meth:`Desk.dispatch` and :meth:`Desk.finish`, and persists what changed together with the
events and timers the desk produced. Nothing here performs I/O, so every rule is testable with plain values.

Rules
- Continuity: a queued conversation is first offered to the agent the customer last dealt with (within the
  tenant's continuity window) or to the agent a reopen names — only when that agent is online with capacity.
  While that agent is away or busy the conversation waits up to ``continuity.wait_s``; an offline agent is
  never waited for.
- Otherwise the workflow's targets in force (requirements relax as targets time out) choose an agent with the
  tenant's routing model; an agent who declined or let an offer expire is not offered the same conversation.
- Capacity: a conversation costs ``capacity.cost[channel]`` of its agent's capacity while offered, assigned or
  waiting; nobody is offered more than their free capacity.
- Offers expire after ``offer_timeout_s``; an assigned conversation whose agent has not replied within
  ``reassign_after_s`` goes back to the queue.
- SLA clocks follow the conversation; a breach bumps its priority and, while it is still waiting, moves it to
  the escalation queue.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Mapping

from services.routing.domain.model import HOLDING, Agent, Conversation, Emitted, Timer
from services.routing.domain.queueing import HandlingRate, Waiting, rank
from services.routing.domain.sla import SlaClocks
from services.routing.domain.workflow import AgentView, Workflow, choose_agent

# Position events: always for the first places, otherwise at most once per this many routing seconds.
POSITION_ALWAYS_UP_TO = 10
POSITION_MIN_INTERVAL_S = 60.0


class DeskError(Exception):
    """A refused action: ``status`` is the HTTP status an API should answer with."""

    def __init__(self, status: int, reason: str, detail: str = "") -> None:
        super().__init__(detail or reason)
        self.status, self.reason, self.detail = status, reason, detail


@dataclass
class LastAgent:
    agent_id: str
    at: datetime


class Desk:
    def __init__(self, tenant: str, config: Any, now: datetime, conversations: Mapping[str, Conversation],
                 agents: Mapping[str, Agent], last_agents: Mapping[str, LastAgent], rate: HandlingRate,
                 rr_cursor: int = 0) -> None:
        self.tenant, self.config, self.now = tenant, config, now
        self.conversations = dict(conversations)
        self.agents = dict(agents)
        self.last_agents = dict(last_agents)
        self.rate = rate
        self.rr_cursor = rr_cursor
        self.workflow: Workflow = config.workflow()
        self.events: list[Emitted] = []
        self.timers: list[Timer] = []
        self.changed: set[str] = set()
        self.changed_agents: set[str] = set()
        self.changed_last: set[str] = set()
        self.assigned: list[tuple[Conversation, Agent]] = []
        self.released: list[str] = []
        for c in self.conversations.values():
            if c.status in HOLDING and c.agent_id in self.agents:
                self.agents[c.agent_id].used += self._cost(c)

    # ---- what happened -------------------------------------------------------------------------------------

    def inbound(self, conversation_id: str | None, customer_id: str, channel: str, at: datetime,
                language: str | None, tags: list[str], resolved: Conversation | None = None) -> Conversation:
        """A customer wrote or called: continue their open conversation, reopen a resolved one, or open one."""
        at = min(at, self.now)
        c = self.conversations.get(conversation_id) if conversation_id else self.open_for(customer_id, channel)
        if c is None and resolved is not None:
            self.conversations[resolved.conversation_id] = c = resolved
        if c is None:
            cid = conversation_id or str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.tenant}/{customer_id}/{channel}/{at.isoformat()}"))
            return self._open(cid, customer_id, channel, at, language, tags)
        c.last_customer_at = at
        if c.status == "resolved":
            self.reopened(c, at, None)
            return c
        if c.status == "waiting":
            c.status = "assigned"
        self._sla(c, lambda clocks: clocks.customer_replied(at))
        self._touch(c)
        return c

    def follow_up(self, conversation_id: str, customer_id: str, channel: str, at: datetime, language: str | None,
                  tags: list[str], priority: int) -> Conversation:
        """The business asks for a conversation with the customer (a detractor's follow-up): ``conversation_id``
        is opened and queued with ``priority`` on top of what its tags give. A conversation the desk already holds
        under that id is returned unchanged, so asking twice opens one conversation."""
        existing = self.conversations.get(conversation_id)
        if existing is not None:
            return existing
        return self._open(conversation_id, customer_id, channel, min(at, self.now), language, tags, priority)

    def agent_replied(self, c: Conversation, at: datetime, agent_id: str | None) -> None:
        at = min(at, self.now)
        c.last_agent_reply_at = at
        if c.status == "waiting":
            c.status = "assigned"
        self._sla(c, lambda clocks: clocks.agent_replied(at))
        self._touch(c)

    def customer_replied(self, c: Conversation, at: datetime) -> None:
        self.inbound(c.conversation_id, c.customer_id, c.channel, at, c.language, c.tags)

    def waiting_on_customer(self, c: Conversation, at: datetime) -> None:
        at = min(at, self.now)
        if c.status in ("assigned", "offered"):
            c.status = "waiting"
        self._sla(c, lambda clocks: clocks.waiting_on_customer(at))
        self._touch(c)

    def resolved(self, c: Conversation, at: datetime, resolution: str | None = None) -> None:
        if c.status == "resolved":
            return
        at = min(at, self.now)
        agent_id = c.agent_id
        self._release(c)
        c.status, c.resolved_at, c.queue = "resolved", at, c.queue
        self._sla(c, lambda clocks: clocks.resolved(at))
        if agent_id:
            self._remember(c.customer_id, agent_id, at)
        sla_status = SlaClocks(self._policy(c), c.sla_state).status() if c.sla_state else None
        self._emit("conversation_resolved", c, agent_id=agent_id, sla_status=sla_status, resolution=resolution)
        self._touch(c)

    def reopened(self, c: Conversation, at: datetime, prefer_agent_id: str | None) -> None:
        at = min(at, self.now)
        if c.status != "resolved":
            if prefer_agent_id:
                c.prefer_agent_id = prefer_agent_id
                self._touch(c)
            return
        last = self.last_agents.get(c.customer_id)
        c.prefer_agent_id = prefer_agent_id or (last.agent_id if last else None)
        c.excluded, c.resolved_at, c.escalated = [], None, False
        self._sla(c, lambda clocks: clocks.reopened(at))
        self._enqueue(c, at, "reopened")

    def profile(self, agent_id: str, name: str | None, attributes: dict, capacity_total: int) -> Agent:
        a = self.agents.get(agent_id) or Agent(agent_id)
        a.name, a.attributes, a.capacity_total = name, attributes, capacity_total
        self.agents[agent_id] = a
        self.changed_agents.add(agent_id)
        return a

    def presence(self, agent_id: str, presence: str, at: datetime) -> Agent:
        """Presence changes. Going offline hands the agent's conversations back to the queue (nobody would
        answer them); going away hands back pending offers only."""
        a = self.agents.get(agent_id) or Agent(agent_id)
        self.agents[agent_id] = a
        a.presence = presence
        self.changed_agents.add(agent_id)
        if presence != "online":
            for c in list(self.conversations.values()):
                if c.agent_id == agent_id and (c.status == "offered" or (presence == "offline" and c.status in HOLDING)):
                    self._requeue(c, "agent_offline", exclude=False)
        return a

    def accept(self, offer_id: str, agent_id: str) -> Conversation:
        c = self._offer(offer_id, agent_id)
        self._assign(c, self.agents[agent_id])
        return c

    def decline(self, offer_id: str, agent_id: str) -> Conversation:
        c = self._offer(offer_id, agent_id)
        self._requeue(c, "declined", exclude=True)
        return c

    def fire(self, timer: Timer) -> None:
        """A durable timer is due. Each kind checks that what it was set for still holds, so a timer made stale
        by later events does nothing."""
        c = self.conversations.get(timer.conversation_id)
        if c is None:
            return
        if timer.kind == "offer_expiry":
            if c.status == "offered" and c.offer_id == timer.payload.get("offer_id"):
                self._requeue(c, "offer_timeout", exclude=True)
        elif timer.kind == "no_reply":
            if (c.status == "assigned" and c.agent_id == timer.payload.get("agent_id")
                    and c.assigned_at and c.assigned_at.isoformat() == timer.payload.get("assigned_at")
                    and (c.last_agent_reply_at is None or c.last_agent_reply_at < c.assigned_at)):
                self._requeue(c, "no_reply", exclude=True)
        elif timer.kind == "sla_due" and c.sla_state is not None:
            self._breach(c, timer.payload["metric"])
        elif timer.kind == "sla_warning" and c.sla_state is not None:
            self._warn(c, timer.payload["metric"], int(timer.payload["warn_before_s"]), timer.payload["due_at"])

    # ---- routing pass --------------------------------------------------------------------------------------

    def dispatch(self) -> int:
        """Offer queued conversations, in queue order, to eligible agents. Returns the number of offers."""
        offers = 0
        for w in self._ranked():
            if not any(a.presence == "online" and a.free > 0 for a in self.agents.values()):
                break
            c = self.conversations[w.conversation_id]
            cost = self._cost(c)
            waited = (self.now - c.queued_at).total_seconds() if c.queued_at else 0.0
            preferred = self._preferred(c)
            if preferred is not None:
                agent = self.agents.get(preferred)
                if agent and agent.presence == "online" and agent.free >= cost:
                    self._make_offer(c, agent, c.queue or "continuity", continuity=True)
                    offers += 1
                    continue
                if agent and agent.presence != "offline" and waited < self.config.continuity.wait_s:
                    continue
            views = [self._view(a) for a in self.agents.values()]
            choice = choose_agent(self.workflow.current(c.task(), waited), c.task(), views, cost,
                                  self.config.routing_model, set(c.excluded), self.rr_cursor)
            if choice is None:
                continue
            view, target = choice
            if self.config.routing_model == "round_robin":
                self.rr_cursor += 1
            self._make_offer(c, self.agents[view.agent_id], target.queue, continuity=False)
            offers += 1
        return offers

    def finish(self) -> None:
        """Positions and ETAs of the queue (announcing new arrivals), and the SLA timers of what changed."""
        online = sum(1 for a in self.agents.values() if a.presence == "online")
        ranked = self._ranked()
        per_queue: dict[str, int] = {}
        for w in ranked:
            c = self.conversations[w.conversation_id]
            per_queue[w.queue] = position = per_queue.get(w.queue, 0) + 1
            eta = round(self.rate.eta_s(w.queue, position, self.now, max(online, 1)), 1)
            if c.announce:
                c.announce = False
                c.position, c.eta_s, c.position_sent_at = position, eta, self.now
                self._emit("conversation_queued", c, position=position, eta_s=eta, reason=c.queue_reason)
                self._touch(c)
            elif position != c.position and self._position_due(c, position):
                c.position, c.eta_s, c.position_sent_at = position, eta, self.now
                self._emit("queue_position_changed", c, position=position, eta_s=eta)
                self._touch(c)
        for cid in self.changed:
            self._sla_timers(self.conversations[cid])

    # ---- internals -----------------------------------------------------------------------------------------

    def open_for(self, customer_id: str, channel: str) -> Conversation | None:
        for c in self.conversations.values():
            if c.customer_id == customer_id and c.channel == channel and c.status != "resolved":
                return c
        return None

    def _open(self, cid: str, customer_id: str, channel: str, at: datetime, language: str | None,
              tags: list[str], raise_priority: int = 0) -> Conversation:
        c = Conversation(conversation_id=cid, customer_id=customer_id, channel=channel, opened_at=at,
                         language=language, tags=list(tags), last_customer_at=at)
        c.priority = _priority(tags) + raise_priority
        c.tier = _tagged(tags, "tier")
        c.sentiment = _tagged(tags, "sentiment")
        c.team = _tagged(tags, "team")
        self.conversations[cid] = c
        policy = self.config.sla_policy(c.task())
        if policy is not None:
            c.sla_task = c.task()
            clocks = SlaClocks(policy)
            clocks.opened(at)
            c.sla_state = clocks.to_state()
        self._enqueue(c, at, "new")
        return c

    def _enqueue(self, c: Conversation, at: datetime, reason: str) -> None:
        c.status, c.queued_at, c.queue_reason = "queued", at, reason
        c.agent_id = c.offer_id = c.offer_expires_at = c.assigned_at = None
        c.offer_continuity = False
        c.queue = c.queue if reason in ("escalated",) else self._queue_of(c)
        c.announce = True
        c.position = None
        self._touch(c)

    def _queue_of(self, c: Conversation) -> str:
        if c.escalated:
            return self.config.escalation.queue
        stages = self.workflow.stages(c.task())
        return stages[0].queue if stages else "general"

    def _requeue(self, c: Conversation, reason: str, exclude: bool) -> None:
        from_agent = c.agent_id
        self._release(c)
        if exclude and from_agent and from_agent not in c.excluded:
            c.excluded.append(from_agent)
        if c.prefer_agent_id == from_agent:
            c.prefer_agent_id = None
        self._emit("conversation_reassigned", c, from_agent_id=from_agent, reason=reason)
        # An offer that came to nothing leaves the customer's wait running; after an assignment a new wait starts.
        offer_only = reason in ("offer_timeout", "declined") and c.queued_at is not None
        self._enqueue(c, c.queued_at if offer_only else self.now,
                      {"offer_timeout": "timeout", "declined": "declined"}.get(reason, "reassigned"))

    def _release(self, c: Conversation) -> None:
        if c.status in HOLDING and c.agent_id in self.agents:
            agent = self.agents[c.agent_id]
            agent.used = max(0, agent.used - self._cost(c))
            self.changed_agents.add(agent.agent_id)
            self.released.append(c.conversation_id)

    def _offer(self, offer_id: str, agent_id: str) -> Conversation:
        for c in self.conversations.values():
            if c.offer_id == offer_id:
                if c.agent_id != agent_id:
                    raise DeskError(403, "not_your_offer", "the offer was made to another agent")
                if c.status != "offered":
                    raise DeskError(409, "offer_closed", f"the conversation is {c.status}")
                return c
        raise DeskError(404, "unknown_offer", "no open offer with this id (expired, declined or never made)")

    def _make_offer(self, c: Conversation, agent: Agent, queue: str, continuity: bool) -> None:
        if c.announce:  # routed at once: it was first in its queue with no wait
            c.announce = False
            self._emit("conversation_queued", c, position=1, eta_s=0.0, reason=c.queue_reason)
        c.status, c.agent_id, c.queue = "offered", agent.agent_id, queue
        c.offer_id = str(uuid.uuid4())
        c.offer_expires_at = self.now + timedelta(seconds=self.config.offer_timeout_s)
        c.offer_continuity = continuity
        agent.used += self._cost(c)
        self.changed_agents.add(agent.agent_id)
        self.rate.departed(queue, self.now)
        self._emit("conversation_offered", c, agent_id=agent.agent_id, offer_id=c.offer_id,
                   expires_at=c.offer_expires_at.isoformat(), continuity=continuity)
        if self.config.auto_accept:
            self._assign(c, agent)
        else:
            self.timers.append(Timer(f"offer:{c.offer_id}", c.conversation_id, "offer_expiry", c.offer_expires_at,
                                     {"offer_id": c.offer_id}))
        self._touch(c)

    def _assign(self, c: Conversation, agent: Agent) -> None:
        c.status, c.assigned_at = "assigned", self.now
        agent.last_assigned_at = self.now
        self.changed_agents.add(agent.agent_id)
        waited = (self.now - c.queued_at).total_seconds() if c.queued_at else 0.0
        self.assigned.append((c, agent))
        self._remember(c.customer_id, agent.agent_id, self.now)
        self._emit("conversation_assigned", c, agent_id=agent.agent_id, offer_id=c.offer_id, waited_s=round(waited, 3))
        if self.config.reassign_after_s:
            due = self.now + timedelta(seconds=self.config.reassign_after_s)
            self.timers.append(Timer(f"noreply:{c.conversation_id}:{self.now.isoformat()}", c.conversation_id,
                                     "no_reply", due, {"agent_id": agent.agent_id, "assigned_at": self.now.isoformat()}))
        self._touch(c)

    def _preferred(self, c: Conversation) -> str | None:
        if c.prefer_agent_id and c.prefer_agent_id not in c.excluded:
            return c.prefer_agent_id
        last = self.last_agents.get(c.customer_id)
        if last and last.agent_id not in c.excluded and \
                (self.now - last.at).total_seconds() <= self.config.continuity.window_s:
            return last.agent_id
        return None

    def _remember(self, customer_id: str, agent_id: str, at: datetime) -> None:
        self.last_agents[customer_id] = LastAgent(agent_id, at)
        self.changed_last.add(customer_id)

    def _ranked(self) -> list[Waiting]:
        waiting = [Waiting(c.conversation_id, c.queue or "general", c.priority, c.queued_at or c.opened_at)
                   for c in self.conversations.values() if c.status == "queued"]
        return rank(waiting, self.now, self.config.ageing_s)

    def _position_due(self, c: Conversation, position: int) -> bool:
        if position <= POSITION_ALWAYS_UP_TO or c.position_sent_at is None:
            return True
        return (self.now - c.position_sent_at).total_seconds() >= POSITION_MIN_INTERVAL_S

    def _view(self, a: Agent) -> AgentView:
        return AgentView(agent_id=a.agent_id, presence=a.presence, attributes=a.attributes,
                         capacity_total=a.capacity_total, used=a.used, last_assigned_at=a.last_assigned_at)

    def _cost(self, c: Conversation) -> int:
        return self.config.cost(c.channel)

    def _policy(self, c: Conversation):
        return self.config.sla_policy(c.sla_task or c.task())

    def _sla(self, c: Conversation, change) -> None:
        if c.sla_state is None:
            return
        policy = self._policy(c)
        if policy is None:
            return
        clocks = SlaClocks(policy, c.sla_state)
        change(clocks)
        c.sla_state = clocks.to_state()

    def _sla_timers(self, c: Conversation) -> None:
        if c.sla_state is None or c.status == "resolved":
            return
        policy = self._policy(c)
        if policy is None:
            return
        clocks = SlaClocks(policy, c.sla_state)
        for metric, due in clocks.due().items():
            self.timers.append(Timer(f"due:{c.conversation_id}:{metric}:{due.isoformat()}", c.conversation_id,
                                     "sla_due", due, {"metric": metric, "due_at": due.isoformat()}))
        due_now = clocks.due()
        for metric, before, at in clocks.warnings():
            if at <= self.now or metric not in due_now:
                continue
            self.timers.append(Timer(f"warn:{c.conversation_id}:{metric}:{before}:{due_now[metric].isoformat()}",
                                     c.conversation_id, "sla_warning", at,
                                     {"metric": metric, "warn_before_s": before, "due_at": due_now[metric].isoformat()}))

    def _breach(self, c: Conversation, metric: str) -> None:
        policy = self._policy(c)
        if policy is None:
            return
        clocks = SlaClocks(policy, c.sla_state)
        due = clocks.due().get(metric)
        if not clocks.breached(metric, self.now):
            return
        c.sla_state = clocks.to_state()
        escalation = self.config.escalation
        c.priority += escalation.priority_bump
        escalated_to = None
        if c.status == "queued" and escalation.queue:
            c.escalated = True
            c.queue = escalated_to = escalation.queue
            c.announce = True
        self._emit("sla_breached", c, metric=metric, due_at=due.isoformat() if due else self.now.isoformat(),
                   policy=policy.name, escalated_to_queue=escalated_to)
        self._touch(c)

    def _warn(self, c: Conversation, metric: str, before: int, due_at: str) -> None:
        policy = self._policy(c)
        if policy is None:
            return
        due = SlaClocks(policy, c.sla_state).due().get(metric)
        if due is None or due.isoformat() != due_at:
            return
        self._emit("sla_warning", c, metric=metric, due_at=due_at, warn_before_s=before, policy=policy.name)

    def _emit(self, kind: str, c: Conversation, **data: Any) -> None:
        base = {"conversation_id": c.conversation_id, "customer_id": c.customer_id, "channel": c.channel,
                "queue": c.queue, "priority": c.priority, "at": self.now.isoformat()}
        self.events.append(Emitted(kind, c.conversation_id, c.customer_id, {**base, **data}))

    def _touch(self, c: Conversation) -> None:
        self.changed.add(c.conversation_id)


def _tagged(tags: list[str], key: str) -> str | None:
    for tag in tags:
        if tag.startswith(key + ":"):
            return tag.split(":", 1)[1]
    return None


def _priority(tags: list[str]) -> int:
    """``priority:<n>`` or the words urgent/high/low among the tags; 0 otherwise."""
    value = _tagged(tags, "priority")
    if value is not None and value.lstrip("-").isdigit():
        return int(value)
    words = {"urgent": 3, "high": 2, "low": -1}
    return max((words[t] for t in tags if t in words), default=0)
