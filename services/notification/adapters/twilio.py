"""SMS through the Twilio Messages API (or anything speaking it).

Request: ``POST {base_url}/2010-04-01/Accounts/{account_sid}/Messages.json``, HTTP basic auth
``account_sid:auth_token``, form-encoded ``To``, ``From``, ``Body`` and (when configured) ``StatusCallback``,
header ``I-Twilio-Idempotency-Token: <idempotency_key>`` so a resend after a crash or a lost response is
recognised by the provider instead of producing a second SMS. Success: 2xx with JSON ``{"sid": "SM…", …}``;
the ``sid`` is the provider message id that status callbacks refer to.

Failures: 4xx (invalid number, unverified sender, wrong credentials) is permanent except 408/429; 5xx, a
timeout or no connection is transient. A 2xx without a ``sid`` is transient (``invalid_response``): the SMS
may have gone out, and the retry carries the same idempotency token.
"""

from __future__ import annotations

import httpx
from pydantic import SecretStr

from services.notification.adapters import OutboundMessage, SendError, SendResult, http_error, json_object, post

IDEMPOTENCY_HEADER = "I-Twilio-Idempotency-Token"


def form_for(message: OutboundMessage, from_number: str, status_callback_url: str | None) -> dict[str, str]:
    form = {"To": message.to, "From": from_number, "Body": message.text}
    if status_callback_url:
        form["StatusCallback"] = status_callback_url
    return form


class TwilioSmsSender:
    channel = "sms"

    def __init__(self, base_url: str, account_sid: str, auth_token: SecretStr, from_number: str,
                 status_callback_url: str | None = None, timeout: float = 10.0,
                 client: httpx.AsyncClient | None = None) -> None:
        self.base_url, self.account_sid, self.from_number = base_url.rstrip("/"), account_sid, from_number
        self.status_callback_url = status_callback_url
        self._token = auth_token if isinstance(auth_token, SecretStr) else SecretStr(auth_token)
        self._client = client or httpx.AsyncClient(timeout=timeout)
        self.url = f"{self.base_url}/2010-04-01/Accounts/{account_sid}/Messages.json"

    def __repr__(self) -> str:
        return (f"TwilioSmsSender(base_url={self.base_url!r}, account_sid={self.account_sid!r}, "
                f"auth_token={self._token!r}, from_number={self.from_number!r})")

    async def send(self, message: OutboundMessage) -> SendResult:
        """Creates one message. Raises SendError. Idempotent per ``idempotency_key`` as far as the provider
        honours the idempotency token."""
        if not message.text:
            raise SendError("invalid_message", True, "an SMS needs a body")
        response = await post(
            self._client, self.url, data=form_for(message, self.from_number, self.status_callback_url),
            auth=httpx.BasicAuth(self.account_sid, self._token.get_secret_value()),
            headers={IDEMPOTENCY_HEADER: message.idempotency_key, "Accept": "application/json"},
        )
        body = json_object(response)
        if not response.is_success:
            raise http_error(response, _error_detail(response.status_code, body))
        sid = body.get("sid")
        if not isinstance(sid, str) or not sid:
            raise SendError("invalid_response", False, "the provider accepted the request but returned no sid")
        return SendResult(sid)

    async def aclose(self) -> None:
        await self._client.aclose()


def _error_detail(status: int, body: dict) -> str:
    """Twilio's numeric error code only: its ``message`` often repeats the phone number."""
    code = body.get("code")
    suffix = f", Twilio error {code}" if isinstance(code, int) else ""
    return f"the provider answered HTTP {status}{suffix}"
