"""Schemathesis against the ingestion service's OpenAPI spec (events, webhooks, web chat), served by the real
app on real Kafka and PostgreSQL, with valid and invalid (negative) inputs: never a 5xx.

Operations are driven through their hypothesis strategies directly (schemathesis' lazy pytest fixture loader
does not run on this pytest version), one parametrised test per operation and generation mode.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from services.ingestion.main import build_app
from services.ingestion.settings import IngestionSettings
from tests.connectors.providers import SITE_KEY, SITE_ORIGIN, TENANT

pytestmark = [pytest.mark.integration,
              pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")]
SPEC = build_app(IngestionSettings()).openapi()["paths"]


def _has_negative_inputs(op: dict) -> bool:
    """Only a documented body can be invalid: every parameter here is an unconstrained optional string."""
    return "requestBody" in op


CASES = [(m.upper(), path, mode) for path, item in sorted(SPEC.items()) for m, op in sorted(item.items())
         for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
         if mode is GenerationMode.POSITIVE or _has_negative_inputs(op)]


@pytest.fixture(scope="session")
async def ingest_key(live) -> str:
    return await live.stack.api_key(TENANT, ["ingest"])


@pytest.fixture(scope="session")
def ingestion_api(live):
    return schemathesis.openapi.from_url(live.url + "/openapi.json")


@pytest.mark.parametrize(("method", "path", "mode"), CASES)
def test_no_server_errors(ingestion_api, ingest_key, method, path, mode):
    operation = ingestion_api[path][method]
    calls = []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def run(case):
        # Every other call carries real credentials, so generated bodies also get past authentication.
        headers = {"Origin": SITE_ORIGIN}
        if len(calls) % 2:
            headers.update({"Authorization": f"Bearer {ingest_key}", "X-Site-Key": SITE_KEY})
        if path.endswith("/events"):
            case.query = {**(case.query or {}), "token": "not-a-token"}  # never hold a stream open
        response = case.call(headers=headers, timeout=30)
        calls.append(response.status_code)
        case.validate_response(response, checks=[not_a_server_error])

    run()
    assert calls and max(calls) < 500
