"""Routing contracts: what upstream systems report about agents and conversations, and what routing decides.

Upstream systems publish agent profiles and presence to ``touchpoint.agents.v1`` and conversation activity to
``touchpoint.conversations.v1``; the routing service consumes both. Routing publishes its decisions about each
conversation to ``touchpoint.routing.v1`` (keyed by customer id), which the timeline and downstream systems read.

Readers are tolerant (unknown fields are ignored) so that optional fields can be added within a version; a
field is never renamed or retyped within a version. Every instant is timezone-aware: a naive datetime is
rejected. Durations are seconds.
"""

from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from shared.contracts import types
from shared.contracts.interaction import Channel

Presence = Literal["online", "away", "offline"]
SlaMetric = Literal["first_response", "next_response", "resolution"]
SlaStatus = Literal["active", "hit", "missed", "active_with_misses"]
QueueReason = Literal["new", "timeout", "declined", "reassigned", "reopened", "escalated"]
ReassignReason = Literal["offer_timeout", "declined", "no_reply", "agent_offline"]
SkillLevel = Annotated[int, Field(strict=True, ge=1, le=10)]
AttributeValue = str | int | float | bool | list[str]
Id = Annotated[str, Field(min_length=1, max_length=200)]


class AgentProfileUpdatedV1(BaseModel):
    """``touchpoint.agent.profile_updated.v1``: an agent's routing profile as it is now (replaces the previous one).

    ``skills`` maps a skill name to a level from 1 (novice) to 10 (expert); ``capacity_total`` is the work the
    agent can hold at once, in the units of the tenant's per-channel capacity costs.
    """

    model_config = ConfigDict(extra="ignore")

    agent_id: Id
    name: str | None = Field(default=None, max_length=200)
    skills: dict[str, SkillLevel]
    languages: list[str]
    teams: list[str]
    capacity_total: int = Field(default=100, ge=1, le=1000)
    attributes: dict[str, AttributeValue] = {}


class AgentPresenceChangedV1(BaseModel):
    """``touchpoint.agent.presence_changed.v1``: an agent went online, away or offline at ``changed_at``."""

    model_config = ConfigDict(extra="ignore")

    agent_id: Id
    presence: Presence
    changed_at: AwareDatetime


class ConversationActivity(BaseModel):
    """What every ``touchpoint.conversation.*`` event carries: which conversation, which agent (if any), when."""

    model_config = ConfigDict(extra="ignore")

    conversation_id: Id
    agent_id: Id | None = None
    occurred_at: AwareDatetime


class ConversationAgentRepliedV1(ConversationActivity):
    """``touchpoint.conversation.agent_replied.v1``: an agent answered the customer."""


class ConversationCustomerRepliedV1(ConversationActivity):
    """``touchpoint.conversation.customer_replied.v1``: the customer wrote again."""


class ConversationWaitingOnCustomerV1(ConversationActivity):
    """``touchpoint.conversation.waiting_on_customer.v1``: the conversation waits for the customer (SLA clocks pause)."""


class ConversationResolvedV1(ConversationActivity):
    """``touchpoint.conversation.resolved.v1``: the conversation was resolved upstream."""

    resolution: str | None = Field(default=None, max_length=1000)


class ConversationReopenedV1(ConversationActivity):
    """``touchpoint.conversation.reopened.v1``: a resolved conversation is open again.

    ``prefer_agent_id`` asks routing to offer it to that agent first.
    """

    reason: str | None = Field(default=None, max_length=1000)
    prefer_agent_id: Id | None = None


class RoutingEventBase(BaseModel):
    """What every ``touchpoint.routing.*`` event carries: the conversation, its customer and channel, the queue
    and priority it has at ``at`` (the instant routing decided)."""

    model_config = ConfigDict(extra="ignore")

    conversation_id: Id
    customer_id: Id
    channel: Channel
    queue: str | None = Field(default=None, max_length=200)
    priority: int
    at: AwareDatetime


class ConversationQueuedV1(RoutingEventBase):
    """``touchpoint.routing.conversation_queued.v1``: the conversation waits in ``queue`` at 1-based ``position``.

    ``eta_s`` is the expected wait in seconds (None while there is no estimate); ``reason`` says why it is
    (back) in a queue.
    """

    position: int = Field(ge=1)
    eta_s: float | None = Field(default=None, ge=0)
    reason: QueueReason


