"""What the timeline records for a routing event, a notification event, a feedback event and an interaction,
from the contract examples."""

from __future__ import annotations

import json

import orjson
import pytest

from services.timeline.entries import feedback_entry, interaction_entry, notification_entry, routing_entry
from shared.cloudevents import from_structured
from shared.contracts import EXAMPLES_DIR, types
from shared.contracts.feedback import FEEDBACK_MODELS
from shared.contracts.interaction import InteractionResolvedV1
from shared.contracts.notification import NOTIFICATION_MODELS
from shared.contracts.routing import ROUTING_MODELS
from shared.contracts.timeline import TimelineEntryAddedV1

pytestmark = pytest.mark.unit
TENANT = "example"
CUSTOMER_FEEDBACK = sorted(set(FEEDBACK_MODELS) - {types.FEEDBACK_PRODUCT_ALERT})


def example(event_type: str):
    return from_structured(json.loads((EXAMPLES_DIR / f"{event_type}.json").read_text()))


def published(entry) -> TimelineEntryAddedV1:
    """The entry as a downstream consumer reads it (``customer_id`` is added when read)."""
    data = orjson.loads(entry.payload(TENANT))
    return TimelineEntryAddedV1.model_validate({**data, "customer_id": entry.customer_id})


@pytest.mark.parametrize("event_type", sorted(ROUTING_MODELS))
def test_a_routing_event_becomes_an_entry_of_its_kind(event_type):
    event = example(event_type)
    decision = ROUTING_MODELS[event_type].model_validate(event.data)
    entry = routing_entry(event, decision)
    read = published(entry)
    assert read.kind == "routing." + event_type.split(".")[2]
    assert (read.channel, read.customer_id, read.conversation_id) == (
        decision.channel, decision.customer_id, decision.conversation_id)
    assert (read.source, read.event_id, read.occurred_at) == (event.source, event.id, decision.at)
    assert read.direction is None and entry.identifiers == ()
    assert read.details["priority"] == decision.priority and "customer_id" not in read.details
    assert read.entry_id == routing_entry(event, decision).entry_id(TENANT), "stable across redeliveries"


def test_routing_details_carry_the_decision():
    event = example(types.ROUTING_CONVERSATION_ASSIGNED)
    read = published(routing_entry(event, ROUTING_MODELS[event.type].model_validate(event.data)))
    assert read.agent_id == "agent-17"
    assert read.details == {"queue": "billing", "priority": 10, "offer_id": "offer-5f1c", "waited_s": 111.8}
    event = example(types.ROUTING_SLA_BREACHED)
    read = published(routing_entry(event, ROUTING_MODELS[event.type].model_validate(event.data)))
    assert read.details["due_at"] == "2026-11-20T11:00:00Z" and read.details["escalated_to_queue"] == "supervisors"


def test_an_interaction_entry_keeps_its_upstream_identity_and_direction():
    event = example(types.INTERACTION_RESOLVED)
    it = InteractionResolvedV1.model_validate(event.data)
    entry = interaction_entry(it)
    read = published(entry)
    assert (read.kind, read.direction, read.source, read.event_id) == ("interaction", "inbound", it.source, it.event_id)
    assert entry.identifiers == ("email:anna.berg@example.com", "phone:+49301234567", "contract_id:C-100200")
    assert "details" not in orjson.loads(entry.payload(TENANT))


def test_entry_ids_differ_by_tenant_and_event():
    event = example(types.ROUTING_SLA_WARNING)
    entry = routing_entry(event, ROUTING_MODELS[event.type].model_validate(event.data))
    assert len({entry.entry_id("a"), entry.entry_id("b")}) == 2


@pytest.mark.parametrize("event_type", sorted(NOTIFICATION_MODELS))
def test_a_notification_event_becomes_a_notification_entry(event_type):
    event = example(event_type)
    notification = NOTIFICATION_MODELS[event_type].model_validate(event.data)
    entry = notification_entry(event, notification)
    read = published(entry)
    assert read.kind == "notification" and read.details["event"] == event_type.split(".")[2]
    assert (read.customer_id, read.source, read.event_id, read.occurred_at) == (
        notification.customer_id, event.source, event.id, notification.at)
    assert read.direction == ("outbound" if event_type == types.NOTIFICATION_SENT else None)
    assert read.details["notification_id"] == notification.notification_id
    assert read.details["trigger_instance"] == notification.trigger_instance
    assert not {"customer_id", "at"} & set(read.details) and entry.identifiers == ()
    assert read.entry_id == notification_entry(event, notification).entry_id(TENANT), "stable across redeliveries"


