"""WhatsApp through the WhatsApp Business Cloud API (or anything speaking it).

Request: ``POST {base_url}/{api_version}/{phone_number_id}/messages``, ``Authorization: Bearer <token>``, JSON
``{"messaging_product": "whatsapp", "recipient_type": "individual", "to": <E.164>, "type": …}`` with one of:

- ``"template"`` when the message names an approved template (the only kind allowed outside the 24 h customer
  service window): ``{"name", "language": {"code"}, "components": [{"type": "body", "parameters":
  [{"type": "text", "text": …}]}]}`` (``components`` left out when the template has no parameters);
- ``"interactive"`` when it has reply buttons: ``{"type": "button", "body": {"text"}, "action": {"buttons":
  [{"type": "reply", "reply": {"id", "title"}}]}}`` — at most 3 buttons, titles of at most 20 characters;
- ``"text"`` otherwise: ``{"body": …}``.

Success: 2xx with ``{"messages": [{"id": "wamid.…"}]}``; that id is what status webhooks refer to.

Idempotency: the Cloud API has no idempotency header. ``X-Idempotency-Key`` is sent anyway (proxies and test
receivers use it), but the provider does not de-duplicate: after a crash between request and response, not
sending twice is up to the caller's in-doubt handling.

Failures: Meta's rate-limit and temporary error codes are transient whatever the HTTP status; otherwise 4xx
(invalid number, template not approved, outside the 24 h window, wrong token) is permanent except 408/429,
and 5xx, a timeout or no connection is transient. Messages the API would refuse (too many buttons, titles too
long, a template without a language) fail before any request as ``invalid_message``.
"""

from __future__ import annotations

import httpx
from pydantic import SecretStr

from services.notification.adapters import (
    OutboundMessage, SendError, SendResult, json_object, permanent_http_status, post,
)

IDEMPOTENCY_HEADER = "X-Idempotency-Key"
MAX_BUTTONS = 3
MAX_BUTTON_TITLE = 20
MAX_BUTTON_ID = 256
MAX_TEXT = 4096
MAX_INTERACTIVE_TEXT = 1024
# Throughput limits (4, 80007, 130429, 131048, 131056) and temporary platform errors (1, 2, 131000, 131016).
TRANSIENT_META_CODES = frozenset({1, 2, 4, 80007, 130429, 131000, 131016, 131048, 131056})


def payload_for(message: OutboundMessage) -> dict:
    """The Cloud API request body. Raises SendError(invalid_message) for a message the API would refuse."""
    base = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": message.to}
    if message.template:
        return {**base, "type": "template", "template": _template(message)}
    if message.buttons:
        return {**base, "type": "interactive", "interactive": _interactive(message)}
    _require(0 < len(message.text) <= MAX_TEXT, f"a text message has 1 to {MAX_TEXT} characters")
    return {**base, "type": "text", "text": {"body": message.text}}


def _template(message: OutboundMessage) -> dict:
    _require(bool(message.template_language), "a template message needs a language")
    template: dict = {"name": message.template, "language": {"code": message.template_language}}
    if message.template_params:
        parameters = [{"type": "text", "text": value} for value in message.template_params]
        template["components"] = [{"type": "body", "parameters": parameters}]
    return template


def _interactive(message: OutboundMessage) -> dict:
    buttons = message.buttons
    _require(len(buttons) <= MAX_BUTTONS, f"at most {MAX_BUTTONS} reply buttons")
    _require(all(0 < len(title) <= MAX_BUTTON_TITLE for _, title in buttons),
             f"button titles have 1 to {MAX_BUTTON_TITLE} characters")
    _require(all(0 < len(button_id) <= MAX_BUTTON_ID for button_id, _ in buttons),
             f"button ids have 1 to {MAX_BUTTON_ID} characters")
    _require(len({b for b, _ in buttons}) == len(buttons) and len({t for _, t in buttons}) == len(buttons),
             "button ids and titles are unique")
    _require(0 < len(message.text) <= MAX_INTERACTIVE_TEXT,
             f"an interactive message body has 1 to {MAX_INTERACTIVE_TEXT} characters")
    return {"type": "button", "body": {"text": message.text}, "action": {"buttons": [
        {"type": "reply", "reply": {"id": button_id, "title": title}} for button_id, title in buttons]}}


def _require(condition: bool, rule: str) -> None:
    if not condition:
        raise SendError("invalid_message", True, f"WhatsApp rule broken: {rule}")


class WhatsAppCloudSender:
    channel = "whatsapp"

    def __init__(self, base_url: str, phone_number_id: str, access_token: SecretStr, api_version: str = "v21.0",
                 timeout: float = 10.0, client: httpx.AsyncClient | None = None) -> None:
        self.base_url, self.phone_number_id, self.api_version = base_url.rstrip("/"), phone_number_id, api_version
        self._token = access_token if isinstance(access_token, SecretStr) else SecretStr(access_token)
        self._client = client or httpx.AsyncClient(timeout=timeout)
        self.url = f"{self.base_url}/{api_version}/{phone_number_id}/messages"

    def __repr__(self) -> str:
        return (f"WhatsAppCloudSender(base_url={self.base_url!r}, phone_number_id={self.phone_number_id!r}, "
                f"access_token={self._token!r}, api_version={self.api_version!r})")

    async def send(self, message: OutboundMessage) -> SendResult:
        """Sends one message. Raises SendError. Not idempotent at the provider (see the module docstring)."""
        headers = {"Authorization": f"Bearer {self._token.get_secret_value()}",
                   IDEMPOTENCY_HEADER: message.idempotency_key}
        response = await post(self._client, self.url, json=payload_for(message), headers=headers)
        body = json_object(response)
        if not response.is_success:
            raise meta_error(response, body)
        message_id = _first_message_id(body)
        if message_id is None:
            raise SendError("invalid_response", False, "the provider accepted the request but returned no id")
        return SendResult(message_id)

    async def aclose(self) -> None:
        await self._client.aclose()


def meta_error(response: httpx.Response, body: dict) -> SendError:
    error = body.get("error") if isinstance(body.get("error"), dict) else {}
    code = error.get("code") if isinstance(error.get("code"), int) else None
    status = response.status_code
    detail = f"the provider answered HTTP {status}" + (f", Meta error {code}" if code is not None else "")
    return SendError(f"http_{status}", permanent_http_status(status) and code not in TRANSIENT_META_CODES, detail)


def _first_message_id(body: dict) -> str | None:
    messages = body.get("messages")
    first = messages[0] if isinstance(messages, list) and messages else None
    message_id = first.get("id") if isinstance(first, dict) else None
    return message_id if isinstance(message_id, str) and message_id else None
