"""The webhook signature matrix and handshakes over HTTP, on the real routes with a recording producer: only
correctly signed requests publish anything, and nothing unverified is kept."""

from __future__ import annotations

import base64
import hashlib
import hmac

import httpx
import pytest

from tests.connectors.conftest import fake_ingestion
from tests.connectors.providers import (
    BASE_URL, CONNECTORS, TENANT, VERIFY_TOKEN, X_SECRET, tampered, valid_delivery,
)

pytestmark = pytest.mark.unit
SOURCES = {"whatsapp": "whatsapp", "messenger": "facebook", "instagram": "instagram", "twilio": "twilio",
           "x": "x", "generic": "crm"}


def client(fake) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=fake.app), base_url=BASE_URL)


@pytest.mark.parametrize("connector", CONNECTORS)
async def test_only_valid_signatures_publish(connector):
    fake = fake_ingestion()
    async with client(fake) as c:
        for case, delivery in tampered(connector, "m1").items():
            resp = await c.post(delivery.path, content=delivery.body, headers=delivery.headers)
            allowed = (400, 401) if case == "one byte changed" else (401,)
            assert resp.status_code in allowed, f"{connector} {case}: {resp.status_code} {resp.text}"
            assert resp.json()["error"]["reason"].startswith(("signature_", "timestamp_", "invalid_payload"))
        assert fake.producer.records == [], f"{connector}: an unverified request published"
        assert fake.audit.kept == [], f"{connector}: an unverified request was stored"

        good = valid_delivery(connector, "m1")
        resp = await c.post(good.path, content=good.body, headers=good.headers)
        assert resp.status_code == 200, resp.text
    [event] = fake.published()
    assert event.source == SOURCES[connector]
    assert event.tenant == TENANT
    assert event.type == "touchpoint.interaction.occurred.v1"
    assert len(fake.audit.kept) == 1 and fake.audit.kept[0][2] == good.body, "the raw payload is kept as received"
    assert fake.audit.kids == [[event.extensions["sealkey"]]], "kept with the data key its event is sealed under"


async def test_the_missing_and_stale_cases_say_why():
    fake = fake_ingestion()
    cases = tampered("generic", "m2")
    async with client(fake) as c:
        for case, reason in (("missing signature", "signature_missing"), ("stale timestamp", "timestamp_out_of_tolerance"),
                             ("future timestamp", "timestamp_out_of_tolerance"), ("wrong secret", "signature_invalid")):
            d = cases[case]
            resp = await c.post(d.path, content=d.body, headers=d.headers)
            assert resp.json()["error"]["reason"] == reason, case


@pytest.mark.parametrize("connector", ["whatsapp", "messenger", "instagram"])
async def test_meta_verification_handshake(connector):
    fake = fake_ingestion()
    path = f"/v1/webhooks/{TENANT}/{connector}"
    async with client(fake) as c:
        ok = await c.get(path, params={"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN,
                                       "hub.challenge": "1158201444"})
        assert (ok.status_code, ok.text) == (200, "1158201444")
        wrong = await c.get(path, params={"hub.mode": "subscribe", "hub.verify_token": "guess",
                                          "hub.challenge": "1158201444"})
        assert wrong.status_code == 403 and "1158201444" not in wrong.text
        missing = await c.get(path, params={"hub.mode": "subscribe", "hub.challenge": "1"})
        assert missing.status_code == 400
        unsubscribe = await c.get(path, params={"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN,
                                                "hub.challenge": "1"})
        assert unsubscribe.status_code == 400
    assert fake.producer.records == []


async def test_x_crc_challenge_response():
    fake = fake_ingestion()
    async with client(fake) as c:
        resp = await c.get(f"/v1/webhooks/{TENANT}/x", params={"crc_token": "challenge-token-123"})
        assert resp.status_code == 200
        expected = base64.b64encode(hmac.new(X_SECRET.encode(), b"challenge-token-123", hashlib.sha256).digest())
        assert resp.json() == {"response_token": "sha256=" + expected.decode()}
        assert (await c.get(f"/v1/webhooks/{TENANT}/x")).status_code == 400
        assert (await c.get(f"/v1/webhooks/{TENANT}/twilio")).status_code == 405


async def test_unknown_tenant_or_connector_is_404_and_oversized_is_413():
    fake = fake_ingestion(max_body_bytes=2048)
    good = valid_delivery("whatsapp", "m3")
    async with client(fake) as c:
        for path in ("/v1/webhooks/other/whatsapp", f"/v1/webhooks/{TENANT}/telegram",
                     f"/v1/webhooks/{TENANT}/generic/unknown", f"/v1/webhooks/{TENANT}/webchat"):
            resp = await c.post(path, content=good.body, headers=good.headers)
            assert resp.status_code == 404, path
        big = b'{"object":"whatsapp_business_account","entry":[' + b" " * 4096 + b"]}"
        resp = await c.post(good.path, content=big, headers=good.headers)
        assert resp.status_code == 413

        async def endless():
            for _ in range(100):
                yield b" " * 1024

        resp = await c.post(good.path, content=endless(), headers=good.headers)  # chunked, no Content-Length
        assert resp.status_code == 413
    assert fake.producer.records == []


async def test_a_provider_retry_is_answered_2xx_with_the_same_event_id():
    fake = fake_ingestion()
    good = valid_delivery("twilio", "m4")
    async with client(fake) as c:
        for _ in range(3):
            resp = await c.post(good.path, content=good.body, headers=good.headers)
            assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/xml")
    assert {e.id for e in fake.published()} == {"SMm4"}, "ingestion's (source, id) de-duplication drops the retries"
    assert len(fake.audit.kept) == 3, "the in-memory audit sees every call; the table keeps one row per body"
