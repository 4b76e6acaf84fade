"""A customer's answer to a follow-up, as routing reads it from the notification topic: "not solved" reopens the
conversation for the agent the answer names; everything else on the topic changes nothing."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import timedelta

import pytest
from pydantic import ValidationError

from services.routing.service import notification_op
from shared.cloudevents import CloudEvent, InvalidEvent, from_structured
from shared.contracts import EXAMPLES_DIR, types
from shared.contracts.notification import NOTIFICATION_MODELS
from tests.unit.routing.test_desk import ENGLISH, T0, World, open_chat

pytestmark = pytest.mark.unit


def answer(**data) -> CloudEvent:
    raw = json.loads((EXAMPLES_DIR / f"{types.NOTIFICATION_FOLLOW_UP_ANSWERED}.json").read_text())
    raw["data"].update(data)
    return from_structured(raw)


def resolved_conversation(world: World) -> tuple[str, str]:
    """(conversation id, agent) of a chat the agent accepted and resolved."""
    c = open_chat(world, T0)
    agent = c.agent_id
    world.run(T0 + timedelta(seconds=1), lambda d: d.accept(c.offer_id, agent))
    world.run(T0 + timedelta(seconds=60), lambda d: d.resolved(d.conversations[c.conversation_id], d.now))
    assert world.conversations[c.conversation_id].status == "resolved"
    return c.conversation_id, agent


def apply_answer(world: World, event: CloudEvent) -> None:
    op = notification_op(event)
    # The conversation is in the world's desk, so the op never needs a database connection.
    world.run(T0 + timedelta(days=1), lambda d: asyncio.run(op.apply(d, None)))


def test_not_solved_reopens_the_conversation_for_the_agent_the_answer_names():
    world = World({"a": {"attributes": ENGLISH}, "b": {"attributes": ENGLISH}})
    conversation_id, agent = resolved_conversation(world)
    other = "b" if agent == "a" else "a"
    apply_answer(world, answer(solved=False, conversation_id=conversation_id, agent_id=other,
                               at=(T0 + timedelta(hours=20)).isoformat()))
    c = world.conversations[conversation_id]
    assert (c.status, c.agent_id, c.queue_reason) == ("offered", other, "reopened")
    assert c.offer_continuity, "offered to the named agent ahead of the queue"


def test_not_solved_without_an_agent_goes_back_to_the_agent_the_customer_had():
    world = World({"a": {"attributes": ENGLISH}, "b": {"attributes": ENGLISH}})
    conversation_id, agent = resolved_conversation(world)
    apply_answer(world, answer(solved=False, conversation_id=conversation_id, agent_id=None))
    c = world.conversations[conversation_id]
    assert (c.status, c.agent_id) == ("offered", agent)


def test_the_op_is_keyed_by_the_answer_event_so_a_redelivery_applies_once():
    event = answer(solved=False)
    assert notification_op(event).key == (event.tenant, event.source, event.id)


@pytest.mark.parametrize("data", [{"solved": True}, {"solved": False, "conversation_id": None}],
                         ids=["solved", "no conversation"])
def test_an_answer_that_asks_for_nothing_is_acknowledged_without_effect(data):
    assert notification_op(answer(**data)) is None


@pytest.mark.parametrize("event_type", sorted(set(NOTIFICATION_MODELS) - {types.NOTIFICATION_FOLLOW_UP_ANSWERED}))
def test_other_notification_events_are_acknowledged_without_effect(event_type):
    raw = json.loads((EXAMPLES_DIR / f"{event_type}.json").read_text())
    assert notification_op(from_structured(raw)) is None


def test_a_type_the_topic_does_not_carry_or_a_broken_answer_is_dead_lettered():
    with pytest.raises(InvalidEvent) as err:
        notification_op(replace(answer(), type="touchpoint.notification.opened.v1"))
    assert err.value.reason == "unsupported_type"
    with pytest.raises(ValidationError):
        notification_op(answer(solved="maybe"))
