"""Signed, expiring tokens for links sent to customers (answer links, survey links).

A token is ``<payload>.<signature>``: the payload is URL-safe base64 of compact JSON holding the caller's claims
and ``exp`` (Unix seconds), the signature an HMAC-SHA256 of the payload with the service's secret. Tokens are
stateless; whether one was already used is the caller's business (a tracking row per token subject).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime
from typing import Any

import orjson
from pydantic import SecretStr


class TokenError(ValueError):
    """``reason``: ``malformed``, ``bad_signature`` or ``expired``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(payload: str, secret: SecretStr) -> str:
    return _b64(hmac.new(secret.get_secret_value().encode(), payload.encode(), hashlib.sha256).digest())


def issue(claims: dict[str, Any], expires_at: datetime, secret: SecretStr) -> str:
    """A token carrying ``claims`` until ``expires_at``. Deterministic: the same inputs give the same token."""
    payload = _b64(orjson.dumps({**claims, "exp": int(expires_at.timestamp())}, option=orjson.OPT_SORT_KEYS))
    return f"{payload}.{_sign(payload, secret)}"


def verify(token: str, secret: SecretStr, now: datetime) -> dict[str, Any]:
    """The claims of a valid token; raises :class:`TokenError` for a malformed, forged or expired one."""
    payload, _, signature = token.partition(".")
    if not payload or not signature:
        raise TokenError("malformed", "the token is not of the form <payload>.<signature>")
    if not hmac.compare_digest(signature, _sign(payload, secret)):
        raise TokenError("bad_signature", "the token's signature does not match")
    try:
        claims = orjson.loads(_unb64(payload))
    except (ValueError, orjson.JSONDecodeError):
        raise TokenError("malformed", "the token's payload is not valid JSON") from None
    if not isinstance(claims, dict) or not isinstance(claims.get("exp"), int):
        raise TokenError("malformed", "the token carries no expiry")
    if now.timestamp() >= claims["exp"]:
        raise TokenError("expired", "the link has expired")
    return claims
