"""The port between the notification service and its delivery channels, and what the HTTP adapters share.

Every channel adapter (``smtp``, ``twilio``, ``whatsapp``, ``webhook``) is a :class:`ChannelSender`: it takes an
:class:`OutboundMessage` and either returns a :class:`SendResult` carrying the provider's message id or raises
:class:`SendError`. Nothing else escapes ``send``: network errors, timeouts and provider refusals all become a
``SendError`` whose ``permanent`` flag tells the caller what to do next:

- ``permanent=True``: sending the same message again cannot succeed (address or request refused, wrong
  credentials, SMTP 5xx, HTTP 4xx other than 408/429). Fall back to the next channel.
- ``permanent=False``: the provider may accept it later (connection refused, timeout, SMTP 4xx, HTTP 5xx, 408,
  429). Retry with the same ``idempotency_key``; the provider may already have accepted the first attempt when
  the failure was a lost response.

``reason`` is a stable machine code (``smtp_550``, ``http_503``, ``connection_failed``, ``timeout``,
``invalid_message``, ``invalid_response``, ``no_endpoint``); ``detail`` is one sentence that never repeats
message content, addresses or secrets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import httpx

TRANSIENT_HTTP_STATUSES = frozenset({408, 425, 429})


@dataclass(frozen=True)
class OutboundMessage:
    notification_id: str
    idempotency_key: str         # stable per (notification, channel): resent with the same key after a crash
    channel: str
    to: str                      # email address, E.164 phone number, or webhook URL
    subject: str | None
    text: str
    html: str | None = None
    template: str | None = None  # WhatsApp approved template name when outside the 24 h window
    template_language: str | None = None
    template_params: tuple[str, ...] = ()
    buttons: tuple[tuple[str, str], ...] = ()   # (id, title) for WhatsApp interactive reply buttons


@dataclass(frozen=True)
class SendResult:
    provider_message_id: str


class SendError(Exception):
    """A send that did not go through; see the module docstring for ``permanent`` and ``reason``."""

    def __init__(self, reason: str, permanent: bool, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.permanent = permanent
        self.detail = detail


class ChannelSender(Protocol):
    channel: str

    async def send(self, message: OutboundMessage) -> SendResult:
        """Deliver one message to the provider. Raises SendError only. Idempotent only as far as the provider
        honours ``idempotency_key``; each adapter documents how far that is."""

    async def aclose(self) -> None:
        """Release connections; the sender is unusable afterwards."""


def permanent_http_status(status: int) -> bool:
    """4xx (other than timeouts and rate limits) and unexpected 1xx/3xx are permanent; 5xx and 408/425/429 are
    not. Redirects are not followed, so a 3xx means a misconfigured URL, which retrying cannot fix."""
    return status < 500 and status not in TRANSIENT_HTTP_STATUSES


def http_error(response: httpx.Response, detail: str = "") -> SendError:
    return SendError(f"http_{response.status_code}", permanent_http_status(response.status_code),
                     detail or f"the provider answered HTTP {response.status_code}")


async def post(client: httpx.AsyncClient, url: str, **kwargs: Any) -> httpx.Response:
    """``client.post`` with transport failures turned into transient SendErrors. The response is returned
    whatever its status; callers classify non-2xx answers with :func:`http_error`."""
    try:
        return await client.post(url, **kwargs)
    except httpx.TimeoutException as exc:
        raise SendError("timeout", False, "the provider did not answer in time") from exc
    except httpx.TransportError as exc:
        raise SendError("connection_failed", False, f"no connection to the provider ({type(exc).__name__})") from exc


def json_object(response: httpx.Response) -> dict:
    """The response body as a JSON object, or ``{}`` when it is anything else."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
