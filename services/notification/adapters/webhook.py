"""Signed outbound webhooks in the Standard Webhooks format (https://www.standardwebhooks.com).

Request: ``POST`` to the recipient's webhook address (``message.to`` when it is an http(s) URL, else the
sender's configured ``url``), ``Content-Type: application/json``, body::

    {"type": "notification.message",
     "data": {"notification_id", "subject", "text", "html", "buttons": [{"id", "title"}]}}

and headers ``webhook-id`` = the idempotency key (the same on every retry, so the receiver de-duplicates),
``webhook-timestamp`` = Unix seconds of this attempt, ``webhook-signature`` = ``v1,<base64 HMAC-SHA256 of
"<id>.<timestamp>.<body>">`` keyed with the secret (``whsec_<base64>`` → its decoded bytes). The body does not
change between retries; only the timestamp and signature do.

Success: any 2xx; the provider message id is the ``webhook-id``. Failures: 4xx is permanent except 408/429,
5xx, a timeout or no connection is transient; redirects are not followed and count as permanent.
"""

from __future__ import annotations

import time
from typing import Callable

import httpx
import orjson
from pydantic import SecretStr

from services.notification.adapters import OutboundMessage, SendError, SendResult, http_error, post
from shared.signatures import standard_headers

EVENT_TYPE = "notification.message"


def body_for(message: OutboundMessage) -> bytes:
    data = {"notification_id": message.notification_id, "subject": message.subject, "text": message.text,
            "html": message.html, "buttons": [{"id": i, "title": t} for i, t in message.buttons]}
    return orjson.dumps({"type": EVENT_TYPE, "data": data})


class WebhookSender:
    channel = "webhook"

    def __init__(self, url: str | None, secret: SecretStr, timeout: float = 10.0,
                 client: httpx.AsyncClient | None = None, clock: Callable[[], float] = time.time) -> None:
        self.url = url
        self._secret = secret if isinstance(secret, SecretStr) else SecretStr(secret)
        self._client = client or httpx.AsyncClient(timeout=timeout)
        self._clock = clock

    def __repr__(self) -> str:
        return f"WebhookSender(url={self.url!r}, secret={self._secret!r})"

    async def send(self, message: OutboundMessage) -> SendResult:
        """Posts one signed event. Raises SendError. Idempotent for receivers that de-duplicate ``webhook-id``,
        as Standard Webhooks asks them to."""
        target = message.to if message.to.startswith(("https://", "http://")) else self.url
        if not target:
            raise SendError("no_endpoint", True, "neither the recipient nor the sender has a webhook URL")
        body = body_for(message)
        headers = standard_headers(self._secret.get_secret_value(), message.idempotency_key,
                                   int(self._clock()), body)
        response = await post(self._client, target, content=body,
                              headers={**headers, "Content-Type": "application/json"})
        if not response.is_success:
            raise http_error(response)
        return SendResult(message.idempotency_key)

    async def aclose(self) -> None:
        await self._client.aclose()
