"""CloudEvents ``type`` names, versioned as ``touchpoint.<domain>.<event>.v<major>``."""

INTERACTION_OCCURRED = "touchpoint.interaction.occurred.v1"
INTERACTION_INGESTED = "touchpoint.interaction.ingested.v1"
INTERACTION_RESOLVED = "touchpoint.interaction.resolved.v1"
CUSTOMERS_MERGED = "touchpoint.identity.customers_merged.v1"
CUSTOMER_SPLIT = "touchpoint.identity.customer_split.v1"
CUSTOMER_ERASED = "touchpoint.identity.customer_erased.v1"
TIMELINE_ENTRY_ADDED = "touchpoint.timeline.entry_added.v1"
CUSTOMER_SNAPSHOT = "touchpoint.customer.snapshot.v1"

AGENT_PROFILE_UPDATED = "touchpoint.agent.profile_updated.v1"
AGENT_PRESENCE_CHANGED = "touchpoint.agent.presence_changed.v1"
CONVERSATION_AGENT_REPLIED = "touchpoint.conversation.agent_replied.v1"
CONVERSATION_CUSTOMER_REPLIED = "touchpoint.conversation.customer_replied.v1"
CONVERSATION_WAITING_ON_CUSTOMER = "touchpoint.conversation.waiting_on_customer.v1"
CONVERSATION_RESOLVED = "touchpoint.conversation.resolved.v1"
CONVERSATION_REOPENED = "touchpoint.conversation.reopened.v1"
ROUTING_CONVERSATION_QUEUED = "touchpoint.routing.conversation_queued.v1"
ROUTING_CONVERSATION_OFFERED = "touchpoint.routing.conversation_offered.v1"
ROUTING_CONVERSATION_ASSIGNED = "touchpoint.routing.conversation_assigned.v1"
ROUTING_CONVERSATION_REASSIGNED = "touchpoint.routing.conversation_reassigned.v1"
ROUTING_QUEUE_POSITION_CHANGED = "touchpoint.routing.queue_position_changed.v1"
ROUTING_SLA_WARNING = "touchpoint.routing.sla_warning.v1"
ROUTING_SLA_BREACHED = "touchpoint.routing.sla_breached.v1"
ROUTING_CONVERSATION_RESOLVED = "touchpoint.routing.conversation_resolved.v1"


def short_name(event_type: str) -> str:
    """``touchpoint.routing.sla_breached.v1`` → ``routing.sla_breached``: the type without prefix and version."""
    return event_type.removeprefix("touchpoint.").rsplit(".v", 1)[0]
