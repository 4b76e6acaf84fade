"""The routing state of one tenant as plain values: conversations, agents and the timers they need.

A conversation's lifecycle: ``queued`` → ``offered`` (a reservation for one agent, with a timeout) →
``assigned`` ⇄ ``waiting`` (on the customer) → ``resolved``; a timeout, a decline, an agent going offline or an
agent who does not reply puts it back to ``queued``; a reopen brings a resolved conversation back to ``queued``.
Conversations hold capacity of their agent while offered, assigned or waiting.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any

# Channels on which an inbound interaction opens or continues a conversation that needs an agent.
CONVERSATIONAL = frozenset({"chat", "whatsapp", "sms", "email", "facebook", "instagram", "twitter", "phone",
                            "community"})
HOLDING = ("offered", "assigned", "waiting")
OPEN = ("queued",) + HOLDING

_TIMES = ("opened_at", "queued_at", "offer_expires_at", "assigned_at", "position_sent_at", "last_agent_reply_at",
          "last_customer_at", "resolved_at")


@dataclass
class Conversation:
    conversation_id: str
    customer_id: str
    channel: str
    opened_at: datetime
    status: str = "queued"
    language: str | None = None
    tags: list[str] = field(default_factory=list)
    priority: int = 0
    tier: str | None = None
    sentiment: str | None = None
    team: str | None = None               # the team a ``team:<name>`` tag names (e.g. a detractor follow-up's)
    queue: str | None = None
    queued_at: datetime | None = None
    queue_reason: str = "new"
    agent_id: str | None = None
    offer_id: str | None = None
    offer_expires_at: datetime | None = None
    offer_continuity: bool = False
    assigned_at: datetime | None = None
    excluded: list[str] = field(default_factory=list)
    prefer_agent_id: str | None = None
    escalated: bool = False
    sla_task: dict | None = None          # the task as it was when the SLA policy was chosen
    sla_state: dict | None = None
    position: int | None = None
    eta_s: float | None = None
    position_sent_at: datetime | None = None
    last_agent_reply_at: datetime | None = None
    last_customer_at: datetime | None = None
    resolved_at: datetime | None = None
    announce: bool = False                # queued event still to be emitted (with its position) at the end

    def task(self) -> dict[str, Any]:
        """The attributes workflow and SLA expressions see."""
        return {"channel": self.channel, "language": self.language, "task_language": self.language,
                "tags": list(self.tags), "priority": self.priority, "tier": self.tier, "sentiment": self.sentiment,
                "team": self.team, "customer_id": self.customer_id, "conversation_id": self.conversation_id}

    def to_state(self) -> dict[str, Any]:
        state = asdict(self)
        for name in _TIMES:
            if state[name] is not None:
                state[name] = state[name].isoformat()
        state.pop("announce")
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "Conversation":
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in state.items() if k in known}
        for name in _TIMES:
            if values.get(name) is not None:
                values[name] = datetime.fromisoformat(values[name])
        return cls(**values)


@dataclass
class Agent:
    agent_id: str
    presence: str = "offline"
    name: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    capacity_total: int = 100
    used: int = 0
    last_assigned_at: datetime | None = None

    @property
    def free(self) -> int:
        return self.capacity_total - self.used


@dataclass(frozen=True)
class Timer:
    timer_id: str
    conversation_id: str
    kind: str                 # offer_expiry | no_reply | sla_due | sla_warning
    due_at: datetime
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Emitted:
    """A routing event to publish: ``kind`` is the event's short name (e.g. ``conversation_assigned``)."""

    kind: str
    conversation_id: str
    customer_id: str
    data: dict[str, Any]