def test_notification_details_carry_the_event_and_the_entry_its_links():
    event = example(types.NOTIFICATION_SENT)
    read = published(notification_entry(event, NOTIFICATION_MODELS[event.type].model_validate(event.data)))
    assert (read.channel, read.language) == ("whatsapp", "de")
    assert read.details == {
        "event": "sent", "notification_id": "6e1b2c3d-4f5a-4b6c-9d7e-8f9a0b1c2d3e", "trigger": "case_follow_up",
        "trigger_instance": "case:case-5207:resolved:helpdesk-case-5207-resolved-1", "purpose": "service",
        "channel": "whatsapp", "provider_message_id": "wamid.HBgLNDkzMDEyMzQ1NjcVAgARGBI",
        "consent_id": "consent-77120", "template": "case_follow_up_v1", "attempt": 1, "fallback_from": None}
    event = example(types.NOTIFICATION_FOLLOW_UP_ANSWERED)
    read = published(notification_entry(event, NOTIFICATION_MODELS[event.type].model_validate(event.data)))
    assert (read.conversation_id, read.case_id, read.agent_id) == ("conv-912", "case-5207", "agent-17")
    assert read.details["solved"] is False and "conversation_id" not in read.details


@pytest.mark.parametrize(("channel", "entry_channel"), [("sms", "sms"), ("webhook", "other"), (None, "other")])
def test_a_notification_without_a_timeline_channel_is_on_channel_other(channel, entry_channel):
    event = example(types.NOTIFICATION_SCHEDULED)
    notification = NOTIFICATION_MODELS[event.type].model_validate({**event.data, "channel": channel})
    read = published(notification_entry(event, notification))
    assert (read.channel, read.details["channel"]) == (entry_channel, channel)


@pytest.mark.parametrize("event_type", CUSTOMER_FEEDBACK)
def test_a_feedback_event_becomes_a_feedback_entry(event_type):
    event = example(event_type)
    feedback = FEEDBACK_MODELS[event_type].model_validate(event.data)
    entry = feedback_entry(event, feedback)
    read = published(entry)
    assert read.kind == "feedback" and read.details["event"] == event_type.split(".")[2]
    assert (read.customer_id, read.source, read.event_id, read.occurred_at) == (
        feedback.customer_id, event.source, event.id, feedback.at)
    assert read.direction == ("inbound" if event_type == types.FEEDBACK_RESPONDED else None)
    assert read.details["survey_id"] == feedback.survey_id
    assert read.details["invitation_id"] == feedback.invitation_id
    assert not {"customer_id", "at"} & set(read.details) and entry.identifiers == ()
    assert read.entry_id == feedback_entry(event, feedback).entry_id(TENANT), "stable across redeliveries"


def test_feedback_details_carry_the_event_and_the_entry_its_links():
    event = example(types.FEEDBACK_DETRACTOR_DETECTED)
    read = published(feedback_entry(event, FEEDBACK_MODELS[event.type].model_validate(event.data)))
    assert (read.channel, read.conversation_id, read.agent_id, read.language) == ("whatsapp", "conv-912", "agent-17", "de")
    assert read.details == {
        "event": "detractor_detected", "invitation_id": "5b7d9f1a-2c3e-4f5a-8b6c-7d8e9f0a1b2c",
        "survey_id": "csat_after_case", "response_id": "5b7d9f1a-2c3e-4f5a-8b6c-7d8e9f0a1b2c", "metric": "csat",
        "score": 2, "follow_up_conversation_id": "feedback-followup:5b7d9f1a-2c3e-4f5a-8b6c-7d8e9f0a1b2c",
        "priority": 10, "sla_s": 172800, "due_at": "2026-11-23T18:05:00Z", "team": "billing", "channel": "whatsapp"}
    event = example(types.FEEDBACK_INVITED)
    read = published(feedback_entry(event, FEEDBACK_MODELS[event.type].model_validate(event.data)))
    assert (read.case_id, read.direction) == ("case-5207", None)
    assert read.details["link"].startswith("http://localhost:8006/v1/surveys/") and "case_id" not in read.details


@pytest.mark.parametrize(("channel", "entry_channel"), [("email", "email"), ("webhook", "other"), (None, "other")])
def test_feedback_without_a_timeline_channel_is_on_channel_other(channel, entry_channel):
    event = example(types.FEEDBACK_RESPONDED)
    feedback = FEEDBACK_MODELS[event.type].model_validate({**event.data, "channel": channel})
    read = published(feedback_entry(event, feedback))
    assert (read.channel, read.details["channel"]) == (entry_channel, channel)
