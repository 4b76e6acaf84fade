"""Twilio SMS, WhatsApp-via-Twilio and voice webhooks (``application/x-www-form-urlencoded``).

Signature: ``X-Twilio-Signature`` = base64(HMAC-SHA1(auth token, full URL + every POST parameter name and
value, names sorted)). The URL must be the one Twilio called: behind a proxy, set ``TOUCHPOINT_PUBLIC_URL``.
No timestamp: replay protection is the de-duplication of ``MessageSid``/``CallSid``.

What becomes of each callback (source ``twilio``); the answer is always empty TwiML (``<Response/>``):
- inbound message (``MessageSid``, no status or ``received``): an inbound ``sms`` interaction (``whatsapp``
  when ``From`` is ``whatsapp:+…``), id = ``MessageSid``, identifier ``phone`` (or ``whatsapp``) = ``From``,
  ``text`` = ``Body``, tags ``media:<content type>`` per attachment.
- message status callback (``MessageStatus`` queued/sent/delivered/undelivered/failed/read): an outbound
  interaction to ``To`` tagged ``status:<status>`` (and ``error:<ErrorCode>``), id = ``<MessageSid>:status:<s>``.
- call status callback with a final status (completed, busy, no-answer, failed, canceled): one ``phone``
  interaction per call, id = ``CallSid``, inbound (identifier ``From``) or outbound (``To``) by ``Direction``,
  tags ``call:<status>`` and ``duration:<seconds>s``. Intermediate statuses (ringing, in-progress): ignored.
"""

from __future__ import annotations

from email.utils import parsedate_to_datetime
from urllib.parse import parse_qsl

from services.ingestion.connectors.base import (
    Connector, Parsed, PayloadError, Reply, SignatureError, WebhookRequest, as_id, as_str, interaction, stable_id,
)
from services.ingestion.connectors.config import TwilioConfig
from shared.signatures import signature_matches, twilio_signature

SIGNATURE_HEADER = "x-twilio-signature"
FINAL_CALL_STATUSES = {"completed", "busy", "no-answer", "failed", "canceled"}
TWIML_EMPTY = Reply(b'<?xml version="1.0" encoding="UTF-8"?><Response/>', "text/xml")
SOURCE = "twilio"

Params = dict[str, list[str]]


def form_params(body: bytes) -> Params:
    """The POST parameters; raises PayloadError for a body that is not UTF-8 form encoding."""
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise PayloadError("the body is not form-encoded UTF-8") from None
    params: Params = {}
    for name, value in pairs:
        params.setdefault(name, []).append(value)
    return params


class TwilioConnector(Connector[TwilioConfig]):
    name = "twilio"
    source = SOURCE

    def verify(self, request: WebhookRequest, config: TwilioConfig) -> None:
        given = request.header(SIGNATURE_HEADER)
        if not given:
            raise SignatureError(f"the {SIGNATURE_HEADER} header is missing", "signature_missing")
        expected = twilio_signature(request.url, form_params(request.body), config.auth_token.get_secret_value())
        if not signature_matches(expected.encode(), given):
            raise SignatureError("the signature does not match the URL and parameters")

    def parse(self, request: WebhookRequest, config: TwilioConfig) -> Parsed:
        params = {name: values[0] for name, values in form_params(request.body).items()}
        if as_id(params.get("CallSid")):
            event = call_event(params)
            return Parsed([event] if event else [], [] if event else ["call_not_final"], TWIML_EMPTY)
        if not as_id(params.get("MessageSid")):
            raise PayloadError("neither MessageSid nor CallSid is present")
        status = as_str(params.get("MessageStatus"), 40)
        event = message_event(params) if status in (None, "received", "receiving") else status_event(params, status)
        return Parsed([event] if event else [], [] if event else ["no_counterpart"], TWIML_EMPTY)


def _address(raw: str | None) -> tuple[str, str, str] | None:
    """(channel, identifier type, value) of a Twilio address: ``whatsapp:+49…`` or a phone number."""
    if raw is None:
        return None
    if raw.startswith("whatsapp:"):
        return ("whatsapp", "whatsapp", raw[9:]) if raw[9:] else None
    return "sms", "phone", raw


def message_event(params: dict[str, str]):
    sender = _address(as_str(params.get("From"), 320))
    if sender is None:
        return None
    channel, id_type, value = sender
    tags = []
    for n in range(min(_int(params.get("NumMedia")), 10)):
        tags.append(f"media:{as_str(params.get(f'MediaContentType{n}'), 100) or 'unknown'}")
    data = {"channel": channel, "direction": "inbound", "identifiers": [{"type": id_type, "value": value}],
            "conversation_id": stable_id(SOURCE, params.get("To") or "", value), "tags": tags}
    body = as_str(params.get("Body"))
    if body:
        data["text"] = body[:65536]
    return interaction(SOURCE, as_id(params["MessageSid"]), data)


def status_event(params: dict[str, str], status: str):
    recipient = _address(as_str(params.get("To"), 320))
    if recipient is None:
        return None
    channel, id_type, value = recipient
    tags = [f"status:{status}"]
    error = as_str(params.get("ErrorCode"), 40)
    if error:
        tags.append(f"error:{error}")
    data = {"channel": channel, "direction": "outbound", "identifiers": [{"type": id_type, "value": value}],
            "tags": tags}
    return interaction(SOURCE, f"{as_id(params['MessageSid'])}:status:{status}", data)


def call_event(params: dict[str, str]):
    status = as_str(params.get("CallStatus"), 40)
    if status not in FINAL_CALL_STATUSES:
        return None
    inbound = (as_str(params.get("Direction")) or "inbound") == "inbound"
    customer = as_str(params.get("From" if inbound else "To"), 320)
    if customer is None:
        return None
    tags = [f"call:{status}", f"duration:{_int(params.get('CallDuration'))}s"]
    data = {"channel": "phone", "direction": "inbound" if inbound else "outbound",
            "identifiers": [{"type": "phone", "value": customer}], "tags": tags}
    return interaction(SOURCE, as_id(params["CallSid"]), data, _rfc2822(params.get("Timestamp")))


def _int(value: str | None) -> int:
    try:
        return max(0, int(value or 0))
    except ValueError:
        return 0


def _rfc2822(value: str | None):
    try:
        parsed = parsedate_to_datetime(value) if value else None
    except (TypeError, ValueError, IndexError):
        return None
    return parsed if parsed is not None and parsed.tzinfo is not None else None
