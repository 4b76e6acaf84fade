"""Delivery-status callbacks: only correctly signed requests are parsed, and each provider's statuses map onto
sent / delivered / failed / bounced. Requests are signed by the test receivers' signers, written from the
providers' docs independently of shared/signatures.py."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from urllib.parse import urlencode

import orjson
import pytest
from pydantic import SecretStr

from services.notification.adapters.callbacks import (
    DeliveryStatus, PayloadError, SignatureError, parse_email_callback, parse_twilio_callback,
    parse_whatsapp_callback,
)
from tests.support.receivers import (
    TwilioMessage, TwilioReceiver, WhatsAppReceiver, meta_sign, standard_sign, twilio_sign,
)

pytestmark = pytest.mark.unit

CALLBACK = "https://notify.acme.example/v1/callbacks/twilio?tenant=acme"
TWILIO = TwilioReceiver(auth_token="twilio-auth-token")   # never started: used for its signed callbacks
META = WhatsAppReceiver(app_secret="meta-app-secret")
EMAIL_SECRET = "whsec_ZW1haWwtY2FsbGJhY2stc2lnbmluZy1rZXk="
NOW = datetime(2026, 6, 1, 10, 0, tzinfo=timezone.utc)
SENT = TwilioMessage("SM0123456789abcdef0123456789abcdef", "+4915112345678", "+4930555000", "hi", CALLBACK, "k")


def twilio(status: str, error_code: str | None = None):
    request = TWILIO.status_callback(SENT, status, error_code)
    return parse_twilio_callback(request.url, request.body, request.headers, SecretStr("twilio-auth-token"))


def email_callback(payload: dict, secret: str = EMAIL_SECRET, at: datetime = NOW, msg_id: str = "evt-1"):
    """A signed bounce-relay request; header names in Title-Case, as a plain dict (matched case-insensitively)."""
    body, ts = orjson.dumps(payload), str(int(at.timestamp()))
    signature = standard_sign(secret, msg_id, ts, body)
    return body, {"Webhook-Id": msg_id, "Webhook-Timestamp": ts, "Webhook-Signature": signature}


# --- Twilio ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status, error_code, expected", [
    ("sent", None, DeliveryStatus(SENT.sid, "sent")),
    ("delivered", None, DeliveryStatus(SENT.sid, "delivered")),
    ("read", None, DeliveryStatus(SENT.sid, "delivered")),
    ("undelivered", "30003", DeliveryStatus(SENT.sid, "failed", "undelivered:30003")),
    ("failed", "30008", DeliveryStatus(SENT.sid, "failed", "failed:30008")),
    ("failed", None, DeliveryStatus(SENT.sid, "failed", "failed")),
])
def test_twilio_statuses(status, error_code, expected):
    assert twilio(status, error_code) == [expected]


@pytest.mark.parametrize("status", ["queued", "accepted", "sending", "scheduled", "some_future_status"])
def test_twilio_in_progress_statuses_carry_nothing(status):
    assert twilio(status) == []


def test_twilio_bad_signatures_are_refused():
    good = TWILIO.status_callback(SENT, "delivered")
    token = SecretStr("twilio-auth-token")
    tampered = good.body.replace(b"delivered", b"failed")
    cases = {
        "wrong token": (good.url, good.body, {"X-Twilio-Signature": twilio_sign(good.url, {}, "other")}),
        "tampered body": (good.url, tampered, good.headers),
        "other URL": (CALLBACK.replace("acme", "evil"), good.body, good.headers),
        "not ASCII": (good.url, good.body, {"X-Twilio-Signature": "ä" + good.headers["X-Twilio-Signature"]}),
    }
    for case, (url, body, headers) in cases.items():
        with pytest.raises(SignatureError) as refused:
            parse_twilio_callback(url, body, headers, token)
        assert refused.value.reason == "signature_invalid", case
    with pytest.raises(SignatureError) as missing:
        parse_twilio_callback(good.url, good.body, {}, token)
    assert missing.value.reason == "signature_missing"


def test_a_signed_twilio_callback_without_a_message_sid_is_a_payload_error():
    params = {"MessageStatus": "delivered"}
    body, headers = urlencode(params).encode(), {"x-twilio-signature": twilio_sign(CALLBACK, params, "tok")}
    with pytest.raises(PayloadError):
        parse_twilio_callback(CALLBACK, body, headers, SecretStr("tok"))


# --- WhatsApp -------------------------------------------------------------------------------------------------


def test_whatsapp_statuses():
    at = int(NOW.timestamp())
    secret = SecretStr("meta-app-secret")
    cases = [("sent", None, DeliveryStatus("wamid.A", "sent", None, NOW)),
             ("delivered", None, DeliveryStatus("wamid.A", "delivered", None, NOW)),
             ("read", None, DeliveryStatus("wamid.A", "delivered", None, NOW)),
             ("failed", 131047, DeliveryStatus("wamid.A", "failed", "failed:131047", NOW)),
             ("deleted", None, None)]
    for status, code, expected in cases:
        request = META.status_webhook("wamid.A", status, error_code=code, timestamp=at)
        assert parse_whatsapp_callback(request.body, request.headers, secret) == ([expected] if expected else [])


def test_whatsapp_statuses_from_several_entries_and_messages_without_statuses():
    first, second = (orjson.loads(META.status_webhook(wamid, "delivered").body) for wamid in ("wamid.A", "wamid.B"))
    first["entry"] += second["entry"]
    first["entry"].append({"id": "1", "changes": [{"field": "messages", "value": {"messages": [{"id": "wamid.IN"}]}}]})
    body = orjson.dumps(first)
    statuses = parse_whatsapp_callback(body, {"X-Hub-Signature-256": meta_sign(body, "meta-app-secret")},
                                       SecretStr("meta-app-secret"))
    assert [s.provider_message_id for s in statuses] == ["wamid.A", "wamid.B"]


def test_whatsapp_bad_signatures_are_refused():
    request = META.status_webhook("wamid.A", "delivered")
    secret = SecretStr("meta-app-secret")
    upper = {"X-Hub-Signature-256": request.headers["X-Hub-Signature-256"].upper().replace("SHA256=", "sha256=")}
    assert parse_whatsapp_callback(request.body, upper, secret), "hex case does not matter"
    for body, headers, reason in [
        (request.body, request.headers | {"X-Hub-Signature-256": "sha256=" + "0" * 64}, "signature_invalid"),
        (request.body.replace(b"delivered", b"failed"), request.headers, "signature_invalid"),
        (request.body, {}, "signature_missing"),
    ]:
        with pytest.raises(SignatureError) as refused:
            parse_whatsapp_callback(body, headers, secret)
        assert refused.value.reason == reason
    with pytest.raises(SignatureError):
        parse_whatsapp_callback(request.body, request.headers, SecretStr("another-app"))


def test_signed_non_json_is_a_payload_error_only_after_the_signature():
    with pytest.raises(SignatureError):
        parse_whatsapp_callback(b"not json", {"x-hub-signature-256": "sha256=00"}, SecretStr("s"))
    with pytest.raises(PayloadError):
        parse_whatsapp_callback(b"not json", {"x-hub-signature-256": meta_sign(b"not json", "s")}, SecretStr("s"))


# --- email bounces ----------------------------------------------------------------------------------------------


def test_email_bounce_and_delivery():
    body, headers = email_callback({"message_id": "n-1%3Aemail@touchpoint", "status": "bounced",
                                    "reason": "550 5.1.1 user unknown", "at": "2026-06-01T09:59:00+00:00"})
    assert parse_email_callback(body, headers, SecretStr(EMAIL_SECRET), NOW) == [
        DeliveryStatus("<n-1%3Aemail@touchpoint>", "bounced", "550 5.1.1 user unknown",
                       datetime(2026, 6, 1, 9, 59, tzinfo=timezone.utc))]
    body, headers = email_callback({"message_id": "<n-2@touchpoint>", "status": "delivered"})
    assert parse_email_callback(body, headers, SecretStr(EMAIL_SECRET), NOW) == [
        DeliveryStatus("<n-2@touchpoint>", "delivered")]


def test_email_callbacks_with_bad_signatures_or_timestamps_are_refused():
    payload = {"message_id": "<n-1@touchpoint>", "status": "bounced"}
    secret = SecretStr(EMAIL_SECRET)
    body, good = email_callback(payload)
    for headers, now, reason in [
        (email_callback(payload, secret="whsec_b3RoZXI=")[1], NOW, "signature_invalid"),
        (good, datetime.fromtimestamp(NOW.timestamp() + 301, timezone.utc), "timestamp_out_of_tolerance"),
        (good | {"Webhook-Timestamp": "soon"}, NOW, "timestamp_out_of_tolerance"),
        ({k: v for k, v in good.items() if k != "Webhook-Signature"}, NOW, "signature_missing"),
    ]:
        with pytest.raises(SignatureError) as refused:
            parse_email_callback(body, headers, secret, now)
        assert refused.value.reason == reason
    with pytest.raises(SignatureError):
        parse_email_callback(body.replace(b"bounced", b"delivered"), good, secret, NOW)


@pytest.mark.parametrize("payload", [{"message_id": "<n@touchpoint>", "status": "opened"},
                                     {"status": "bounced"}, {"message_id": " ", "status": "bounced"}])
def test_signed_email_callbacks_in_another_format_are_payload_errors(payload):
    body, headers = email_callback(payload)
    with pytest.raises(PayloadError):
        parse_email_callback(body, headers, SecretStr(EMAIL_SECRET), NOW)


def test_standard_webhook_time_is_checked_against_the_callers_clock():
    body, headers = email_callback({"message_id": "<n@touchpoint>", "status": "delivered"},
                                   at=datetime.fromtimestamp(time.time(), timezone.utc))
    assert parse_email_callback(body, headers, SecretStr(EMAIL_SECRET), datetime.now(timezone.utc))
