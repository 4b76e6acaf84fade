"""Downstream contracts published by the timeline service."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from shared.contracts.interaction import Channel, Direction, Identifier


class TimelineEntryAddedV1(BaseModel):
    """``touchpoint.timeline.entry_added.v1`` on ``touchpoint.timeline.v1``, keyed by customer id.

    ``entry_id`` is stable (derived from the recorded event's ``source`` and ``id``) and is also the CloudEvents
    ``id``, so a consumer can de-duplicate a redelivery.

    Personal fields are sealed on the topic: an interaction's ``subject`` and ``text`` travel encrypted in
    ``data.sealed`` under the data key named by the ``ce_sealkey`` header, which ``GET /v1/data-keys/{kid}`` of
    the timeline API hands out (scope ``read``) until the customer is erased (then 410, and the entry can no
    longer be opened by anyone). This model describes the entry once opened.

    ``kind`` is ``interaction`` for a customer interaction, which always has a ``direction``, or the short name
    of a routing event (``routing.conversation_queued``, ``routing.conversation_offered``,
    ``routing.conversation_assigned``, ``routing.conversation_reassigned``, ``routing.sla_warning``,
    ``routing.sla_breached``, ``routing.conversation_resolved``), which has no ``direction`` and carries the
    routing event's own fields (queue, priority, position, reason, metric, ...) in ``details``, or
    ``notification`` for an event of a notification to the customer, which carries ``details.event`` (scheduled,
    held, sent, delivered, failed, suppressed, follow_up_answered) and the notification event's other fields in
    ``details``; only a sent notification has a direction (``outbound``), and ``channel`` is ``other`` when the
    notification has no channel that is a timeline channel (``details.channel`` has the notification's own), or
    ``feedback`` for a feedback event about the customer, which carries ``details.event`` (invited, suppressed,
    responded, detractor_detected, loop_closed) and the feedback event's other fields in ``details``; only a
    response has a direction (``inbound``), and ``channel`` follows the notification rule.
    """

    model_config = ConfigDict(extra="ignore")

    entry_id: str
    customer_id: str
    kind: str
    occurred_at: datetime
    channel: Channel
    direction: Direction | None = None
    source: str
    event_id: str
    conversation_id: str | None = None
    case_id: str | None = None
    subject: str | None = None
    text: str | None = None
    language: str | None = None
    agent_id: str | None = None
    tags: list[str] = []
    details: dict[str, Any] = {}


class CustomerSnapshotV1(BaseModel):
    """``touchpoint.customer.snapshot.v1`` on the compacted ``touchpoint.customers.v1``.

    The latest profile of a customer. A record with a null value (tombstone) under a customer id means the
    id no longer exists (merged away or erased); ``merged_into`` is carried by the merge's last snapshot.
    """

    model_config = ConfigDict(extra="ignore")

    customer_id: str
    identifiers: list[Identifier]
    channels: list[str]
    first_contact_at: datetime | None
    last_contact_at: datetime | None
    entry_count: int
    merged_ids: list[str] = []
