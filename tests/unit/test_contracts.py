"""Contracts: every example validates, committed schemas match the models, the registry is consistent."""

from __future__ import annotations

import json

import pytest

from shared import topics
from shared.cloudevents import from_kafka, from_structured, to_kafka_headers
from shared.contracts import EXAMPLES_DIR, MODELS, SCHEMAS_DIR
from shared.contracts.schemas import render

pytestmark = pytest.mark.unit


def example(event_type: str) -> dict:
    return json.loads((EXAMPLES_DIR / f"{event_type}.json").read_text())


@pytest.mark.parametrize("event_type", sorted(MODELS))
def test_example_is_a_valid_cloudevent_of_its_type(event_type):
    raw = example(event_type)
    event = from_structured(raw)
    assert event.type == event_type and event.tenant
    MODELS[event_type].model_validate(event.data)
    decoded = from_kafka(json.dumps(event.data).encode(), to_kafka_headers(event))
    assert decoded.data == event.data and decoded.id == event.id


@pytest.mark.parametrize("event_type", sorted(MODELS))
def test_committed_schema_matches_the_model(event_type):
    committed = (SCHEMAS_DIR / f"{event_type}.json").read_text()
    assert committed == render(event_type), "contract changed: run `python -m shared.contracts.schemas` and review"


def test_every_example_and_schema_file_belongs_to_a_type():
    names = {p.stem for p in EXAMPLES_DIR.glob("*.json")} | {p.stem for p in SCHEMAS_DIR.glob("*.json")}
    assert names == set(MODELS)


def test_registry_names_one_producer_per_type_and_carries_every_type():
    carried = [t for spec in topics.REGISTRY for t in spec.event_types]
    assert sorted(set(carried)) == sorted(MODELS)
    for event_type in MODELS:
        producers = {spec.producer for spec in topics.REGISTRY if event_type in spec.event_types}
        assert len(producers) == 1, (event_type, producers)


def test_public_topic_names_are_fixed():
    public = {spec.name for spec in topics.REGISTRY if spec.public}
    assert public == {"touchpoint.inbound.v1", "touchpoint.timeline.v1", "touchpoint.customers.v1",
                      "touchpoint.agents.v1", "touchpoint.conversations.v1", "touchpoint.routing.v1",
                      "touchpoint.business.v1", "touchpoint.consent.v1", "touchpoint.notification.v1",
                      "touchpoint.feedback-inbound.v1", "touchpoint.feedback.v1", "touchpoint.privacy.v1"}
    assert topics.CUSTOMERS.compacted and topics.CUSTOMERS.config["cleanup.policy"] == "compact"
