"""The connector interface and what every connector shares: the request it sees, its errors, event building.

A connector is a plain object with a ``name`` (the URL segment), a ``source`` (the CloudEvents source of what
it produces) and three pure methods: ``handshake`` (GET verification, where the provider has one), ``verify``
(authenticates the raw request) and ``parse`` (provider payload → ``touchpoint.interaction.occurred.v1``
CloudEvents whose ``id`` is the provider's message id, so ingestion's (source, id) de-duplication turns a
provider retry into a no-op). None of them does I/O or imports a web framework.

Errors: every refusal raises a :class:`ConnectorError` subclass carrying an HTTP ``status`` and a stable
``reason``; the HTTP layer turns it into ``{"error": {"reason", "detail"}}``. Details never repeat payload
values (they may be personal data).

- :class:`SignatureError` (401): ``signature_missing``, ``signature_invalid``, ``timestamp_out_of_tolerance``
- :class:`HandshakeError` (403): ``handshake_failed``, a wrong verify token
- :class:`PayloadError` (400): ``invalid_payload``, the body is not the provider's format; ``handshake_invalid``
- :class:`NotConfigured` (404): ``unknown_connector``, no such connector for this tenant
- :class:`MethodNotSupported` (405): the connector has no handshake
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Generic, Mapping, TypeVar

import orjson

from shared.cloudevents import CloudEvent
from shared.contracts import types

NAMESPACE = uuid.UUID("0b8f6a53-3f41-4a8e-8c1c-5c7e1d2f9a64")
MAX_ID_LENGTH = 512


class ConnectorError(Exception):
    status = 400
    reason = "invalid_request"

    def __init__(self, detail: str, reason: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if reason is not None:
            self.reason = reason


class SignatureError(ConnectorError):
    status = 401
    reason = "signature_invalid"


class HandshakeError(ConnectorError):
    status = 403
    reason = "handshake_failed"


class PayloadError(ConnectorError):
    status = 400
    reason = "invalid_payload"


class NotConfigured(ConnectorError):
    status = 404
    reason = "unknown_connector"


class MethodNotSupported(ConnectorError):
    status = 405
    reason = "method_not_allowed"


@dataclass(frozen=True)
class WebhookRequest:
    """A provider's HTTP request as the connector sees it: ``url`` as the provider called it (scheme, host,
    path and query), header names lower-case, the body exactly as received."""

    method: str
    url: str
    headers: Mapping[str, str]
    query: Mapping[str, str]
    body: bytes
    received_at: datetime

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass(frozen=True)
class Reply:
    body: bytes
    content_type: str = "application/json"
    status: int = 200


@dataclass
class Parsed:
    """What a payload became: events to publish, notifications deliberately ignored (reasons, no values)."""

    events: list[CloudEvent] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    reply: Reply | None = None  # a provider-specific success body (TwiML), else a JSON summary


Config = TypeVar("Config")


class Connector(ABC, Generic[Config]):
    name: str
    source: str

    def handshake(self, request: WebhookRequest, config: Config) -> Reply:
        """Answer the provider's GET verification. Raises HandshakeError or MethodNotSupported."""
        raise MethodNotSupported("this connector has no verification handshake")

    @abstractmethod
    def verify(self, request: WebhookRequest, config: Config) -> None:
        """Authenticate the raw request. Raises SignatureError; never parses the body first."""

    @abstractmethod
    def parse(self, request: WebhookRequest, config: Config) -> Parsed:
        """Turn a verified payload into interaction events. Raises PayloadError only."""


# --- helpers for the provider modules ----------------------------------------------------------------------


def clean(value: str) -> str:
    """Provider strings made safe to store and serialise: no NUL (PostgreSQL refuses it), no lone surrogates."""
    return value.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")


def as_dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list:
    return value if isinstance(value, list) else []


def as_str(value: Any, limit: int | None = None) -> str | None:
    """A non-empty string (numbers become strings, as providers mix both for ids), else None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        value = str(value)
    if not isinstance(value, str):
        return None
    value = clean(value).strip()
    if limit is not None:
        value = value[:limit]
    return value or None


def as_id(value: Any) -> str | None:
    """A provider id usable as a CloudEvents id; None when absent or implausibly long."""
    text = as_str(value)
    return text if text is not None and len(text) <= MAX_ID_LENGTH else None


def load_json_object(body: bytes) -> dict:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise PayloadError("the body is not JSON") from None
    if not isinstance(parsed, dict):
        raise PayloadError("the body is not a JSON object")
    return parsed


def from_unix(value: Any, millis: bool = False) -> datetime | None:
    try:
        seconds = float(value) / (1000 if millis else 1)
        return datetime.fromtimestamp(seconds, timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def stable_id(*parts: str) -> str:
    """A deterministic id from provider values that are personal data (phone numbers): not readable back."""
    return str(uuid.uuid5(NAMESPACE, "\x00".join(parts)))


def interaction(source: str, event_id: str, data: dict, time: datetime | None = None) -> CloudEvent:
    """A ``touchpoint.interaction.occurred.v1`` event; the tenant is set by whoever relays it."""
    if time is not None and "occurred_at" not in data:
        data = {**data, "occurred_at": time.isoformat()}
    return CloudEvent(id=event_id, source=source, type=types.INTERACTION_OCCURRED, data=data, time=time)


def json_reply(content: Any, status: int = 200) -> Reply:
    return Reply(orjson.dumps(content), "application/json", status)
