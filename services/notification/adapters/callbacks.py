"""Delivery-status callbacks from the providers: verify the signature on the raw request, then parse.

Each ``parse_*`` function takes what the HTTP layer received (body bytes exactly as sent, the headers as any
mapping — names are matched case-insensitively) and returns the :class:`DeliveryStatus` list it carries,
possibly empty (in-progress statuses such as Twilio's ``queued`` and unknown future statuses are dropped).
The body is never parsed before its signature is verified.

- Twilio ``StatusCallback``: form-encoded ``MessageSid``, ``MessageStatus`` (queued, sent, delivered,
  undelivered, failed, read, …) and ``ErrorCode``; ``X-Twilio-Signature`` = base64 HMAC-SHA1 of the URL Twilio
  called plus the sorted parameters, keyed with the auth token. No timestamp: a replay repeats a status the
  caller already recorded.
- WhatsApp Cloud API webhook: JSON ``entry[].changes[].value.statuses[]`` with ``id``, ``status`` (sent,
  delivered, read, failed), ``timestamp`` and ``errors[].code``; ``X-Hub-Signature-256: sha256=<hex
  HMAC-SHA256 of the body, keyed with the app secret>``.
- Email: the bounce relay posts ``{"message_id", "status": "bounced" | "delivered", "reason", "at"}`` signed
  with the Standard Webhooks scheme; timestamps outside ``tolerance_s`` are refused (replay protection).

Statuses become ``sent``, ``delivered`` (also for "read"), ``failed`` or ``bounced``; ``reason`` is
``<provider status>:<error code>`` for failures (``undelivered:30003``, ``failed:131047``) or the relay's text.

Errors (both :class:`CallbackError`, with a stable ``reason``; answer 401 and 400 respectively):
- :class:`SignatureError`: ``signature_missing``, ``signature_invalid``, ``timestamp_out_of_tolerance``
- :class:`PayloadError`: ``invalid_payload`` — signed correctly but not the provider's format
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping
from urllib.parse import parse_qsl

import orjson
from pydantic import SecretStr

from shared.signatures import (
    meta_signature, signature_matches, standard_signature, standard_signature_in, standard_timestamp_fresh,
    twilio_signature,
)

TWILIO_STATUSES = {"sent": "sent", "delivered": "delivered", "read": "delivered", "undelivered": "failed",
                   "failed": "failed", "canceled": "failed"}
WHATSAPP_STATUSES = {"sent": "sent", "delivered": "delivered", "read": "delivered", "failed": "failed"}
EMAIL_STATUSES = ("bounced", "delivered")
MAX_REASON = 500


@dataclass(frozen=True)
class DeliveryStatus:
    provider_message_id: str
    status: str                  # sent | delivered | failed | bounced
    reason: str | None = None
    at: datetime | None = None


class CallbackError(Exception):
    reason = "invalid_request"

    def __init__(self, detail: str, reason: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if reason is not None:
            self.reason = reason


class SignatureError(CallbackError):
    reason = "signature_invalid"


class PayloadError(CallbackError):
    reason = "invalid_payload"


def parse_twilio_callback(url: str, body: bytes, headers: Mapping[str, str],
                          auth_token: SecretStr) -> list[DeliveryStatus]:
    """``url`` is the URL Twilio called (the configured ``StatusCallback``, query string included)."""
    given = _header(headers, "x-twilio-signature")
    if not given:
        raise SignatureError("the X-Twilio-Signature header is missing", "signature_missing")
    params = _form(body)
    if not signature_matches(twilio_signature(url, params, auth_token.get_secret_value()).encode(), given):
        raise SignatureError("the signature does not match the URL and parameters")
    sid, raw_status = _first(params, "MessageSid"), _first(params, "MessageStatus")
    if not sid or not raw_status:
        raise PayloadError("MessageSid and MessageStatus are required")
    status = TWILIO_STATUSES.get(raw_status)
    if status is None:
        return []
    code = _first(params, "ErrorCode")
    reason = (f"{raw_status}:{code}" if code else raw_status) if status == "failed" else None
    return [DeliveryStatus(sid, status, reason)]


def parse_whatsapp_callback(body: bytes, headers: Mapping[str, str], app_secret: SecretStr) -> list[DeliveryStatus]:
    given = _header(headers, "x-hub-signature-256")
    if not given:
        raise SignatureError("the X-Hub-Signature-256 header is missing", "signature_missing")
    if not signature_matches(meta_signature(body, app_secret.get_secret_value()).encode(), given.lower()):
        raise SignatureError("the signature does not match the body")
    payload = _json_object(body)
    if not isinstance(payload.get("entry"), list):
        raise PayloadError("entry must be a list")
    parsed = (_whatsapp_status(s) for value in _change_values(payload) for s in _list(value.get("statuses")))
    return [status for status in parsed if status is not None]


def parse_email_callback(body: bytes, headers: Mapping[str, str], secret: SecretStr, now: datetime,
                         tolerance_s: float = 300) -> list[DeliveryStatus]:
    _verify_standard(body, headers, secret, now, tolerance_s)
    payload = _json_object(body)
    message_id, status = payload.get("message_id"), payload.get("status")
    if not isinstance(message_id, str) or not message_id.strip() or status not in EMAIL_STATUSES:
        raise PayloadError(f"message_id and status ({' or '.join(EMAIL_STATUSES)}) are required")
    reason = payload.get("reason") if isinstance(payload.get("reason"), str) else None
    return [DeliveryStatus(_bracketed(message_id.strip()), status, reason[:MAX_REASON] if reason else None,
                           _iso(payload.get("at")))]


def _verify_standard(body: bytes, headers: Mapping[str, str], secret: SecretStr, now: datetime,
                     tolerance_s: float) -> None:
    msg_id, timestamp = _header(headers, "webhook-id"), _header(headers, "webhook-timestamp")
    signatures = _header(headers, "webhook-signature")
    if not msg_id or not timestamp or not signatures:
        raise SignatureError("webhook-id, webhook-timestamp and webhook-signature are required", "signature_missing")
    if not standard_timestamp_fresh(timestamp, now.timestamp(), tolerance_s):
        raise SignatureError("webhook-timestamp is not Unix seconds within the tolerance",
                             "timestamp_out_of_tolerance")
    if not standard_signature_in(standard_signature(secret.get_secret_value(), msg_id, timestamp, body), signatures):
        raise SignatureError("no signature matches the body")


def _whatsapp_status(entry: Any) -> DeliveryStatus | None:
    if not isinstance(entry, dict):
        return None
    wamid, raw_status = entry.get("id"), entry.get("status")
    status = WHATSAPP_STATUSES.get(raw_status) if isinstance(raw_status, str) else None
    if not isinstance(wamid, str) or not wamid or status is None:
        return None
    reason = None
    if status == "failed":
        codes = [e.get("code") for e in _list(entry.get("errors")) if isinstance(e, dict) and e.get("code")]
        reason = f"failed:{codes[0]}" if codes else "failed"
    return DeliveryStatus(wamid, status, reason, _unix(entry.get("timestamp")))


def _change_values(payload: dict) -> list[dict]:
    return [change["value"] for entry in _list(payload.get("entry")) if isinstance(entry, dict)
            for change in _list(entry.get("changes"))
            if isinstance(change, dict) and isinstance(change.get("value"), dict)]


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    return value


def _form(body: bytes) -> dict[str, list[str]]:
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise PayloadError("the body is not form-encoded UTF-8") from None
    params: dict[str, list[str]] = {}
    for name, value in pairs:
        params.setdefault(name, []).append(value)
    return params


def _first(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    return (values[0].strip() or None) if values else None


def _json_object(body: bytes) -> dict:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise PayloadError("the body is not JSON") from None
    if not isinstance(payload, dict):
        raise PayloadError("the body is not a JSON object")
    return payload


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _bracketed(message_id: str) -> str:
    """Message ids as the SMTP sender reports them: ``<…@touchpoint>``, whichever form the relay used."""
    return message_id if message_id.startswith("<") else f"<{message_id}>"


def _unix(value: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(value), timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _iso(value: Any) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None
    if parsed is not None and parsed.tzinfo is None:
        return parsed.replace(tzinfo=timezone.utc)
    return parsed
