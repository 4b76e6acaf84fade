"""The committed AsyncAPI and OpenAPI documents are what the code renders now."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("docs_generate", ROOT / "docs" / "generate.py")
generate = importlib.util.module_from_spec(spec)
spec.loader.exec_module(generate)
RENDERED = generate.render()


@pytest.mark.parametrize("path", sorted(RENDERED), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_committed_document_matches_the_code(path):
    assert path.read_text() == RENDERED[path], "stale: run .venv/bin/python docs/generate.py and commit"


@pytest.mark.parametrize("service", generate.SERVICES)
def test_asyncapi_names_every_topic_the_service_touches(service):
    doc = json.loads(RENDERED[ROOT / "docs" / "asyncapi" / f"{service}.json"])
    addresses = {c["address"] for c in doc["channels"].values()}
    for topic in generate.REGISTRY:
        if service in topic.consumers:
            assert {topic.name, topic.dead_letter()} <= addresses
        if topic.producer == service:
            assert topic.name in addresses
    for op in doc["operations"].values():
        assert op["channel"]["$ref"].removeprefix("#/channels/") in doc["channels"]


def test_openapi_documents_the_public_routes():
    paths = {s: set(json.loads(RENDERED[ROOT / "docs" / "openapi" / f"{s}.json"])["paths"]) for s in generate.SERVICES}
    assert "/v1/events" in paths["ingestion"]
    assert {"/v1/customers/{customer_id}/timeline", "/v1/customers/{customer_id}", "/v1/customers/lookup"} <= paths["timeline"]
    assert {"/v1/identities/{customer_id}", "/v1/identities/merge", "/v1/identities/{customer_id}/split"} <= paths["identity"]
