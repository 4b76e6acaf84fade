"""What a timeline entry holds, for each kind of event the timeline records.

An entry is identified by (tenant, source, event id) of the event it records: ``entry_id_for`` derives the
stable entry id from them, so a redelivered or replayed event maps onto the row it already has. The payload is
the ``touchpoint.timeline.entry_added.v1`` data without ``customer_id``, which is added when read because
merges and splits move entries between customers.

Kinds
- ``interaction``: a resolved interaction; its identity is the upstream ``source`` and ``event_id`` it carries,
  its identifiers decide where a split moves it. It counts as a contact in the customer's profile.
- ``routing.<event>`` (e.g. ``routing.conversation_assigned``): a routing decision; its identity is the routing
  event's own CloudEvents ``source`` and ``id``, its type-specific fields go to ``details``. It carries no
  identifiers (a split never moves it) and is not a contact, so profiles do not count it.
- ``notification``: one event of a notification to the customer (scheduled, held, sent, delivered, failed,
  suppressed, follow-up answered); its identity is the notification event's own CloudEvents ``source`` and
  ``id``. ``details`` holds the event's data without the fields the entry carries itself (customer, instant,
  conversation, case, agent, language), plus ``event``: which of those events it was (``sent``, ...). Only a
  sent message has a direction (``outbound``). The entry's ``channel`` is the notification's channel when the
  timeline knows it as a channel, else ``other`` (no channel yet, or ``webhook``); ``details.channel`` always
  holds the notification's own value. Like a routing entry it carries no identifiers and is not a contact.
- ``feedback``: one event of the feedback service about the customer (invited, suppressed, responded,
  detractor_detected, loop_closed); its identity is the feedback event's own CloudEvents ``source`` and ``id``.
  ``details`` holds the event's data without the fields the entry carries itself, plus ``event`` (``responded``,
  ...). Only a response has a direction (``inbound``: the customer answered). The entry's ``channel`` follows the
  notification rule (``other`` unless the event names a timeline channel). No identifiers, not a contact.
  Product alerts name no customer and are not recorded.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, get_args

import orjson

from shared.cloudevents import CloudEvent
from shared.contracts import types
from shared.contracts.feedback import FeedbackEvent
from shared.contracts.interaction import Channel, InteractionResolvedV1
from shared.contracts.notification import NotificationEvent
from shared.contracts.routing import RoutingEventBase
from shared.contracts.types import short_name
from shared.ids import uuid5

NAMESPACE = uuid.UUID("d2c9b7a1-4e3f-4a6b-8c5d-1f2e3a4b5c6d")
INTERACTION = "interaction"
ENTRY_FIELDS = ("channel", "direction", "source", "event_id", "conversation_id", "case_id", "subject", "text",
                "language", "agent_id", "tags")
ROUTING_COMMON = {"conversation_id", "customer_id", "channel", "at", "agent_id"}
NOTIFICATION = "notification"
NOTIFICATION_COMMON = {"customer_id", "at", "conversation_id", "case_id", "agent_id", "language"}
FEEDBACK = "feedback"
FEEDBACK_COMMON = NOTIFICATION_COMMON
TIMELINE_CHANNELS = frozenset(get_args(Channel))


def entry_id_for(tenant: str, source: str, event_id: str) -> str:
    return uuid5(NAMESPACE, f"entry\x00{tenant}\x00{source}\x00{event_id}")


@dataclass(frozen=True)
class Entry:
    """One event to record on a customer's timeline, before its owner is known.

    ``customer_id`` is the customer the event named; the projection moves it to the survivor of any merge.
    """

    source: str
    event_id: str
    customer_id: str
    occurred_at: datetime
    kind: str
    channel: str
    identifiers: tuple[str, ...]
    fields: dict[str, Any]
    sealkey: str | None = None  # the data key the event's personal fields were sealed under (shared.vault)

    def entry_id(self, tenant: str) -> str:
        return entry_id_for(tenant, self.source, self.event_id)

    def payload(self, tenant: str) -> str:
        """The entry as stored and published, without ``customer_id``."""
        data = dict(self.fields, entry_id=self.entry_id(tenant), kind=self.kind,
                    occurred_at=self.occurred_at.isoformat())
        return orjson.dumps(data).decode()


def interaction_entry(it: InteractionResolvedV1, sealkey: str | None = None) -> Entry:
    return Entry(
        source=it.source, event_id=it.event_id, customer_id=it.customer_id, occurred_at=it.occurred_at,
        kind=INTERACTION, channel=it.channel, identifiers=tuple(f"{i.type}:{i.value}" for i in it.identifiers),
        fields={name: getattr(it, name) for name in ENTRY_FIELDS}, sealkey=sealkey,
    )


def routing_entry(event: CloudEvent, decision: RoutingEventBase) -> Entry:
    """The entry recording routing event ``event`` (whose validated data is ``decision``)."""
    fields = {name: None for name in ENTRY_FIELDS}
    fields.update(source=event.source, event_id=event.id, channel=decision.channel, tags=[],
                  conversation_id=decision.conversation_id, agent_id=getattr(decision, "agent_id", None),
                  details=decision.model_dump(mode="json", exclude=ROUTING_COMMON))
    return Entry(
        source=event.source, event_id=event.id, customer_id=decision.customer_id, occurred_at=decision.at,
        kind=short_name(event.type), channel=decision.channel, identifiers=(), fields=fields,
    )


def notification_entry(event: CloudEvent, notification: NotificationEvent) -> Entry:
    """The entry recording notification event ``event`` (whose validated data is ``notification``)."""
    channel = getattr(notification, "channel", None)
    timeline_channel = channel if channel in TIMELINE_CHANNELS else "other"
    fields = {name: getattr(notification, name, None) for name in ENTRY_FIELDS}
    fields.update(source=event.source, event_id=event.id, channel=timeline_channel, tags=[],
                  direction="outbound" if event.type == types.NOTIFICATION_SENT else None,
                  details={"event": short_name(event.type).removeprefix("notification."),
                           **notification.model_dump(mode="json", exclude=NOTIFICATION_COMMON)})
    return Entry(
        source=event.source, event_id=event.id, customer_id=notification.customer_id, occurred_at=notification.at,
        kind=NOTIFICATION, channel=timeline_channel, identifiers=(), fields=fields,
    )


def feedback_entry(event: CloudEvent, feedback: FeedbackEvent) -> Entry:
    """The entry recording feedback event ``event`` (whose validated data is ``feedback``)."""
    channel = getattr(feedback, "channel", None)
    timeline_channel = channel if channel in TIMELINE_CHANNELS else "other"
    fields = {name: getattr(feedback, name, None) for name in ENTRY_FIELDS}
    fields.update(source=event.source, event_id=event.id, channel=timeline_channel, tags=[],
                  direction="inbound" if event.type == types.FEEDBACK_RESPONDED else None,
                  details={"event": short_name(event.type).removeprefix("feedback."),
                           **feedback.model_dump(mode="json", exclude=FEEDBACK_COMMON)})
    return Entry(
        source=event.source, event_id=event.id, customer_id=feedback.customer_id, occurred_at=feedback.at,
        kind=FEEDBACK, channel=timeline_channel, identifiers=(), fields=fields,
    )