class ConversationOfferedV1(RoutingEventBase):
    """``touchpoint.routing.conversation_offered.v1``: offered to ``agent_id`` until ``expires_at``.

    ``continuity`` is true when the agent was chosen because they handled this customer recently.
    """

    agent_id: Id
    offer_id: Id
    expires_at: AwareDatetime
    continuity: bool = False


class ConversationAssignedV1(RoutingEventBase):
    """``touchpoint.routing.conversation_assigned.v1``: ``agent_id`` accepted offer ``offer_id`` after the
    conversation waited ``waited_s`` seconds."""

    agent_id: Id
    offer_id: Id
    waited_s: float = Field(ge=0)


class ConversationReassignedV1(RoutingEventBase):
    """``touchpoint.routing.conversation_reassigned.v1``: taken away from ``from_agent_id`` for ``reason``."""

    from_agent_id: Id
    reason: ReassignReason


class QueuePositionChangedV1(RoutingEventBase):
    """``touchpoint.routing.queue_position_changed.v1``: a waiting conversation moved in its queue.

    Frequent and transient: for live displays, not recorded on the timeline.
    """

    position: int = Field(ge=1)
    eta_s: float | None = Field(default=None, ge=0)


class SlaWarningV1(RoutingEventBase):
    """``touchpoint.routing.sla_warning.v1``: ``metric`` of SLA ``policy`` falls due at ``due_at``, which is
    ``warn_before_s`` seconds of business time away."""

    metric: SlaMetric
    due_at: AwareDatetime
    warn_before_s: int = Field(ge=0)
    policy: str = Field(max_length=200)


class SlaBreachedV1(RoutingEventBase):
    """``touchpoint.routing.sla_breached.v1``: ``metric`` of SLA ``policy`` was missed at ``due_at``.

    ``escalated_to_queue`` names the queue the conversation was moved to, if the tenant escalates breaches.
    """

    metric: SlaMetric
    due_at: AwareDatetime
    policy: str = Field(max_length=200)
    escalated_to_queue: str | None = Field(default=None, max_length=200)


class RoutingConversationResolvedV1(RoutingEventBase):
    """``touchpoint.routing.conversation_resolved.v1``: routing stopped handling the conversation; ``sla_status``
    is the final status of its SLA clocks (None when no SLA policy applied)."""

    agent_id: Id | None = None
    sla_status: SlaStatus | None = None


AGENT_MODELS: dict[str, type[BaseModel]] = {
    types.AGENT_PROFILE_UPDATED: AgentProfileUpdatedV1,
    types.AGENT_PRESENCE_CHANGED: AgentPresenceChangedV1,
}
CONVERSATION_MODELS: dict[str, type[ConversationActivity]] = {
    types.CONVERSATION_AGENT_REPLIED: ConversationAgentRepliedV1,
    types.CONVERSATION_CUSTOMER_REPLIED: ConversationCustomerRepliedV1,
    types.CONVERSATION_WAITING_ON_CUSTOMER: ConversationWaitingOnCustomerV1,
    types.CONVERSATION_RESOLVED: ConversationResolvedV1,
    types.CONVERSATION_REOPENED: ConversationReopenedV1,
}
ROUTING_MODELS: dict[str, type[RoutingEventBase]] = {
    types.ROUTING_CONVERSATION_QUEUED: ConversationQueuedV1,
    types.ROUTING_CONVERSATION_OFFERED: ConversationOfferedV1,
    types.ROUTING_CONVERSATION_ASSIGNED: ConversationAssignedV1,
    types.ROUTING_CONVERSATION_REASSIGNED: ConversationReassignedV1,
    types.ROUTING_QUEUE_POSITION_CHANGED: QueuePositionChangedV1,
    types.ROUTING_SLA_WARNING: SlaWarningV1,
    types.ROUTING_SLA_BREACHED: SlaBreachedV1,
    types.ROUTING_CONVERSATION_RESOLVED: RoutingConversationResolvedV1,
}

