"""Feedback contracts: the models accept their examples, reject what the contract forbids, and the registry puts
every type on the topic the design names."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from shared import topics
from shared.contracts import EXAMPLES_DIR, MODELS, types
from shared.contracts.feedback import (
    FEEDBACK_INBOUND_MODELS,
    FEEDBACK_MODELS,
    DetractorDetectedV1,
    FeedbackEvent,
    FeedbackInvitedV1,
    FeedbackRespondedV1,
    ProductAlertV1,
    ProductRatedV1,
    ResponseSubmittedV1,
)

pytestmark = pytest.mark.unit
ALL = sorted({**FEEDBACK_INBOUND_MODELS, **FEEDBACK_MODELS})
INSTANTS = {"submitted_at", "occurred_at", "at", "expires_at", "due_at", "opened_at", "closed_at"}


def data(event_type: str) -> dict:
    return json.loads((EXAMPLES_DIR / f"{event_type}.json").read_text())["data"]


def test_each_topic_carries_exactly_its_models():
    assert set(topics.FEEDBACK_INBOUND.event_types) == set(FEEDBACK_INBOUND_MODELS)
    assert set(topics.FEEDBACK.event_types) == set(FEEDBACK_MODELS)
    assert set(ALL) <= set(MODELS)
    customers = {t: m for t, m in FEEDBACK_MODELS.items() if t != types.FEEDBACK_PRODUCT_ALERT}
    assert all(issubclass(m, FeedbackEvent) for m in customers.values())
    assert not issubclass(ProductAlertV1, FeedbackEvent), "a product alert is about a product, not a customer"


def test_topics_name_their_producers_consumers_and_keys():
    inbound, feedback = topics.FEEDBACK_INBOUND, topics.FEEDBACK
    assert (inbound.name, inbound.producer, inbound.consumers, inbound.public, inbound.partitions) == (
        "touchpoint.feedback-inbound.v1", "upstream", ("feedback",), True, 6)
    assert (feedback.name, feedback.producer, feedback.consumers, feedback.public) == (
        "touchpoint.feedback.v1", "feedback", ("timeline", "notification", "routing", "downstream"), True)
    assert feedback.key.startswith("customer id")


@pytest.mark.parametrize("event_type", ALL)
def test_the_example_is_valid(event_type):
    MODELS[event_type].model_validate(data(event_type))


@pytest.mark.parametrize("event_type", ALL)
def test_naive_instants_are_rejected(event_type):
    example = data(event_type)
    names = INSTANTS & set(example)
    assert names, "every event carries an instant"
    for name in names:
        with pytest.raises(ValidationError):
            MODELS[event_type].model_validate({**example, name: "2026-11-20T10:00:00"})


@pytest.mark.parametrize("event_type", ALL)
def test_readers_ignore_unknown_fields(event_type):
    model = MODELS[event_type].model_validate({**data(event_type), "added_later": {"x": 1}})
    assert "added_later" not in model.model_dump()


def test_an_upstream_response_names_a_customer_and_keeps_score_and_text_answers():
    response = ResponseSubmittedV1.model_validate(data(types.FEEDBACK_RESPONSE_SUBMITTED))
    assert response.customer.identifiers[0].value == "anna.berg@example.com"
    assert response.answers == {"nps": 9, "reason": "fast_help", "comment": "Quick and friendly."}
    bare = {k: data(types.FEEDBACK_RESPONSE_SUBMITTED)[k]
            for k in ("response_id", "survey_id", "customer", "submitted_at", "answers")}
    assert ResponseSubmittedV1.model_validate(bare).conversation_id is None, "attribution is optional"
    with pytest.raises(ValidationError, match="customer_id or at least one identifier"):
        ResponseSubmittedV1.model_validate({**bare, "customer": {}})


@pytest.mark.parametrize("rating", [0, 6])
def test_a_rating_is_one_to_five_stars(rating):
    with pytest.raises(ValidationError):
        ProductRatedV1.model_validate({**data(types.PRODUCT_RATED), "rating": rating})


@pytest.mark.parametrize(("metric", "score", "valid"), [
    ("nps", 0, True), ("nps", 10, True), ("csat", 0, False), ("csat", 6, False), ("ces", 7, True), ("ces", 8, False)])
def test_a_score_lies_on_its_metric_scale(metric, score, valid):
    for event_type in (types.FEEDBACK_RESPONDED, types.FEEDBACK_DETRACTOR_DETECTED):
        candidate = {**data(event_type), "metric": metric, "score": score}
        if valid:
            MODELS[event_type].model_validate(candidate)
        else:
            with pytest.raises(ValidationError, match=f"a {metric} score"):
                MODELS[event_type].model_validate(candidate)


def test_an_upstream_response_may_have_no_invitation_but_an_invitation_event_always_names_one():
    responded = {**data(types.FEEDBACK_RESPONDED), "source": "upstream"}
    del responded["invitation_id"]
    assert FeedbackRespondedV1.model_validate(responded).invitation_id is None
    invited = data(types.FEEDBACK_INVITED)
    del invited["invitation_id"]
    with pytest.raises(ValidationError):
        FeedbackInvitedV1.model_validate(invited)


def test_a_detractor_names_its_deterministic_follow_up_and_sla():
    detractor = DetractorDetectedV1.model_validate(data(types.FEEDBACK_DETRACTOR_DETECTED))
    assert detractor.follow_up_conversation_id == f"feedback-followup:{detractor.response_id}"
    assert (detractor.due_at - detractor.at).total_seconds() == detractor.sla_s == 172800
    with pytest.raises(ValidationError):
        DetractorDetectedV1.model_validate({**data(types.FEEDBACK_DETRACTOR_DETECTED), "sla_s": 0})
