"""Notification contracts: what the notification service decided and did about each message to a customer.

The notification service publishes these to ``touchpoint.notification.v1`` (keyed by customer id); the timeline
records them, routing reopens conversations the customer says are not solved, and downstream systems may read
them. One notification (``notification_id``) is one message a trigger wanted to send for one trigger instance
(``trigger_instance``, e.g. ``case:C-1:resolved:<event id>``); its events follow the order scheduled → (held →)
sent → delivered, or end in suppressed or failed. A failed attempt that falls back to another channel is
followed by a sent event on ``next_channel``.

Readers are tolerant (unknown fields are ignored) so that optional fields can be added within a version; a
field is never renamed or retyped within a version. Every instant is timezone-aware: a naive datetime is
rejected.
"""

from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from shared.contracts import types
from shared.contracts.business import Id, Text
from shared.contracts.consent import ContactChannel, Purpose

Code = Annotated[str, Field(min_length=1, max_length=200)]


class NotificationEvent(BaseModel):
    """What every ``touchpoint.notification.*`` event carries: the notification, its customer, the trigger that
    wanted it and the instance of that trigger, its purpose, and the instant ``at`` the service decided or
    observed what the event reports."""

    model_config = ConfigDict(extra="ignore")

    notification_id: Id
    customer_id: Id
    trigger: str = Field(min_length=1, max_length=200)
    trigger_instance: str = Field(min_length=1, max_length=500)
    purpose: Purpose
    at: AwareDatetime


class NotificationScheduledV1(NotificationEvent):
    """``touchpoint.notification.scheduled.v1``: the notification will be decided at ``due_at``; ``channel`` is
    the channel planned first when already known."""

    due_at: AwareDatetime
    channel: ContactChannel | None = None


class NotificationHeldV1(NotificationEvent):
    """``touchpoint.notification.held.v1``: not sent now for ``reason`` (e.g. ``quiet_hours``); decided again at
    ``release_at``."""

    reason: Code
    release_at: AwareDatetime


class NotificationSentV1(NotificationEvent):
    """``touchpoint.notification.sent.v1``: the provider accepted the message on ``channel``.

    ``consent_id`` is the consent record the send relied on; ``template`` the approved WhatsApp template name
    when the message went out as one (outside the 24-hour window), else None; ``attempt`` counts sends of this
    notification from 1; ``fallback_from`` names the channel that failed before this one.
    """

    channel: ContactChannel
    provider_message_id: Code
    consent_id: Id
    language: str | None = Field(default=None, max_length=35)
    template: str | None = Field(default=None, max_length=200)
    attempt: int = Field(default=1, ge=1)
    fallback_from: ContactChannel | None = None


class NotificationDeliveredV1(NotificationEvent):
    """``touchpoint.notification.delivered.v1``: the provider reported the message delivered to the customer."""

    channel: ContactChannel
    provider_message_id: Code


class NotificationFailedV1(NotificationEvent):
    """``touchpoint.notification.failed.v1``: sending on ``channel`` failed for ``reason``.

    ``permanent`` is true when retrying the same channel cannot help (rejected address, bounce); ``next_channel``
    is the channel tried next, None when the notification gives up.
    """

    channel: ContactChannel
    reason: Text
    permanent: bool
    next_channel: ContactChannel | None = None


class NotificationSuppressedV1(NotificationEvent):
    """``touchpoint.notification.suppressed.v1``: the notification will not be sent.

    ``step`` is the decision step that stopped it (consent, preferences, support, caps, channel_window, ...),
    ``reason`` its machine code (no_consent, consent_withdrawn, topic_opted_out, frequency_cap:<rule>, ...) and
    ``detail`` one human sentence.
    """

    step: Code
    reason: Code
    detail: Text


class FollowUpAnsweredV1(NotificationEvent):
    """``touchpoint.notification.follow_up_answered.v1``: the customer answered a follow-up ("is your problem
    solved?") on ``channel``.

    ``solved: false`` asks routing to reopen ``conversation_id`` and offer it to ``agent_id`` (the agent who
    resolved it) first; ``case_id`` names the upstream case the follow-up was about.
    """

    solved: bool
    conversation_id: Id | None = None
    case_id: Id | None = None
    agent_id: Id | None = None
    channel: ContactChannel | None = None


NOTIFICATION_MODELS: dict[str, type[NotificationEvent]] = {
    types.NOTIFICATION_SCHEDULED: NotificationScheduledV1,
    types.NOTIFICATION_HELD: NotificationHeldV1,
    types.NOTIFICATION_SENT: NotificationSentV1,
    types.NOTIFICATION_DELIVERED: NotificationDeliveredV1,
    types.NOTIFICATION_FAILED: NotificationFailedV1,
    types.NOTIFICATION_SUPPRESSED: NotificationSuppressedV1,
    types.NOTIFICATION_FOLLOW_UP_ANSWERED: FollowUpAnsweredV1,
}
