"""Business, consent and notification contracts: the models accept their examples, reject what the contract
forbids, and the registry puts every type on the topic the design names."""

from __future__ import annotations

import json
from datetime import time

import pytest
from pydantic import ValidationError

from shared import topics
from shared.contracts import EXAMPLES_DIR, MODELS
from shared.contracts.business import BUSINESS_MODELS, CaseResolvedV1, CustomerRef, OrderPlacedV1
from shared.contracts.consent import CONSENT_MODELS, ConsentGrantedV1, PreferencesChangedV1
from shared.contracts.notification import NOTIFICATION_MODELS, NotificationEvent

pytestmark = pytest.mark.unit
ALL = sorted({**BUSINESS_MODELS, **CONSENT_MODELS, **NOTIFICATION_MODELS})
INSTANTS = {"occurred_at", "at", "expires_at", "due_at", "release_at", "eta", "new_eta", "previous_eta"}


def data(event_type: str) -> dict:
    return json.loads((EXAMPLES_DIR / f"{event_type}.json").read_text())["data"]


def test_each_topic_carries_exactly_its_models():
    assert set(topics.BUSINESS.event_types) == set(BUSINESS_MODELS)
    assert set(topics.CONSENT.event_types) == set(CONSENT_MODELS)
    assert set(topics.NOTIFICATIONS.event_types) == set(NOTIFICATION_MODELS)
    assert set(ALL) <= set(MODELS)
    assert all(issubclass(m, NotificationEvent) for m in NOTIFICATION_MODELS.values())


def test_topics_name_their_producers_consumers_and_keys():
    assert (topics.BUSINESS.producer, topics.BUSINESS.consumers, topics.BUSINESS.public) == (
        "upstream", ("notification", "feedback"), True)
    assert (topics.CONSENT.producer, topics.CONSENT.consumers, topics.CONSENT.public) == (
        "upstream", ("notification", "timeline"), True)
    assert topics.BUSINESS.partitions == topics.CONSENT.partitions == 6
    notifications = topics.NOTIFICATIONS
    assert (notifications.name, notifications.producer, notifications.consumers, notifications.key) == (
        "touchpoint.notification.v1", "notification", ("timeline", "routing", "downstream"), "customer id")
    assert (topics.BUSINESS.name, topics.CONSENT.name) == ("touchpoint.business.v1", "touchpoint.consent.v1")


@pytest.mark.parametrize("event_type", ALL)
def test_naive_instants_are_rejected(event_type):
    example = data(event_type)
    for name in INSTANTS & set(example):
        if example[name] is not None:
            with pytest.raises(ValidationError):
                MODELS[event_type].model_validate({**example, name: "2026-11-20T10:00:00"})


@pytest.mark.parametrize("event_type", ALL)
def test_readers_ignore_unknown_fields(event_type):
    model = MODELS[event_type].model_validate({**data(event_type), "added_later": {"x": 1}})
    assert "added_later" not in model.model_dump()


def test_a_customer_reference_needs_an_id_or_an_identifier():
    assert CustomerRef(customer_id="c-1").identifiers == []
    assert CustomerRef(identifiers=[{"type": "email", "value": "a@example.com"}]).customer_id is None
    with pytest.raises(ValidationError, match="customer_id or at least one identifier"):
        CustomerRef()
    with pytest.raises(ValidationError):
        CaseResolvedV1.model_validate({**data("touchpoint.case.resolved.v1"), "customer": {"identifiers": []}})


def test_an_order_total_is_exact():
    order = OrderPlacedV1.model_validate(data("touchpoint.order.placed.v1"))
    assert str(order.total) == "129.90" and order.model_dump(mode="json")["total"] == "129.90"
    with pytest.raises(ValidationError):
        OrderPlacedV1.model_validate({**data("touchpoint.order.placed.v1"), "currency": "euro"})


def test_consent_names_a_known_purpose_and_channel():
    example = data("touchpoint.consent.granted.v1")
    assert ConsentGrantedV1.model_validate({**example, "channel": "any"}).channel == "any"
    for field, value in (("purpose", "profiling"), ("channel", "pigeon")):
        with pytest.raises(ValidationError):
            ConsentGrantedV1.model_validate({**example, field: value})


def test_preferences_absent_are_unchanged_and_null_clears():
    example = data("touchpoint.preferences.changed.v1")
    full = PreferencesChangedV1.model_validate(example)
    assert full.quiet_hours.times() == (time(22, 0), time(7, 0))
    assert set(full.changes()) == set(example) - {"customer", "occurred_at"}
    partial = PreferencesChangedV1.model_validate({"customer": example["customer"], "occurred_at": example["occurred_at"],
                                                   "quiet_hours": None, "language": "en"})
    assert partial.changes() == {"quiet_hours": None, "language": "en"}


@pytest.mark.parametrize("field,value", [("time_zone", "Mars/Olympus"), ("time_zone", "/etc/passwd"),
                                         ("quiet_hours", {"start": "24:00", "end": "07:00"}),
                                         ("quiet_hours", {"start": "7:00", "end": "22:00"}),
                                         ("addresses", {"pager": "123"}), ("preferred_channel", "any")])
def test_preferences_reject_what_cannot_be_honoured(field, value):
    with pytest.raises(ValidationError):
        PreferencesChangedV1.model_validate({**data("touchpoint.preferences.changed.v1"), field: value})
