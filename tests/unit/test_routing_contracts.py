"""Routing contracts: the models accept their examples, reject what the contract forbids, and the registry puts
every type on the topic the design names."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from shared import topics
from shared.contracts import EXAMPLES_DIR, MODELS, types
from shared.contracts.interaction import Channel
from shared.contracts.routing import (
    AGENT_MODELS,
    CONVERSATION_MODELS,
    ROUTING_MODELS,
    AgentProfileUpdatedV1,
    ConversationQueuedV1,
    RoutingEventBase,
)

pytestmark = pytest.mark.unit
INSTANTS = {"changed_at", "occurred_at", "at", "expires_at", "due_at"}


def data(event_type: str) -> dict:
    return json.loads((EXAMPLES_DIR / f"{event_type}.json").read_text())["data"]


def test_each_topic_carries_exactly_its_models():
    assert set(topics.AGENTS.event_types) == set(AGENT_MODELS)
    assert set(topics.CONVERSATIONS.event_types) == set(CONVERSATION_MODELS)
    assert set(topics.ROUTING.event_types) == set(ROUTING_MODELS)
    assert (set(AGENT_MODELS) | set(CONVERSATION_MODELS) | set(ROUTING_MODELS)) <= set(MODELS)


def test_topics_name_their_producers_consumers_and_keys():
    assert (topics.AGENTS.producer, topics.AGENTS.consumers, topics.AGENTS.public) == (
        "upstream", ("routing", "feedback"), True)
    assert (topics.CONVERSATIONS.producer, topics.CONVERSATIONS.consumers, topics.CONVERSATIONS.public) == (
        "upstream", ("routing",), True)
    assert topics.AGENTS.partitions == topics.CONVERSATIONS.partitions == 6
    assert (topics.AGENTS.key, topics.CONVERSATIONS.key) == ("agent id", "conversation id")
    routing = topics.ROUTING
    assert (routing.producer, routing.consumers, routing.public, routing.key) == (
        "routing", ("timeline", "notification", "feedback", "downstream"), True, "customer id")


@pytest.mark.parametrize("event_type", sorted({**AGENT_MODELS, **CONVERSATION_MODELS, **ROUTING_MODELS}))
def test_naive_instants_are_rejected(event_type):
    example = data(event_type)
    for name in INSTANTS & set(example):
        if example[name] is not None:
            with pytest.raises(ValidationError):
                MODELS[event_type].model_validate({**example, name: "2026-11-20T10:00:00"})


@pytest.mark.parametrize("event_type", sorted({**AGENT_MODELS, **CONVERSATION_MODELS, **ROUTING_MODELS}))
def test_readers_ignore_unknown_fields(event_type):
    model = MODELS[event_type].model_validate({**data(event_type), "added_later": {"x": 1}})
    assert "added_later" not in model.model_dump()


def test_routing_events_use_the_interaction_channels():
    assert RoutingEventBase.model_fields["channel"].annotation is Channel
    with pytest.raises(ValidationError):
        ConversationQueuedV1.model_validate({**data(types.ROUTING_CONVERSATION_QUEUED), "channel": "pigeon"})


@pytest.mark.parametrize("skills", [{"billing": 0}, {"billing": 11}, {"billing": True}, {"billing": "7"}])
def test_skill_levels_are_integers_from_1_to_10(skills):
    with pytest.raises(ValidationError):
        AgentProfileUpdatedV1.model_validate({**data(types.AGENT_PROFILE_UPDATED), "skills": skills})


@pytest.mark.parametrize(("capacity", "valid"), [(0, False), (1, True), (1000, True), (1001, False)])
def test_capacity_is_bounded(capacity, valid):
    raw = {**data(types.AGENT_PROFILE_UPDATED), "capacity_total": capacity}
    if valid:
        assert AgentProfileUpdatedV1.model_validate(raw).capacity_total == capacity
    else:
        with pytest.raises(ValidationError):
            AgentProfileUpdatedV1.model_validate(raw)


def test_profile_defaults_and_attribute_values_keep_their_types():
    raw = {k: v for k, v in data(types.AGENT_PROFILE_UPDATED).items() if k not in ("capacity_total", "attributes")}
    assert AgentProfileUpdatedV1.model_validate(raw).capacity_total == 100
    attrs = AgentProfileUpdatedV1.model_validate(data(types.AGENT_PROFILE_UPDATED)).attributes
    assert attrs["trainee"] is False and attrs["channels"] == ["whatsapp", "chat", "email"]


@pytest.mark.parametrize("reason", ["new", "timeout", "declined", "reassigned", "reopened", "escalated"])
def test_queued_reasons(reason):
    raw = {**data(types.ROUTING_CONVERSATION_QUEUED), "reason": reason, "eta_s": None}
    assert ConversationQueuedV1.model_validate(raw).reason == reason
    with pytest.raises(ValidationError):
        ConversationQueuedV1.model_validate({**raw, "reason": "bored"})


def test_short_names_drop_prefix_and_version():
    assert types.short_name(types.ROUTING_CONVERSATION_ASSIGNED) == "routing.conversation_assigned"
    assert types.short_name(types.CONVERSATION_WAITING_ON_CUSTOMER) == "conversation.waiting_on_customer"
