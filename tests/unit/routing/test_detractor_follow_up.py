"""A detractor's feedback, as routing reads it from the feedback topic: ``detractor_detected`` opens one
prioritised follow-up conversation for the team the event names, under its SLA rule; everything else on the topic
changes nothing."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

import pytest
from pydantic import ValidationError

from services.routing.config import parse_config
from services.routing.service import FollowUp, feedback_op, follow_up_request
from shared.cloudevents import CloudEvent, InvalidEvent, from_structured
from shared.contracts import EXAMPLES_DIR, types
from shared.contracts.feedback import FEEDBACK_MODELS, DetractorDetectedV1
from tests.unit.routing.test_desk import T0, World

pytestmark = pytest.mark.unit
CONFIG = parse_config("""
tenants:
  t:
    offer_timeout_s: 120
    continuity: {window_s: 0, wait_s: 0}
    sla:
      - {name: detractor, match: "tags HAS 'detractor_follow_up'", first_response_s: 14400, resolution_s: 172800}
      - {name: chat, match: "channel == 'chat'", first_response_s: 600}
    workflow:
      filters:
        - name: follow-ups
          match: "tags HAS 'detractor_follow_up'"
          targets:
            - {queue: follow-ups, expression: "teams HAS task.team"}
      default_targets:
        - {queue: general, expression: "true"}
""").tenant("t")
BILLING = {"teams": ["billing"], "languages": ["de"]}
SUPPORT = {"teams": ["support"], "languages": ["de"]}


def detractor(**data) -> CloudEvent:
    raw = json.loads((EXAMPLES_DIR / f"{types.FEEDBACK_DETRACTOR_DETECTED}.json").read_text())
    raw["data"].update(data)
    return from_structured(raw)


def request(**data) -> FollowUp:
    event = detractor(**data)
    return follow_up_request(DetractorDetectedV1.model_validate(event.data))


def open_follow_up(world: World, follow_up: FollowUp, at=T0):
    return world.run(at, lambda d: d.follow_up(follow_up.conversation_id, follow_up.customer_id, follow_up.channel,
                                               follow_up.at, follow_up.language, follow_up.tags, follow_up.priority))


def test_a_detractor_asks_for_its_follow_up_on_the_event_channel_for_the_team():
    follow_up = request()
    assert follow_up == FollowUp(
        "feedback-followup:5b7d9f1a-2c3e-4f5a-8b6c-7d8e9f0a1b2c", "3a5c7e9b-1d2f-5a4b-8c6d-0e1f2a3b4c5d", "whatsapp",
        follow_up.at, "de", ["detractor_follow_up", "team:billing"], 10)
    assert follow_up.at.isoformat() == "2026-11-21T18:05:00+00:00"


@pytest.mark.parametrize(("channel", "expected"), [("phone", "phone"), ("app", "email"), ("webhook", "email"),
                                                   (None, "email")])
def test_a_follow_up_goes_by_email_when_the_event_channel_has_no_conversations(channel, expected):
    assert request(channel=channel).channel == expected


def test_without_a_team_the_follow_up_is_tagged_for_any_team():
    assert request(team=None).tags == ["detractor_follow_up"]


def test_the_follow_up_is_queued_for_the_team_with_raised_priority_and_its_sla():
    world = World({"bob": {"attributes": SUPPORT}, "ana": {"attributes": BILLING}}, config=CONFIG)
    follow_up = replace(request(), at=T0)
    c = open_follow_up(world, follow_up)
    assert (c.conversation_id, c.customer_id, c.channel) == (follow_up.conversation_id, follow_up.customer_id,
                                                             "whatsapp")
    assert (c.team, c.task()["team"], c.priority) == ("billing", "billing", 10)
    assert (c.status, c.queue, c.agent_id) == ("offered", "follow-ups", "ana"), "only the team may take it"
    queued = [e for e in world.events if e.kind == "conversation_queued"]
    assert [(e.conversation_id, e.data["priority"]) for e in queued] == [(c.conversation_id, 10)]
    assert c.sla_task["tags"] == ["detractor_follow_up", "team:billing"]
    resolution = [t for t in world.timers if t.kind == "sla_due" and t.payload["metric"] == "resolution"]
    assert [t.due_at for t in resolution] == [T0 + timedelta(hours=48)]


def test_without_an_agent_of_the_team_the_follow_up_waits_in_its_queue():
    world = World({"bob": {"attributes": SUPPORT}}, config=CONFIG)
    c = open_follow_up(world, replace(request(), at=T0))
    assert (c.status, c.queue, c.agent_id) == ("queued", "follow-ups", None)


def test_asking_twice_opens_one_conversation():
    world = World({"ana": {"attributes": BILLING}}, config=CONFIG)
    follow_up = replace(request(), at=T0)
    first = open_follow_up(world, follow_up)
    again = open_follow_up(world, follow_up, T0 + timedelta(seconds=5))
    assert again is world.conversations[first.conversation_id] and len(world.conversations) == 1
    assert [e.kind for e in world.events].count("conversation_queued") == 1


def test_the_op_is_keyed_by_the_detractor_event_so_a_redelivery_applies_once():
    event = detractor()
    assert feedback_op(event).key == (event.tenant, event.source, event.id)


@pytest.mark.parametrize("event_type", sorted(set(FEEDBACK_MODELS) - {types.FEEDBACK_DETRACTOR_DETECTED}))
def test_other_feedback_events_are_acknowledged_without_effect(event_type):
    raw = json.loads((EXAMPLES_DIR / f"{event_type}.json").read_text())
    assert feedback_op(from_structured(raw)) is None


def test_a_type_the_topic_does_not_carry_or_a_broken_detractor_is_dead_lettered():
    with pytest.raises(InvalidEvent) as err:
        feedback_op(replace(detractor(), type="touchpoint.feedback.opened.v1"))
    assert err.value.reason == "unsupported_type"
    with pytest.raises(InvalidEvent):
        feedback_op(replace(detractor(), type=types.NOTIFICATION_SENT))
    with pytest.raises(ValidationError):
        feedback_op(detractor(follow_up_conversation_id=None))
    with pytest.raises(ValidationError):
        feedback_op(detractor(at="2026-11-21T18:05:00"))
