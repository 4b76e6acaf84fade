"""Webhook signature schemes shared by ingestion (inbound webhooks) and notification (outbound webhooks and
delivery-status callbacks). Pure functions: no I/O, no framework, secrets passed as plain strings by callers
that unwrap their ``SecretStr`` at the last moment.

- Twilio: ``X-Twilio-Signature`` = base64(HMAC-SHA1(auth token, URL + every POST parameter name and value,
  names sorted)).
- Meta (WhatsApp, Messenger, Instagram): ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, body)>``.
- X: ``sha256=<base64 HMAC-SHA256(consumer secret, message)>``.
- Standard Webhooks: ``webhook-signature: v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>``, the key
  being the decoded bytes of a ``whsec_<base64>`` secret (any other secret is used as UTF-8 bytes).

Comparisons are constant-time; a header value that is not ASCII never matches.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import Mapping, Sequence


def signature_matches(expected: bytes, given: str | None) -> bool:
    """Constant-time comparison on bytes; a header that is not ASCII simply does not match."""
    if given is None:
        return False
    try:
        given_bytes = given.strip().encode("ascii")
    except UnicodeEncodeError:
        return False
    return hmac.compare_digest(expected, given_bytes)


def twilio_signature(url: str, params: Mapping[str, Sequence[str]], auth_token: str) -> str:
    """As Twilio's own request validator computes it (sorted names, each name's distinct values sorted).
    ``url`` must be the URL Twilio called, query string included."""
    signed = url + "".join(name + value for name in sorted(params) for value in sorted(set(params[name])))
    digest = hmac.new(auth_token.encode(), signed.encode("utf-8", "surrogatepass"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def meta_signature(body: bytes, app_secret: str) -> str:
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def x_signature(message: bytes, consumer_secret: str) -> str:
    digest = hmac.new(consumer_secret.encode(), message, hashlib.sha256).digest()
    return "sha256=" + base64.b64encode(digest).decode()


def standard_secret_key(secret: str) -> bytes:
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret[6:], validate=True)
        except binascii.Error:
            pass
    return secret.encode()


def standard_signature(secret: str, msg_id: str, timestamp: str, body: bytes) -> str:
    """One ``v1,<base64>`` entry of a Standard Webhooks ``webhook-signature`` header."""
    signed = f"{msg_id}.{timestamp}.".encode("utf-8", "surrogatepass") + body
    digest = hmac.new(standard_secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def standard_signature_in(expected: str, header: str) -> bool:
    """Whether any of the space-separated entries of a ``webhook-signature`` header is ``expected``."""
    return any(signature_matches(expected.encode(), candidate) for candidate in header.split())


def standard_timestamp_fresh(timestamp: str, now: float, tolerance_seconds: float) -> bool:
    """Whether ``webhook-timestamp`` is Unix seconds within ``tolerance_seconds`` of ``now`` (either way), so a
    captured request cannot be replayed later."""
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        return False
    return abs(now - int(timestamp)) <= tolerance_seconds


def standard_headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers for sending ``body``."""
    ts = str(timestamp)
    return {"webhook-id": msg_id, "webhook-timestamp": ts,
            "webhook-signature": standard_signature(secret, msg_id, ts, body)}
