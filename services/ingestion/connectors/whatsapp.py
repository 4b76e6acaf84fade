"""WhatsApp Business Cloud API webhooks (``object: whatsapp_business_account``, field ``messages``).

What becomes of each notification (source ``whatsapp``):
- ``messages[]`` (text, image/audio/video/document/sticker, interactive button or list replies, template
  button answers, location, contacts, reaction, ...): an inbound ``whatsapp`` interaction, id = the ``wamid``,
  identifier ``whatsapp`` = the sender's WhatsApp id (normalised to E.164), ``text`` = body, caption or the
  chosen button's title, tags ``whatsapp:<type>``, ``media:<kind>:<media id>``, ``reply_to:<wamid>``;
  ``conversation_id`` is stable per business number and customer.
- ``statuses[]`` (sent, delivered, read, failed) for our outbound messages: an *outbound* interaction tagged
  ``status:<status>`` (and ``error:<code>``), id = ``<wamid>:status:<status>``; upstream has no separate
  status event type, so delivery updates show on the timeline as outbound entries.
- other fields (account updates, templates) and notifications without sender or id: ignored, answered 200.
"""

from __future__ import annotations

from services.ingestion.connectors.base import (
    Parsed, PayloadError, WebhookRequest, as_dict, as_id, as_list, as_str, from_unix,
    interaction, load_json_object, stable_id,
)
from services.ingestion.connectors.config import MetaAppConfig
from services.ingestion.connectors.meta import MetaConnector

MEDIA = ("image", "audio", "video", "document", "sticker")
SOURCE = "whatsapp"


class WhatsAppConnector(MetaConnector):
    name = "whatsapp"
    source = SOURCE

    def parse(self, request: WebhookRequest, config: MetaAppConfig) -> Parsed:
        payload = load_json_object(request.body)
        if payload.get("object") != "whatsapp_business_account":
            raise PayloadError("object is not whatsapp_business_account")
        parsed = Parsed()
        for entry in as_list(payload.get("entry")):
            for change in as_list(as_dict(entry).get("changes")):
                change = as_dict(change)
                if change.get("field") != "messages":
                    parsed.ignored.append("field")
                    continue
                _parse_value(as_dict(change.get("value")), parsed)
        return parsed


def _parse_value(value: dict, parsed: Parsed) -> None:
    business = as_str(as_dict(value.get("metadata")).get("phone_number_id")) or ""
    for message in as_list(value.get("messages")):
        event = message_event(as_dict(message), business)
        _add(parsed, event, "message_without_sender_or_id")
    for status in as_list(value.get("statuses")):
        _add(parsed, status_event(as_dict(status)), "status_without_recipient_or_id")


def _add(parsed: Parsed, event, reason: str) -> None:
    if event is None:
        parsed.ignored.append(reason)
    else:
        parsed.events.append(event)


def message_event(message: dict, business: str):
    sender, wamid = as_str(message.get("from"), 320), as_id(message.get("id"))
    if sender is None or wamid is None:
        return None
    kind = as_str(message.get("type"), 40) or "unknown"
    text, tags = message_content(message, kind)
    reply_to = as_id(as_dict(message.get("context")).get("id"))
    if reply_to:
        tags.append(f"reply_to:{reply_to}")
    data = {"channel": "whatsapp", "direction": "inbound",
            "identifiers": [{"type": "whatsapp", "value": sender}],
            "conversation_id": stable_id("whatsapp", business, sender), "tags": tags}
    if text:
        data["text"] = text[:65536]
    return interaction(SOURCE, wamid, data, from_unix(message.get("timestamp")))


def message_content(message: dict, kind: str) -> tuple[str | None, list[str]]:
    """(text, tags) of one inbound message by its type."""
    tags = [f"whatsapp:{kind}"]
    body = as_dict(message.get(kind))
    if kind == "text":
        return as_str(body.get("body")), tags
    if kind in MEDIA:
        media_id = as_id(body.get("id"))
        if media_id:
            tags.append(f"media:{kind}:{media_id}")
        return as_str(body.get("caption")), tags
    if kind == "interactive":
        reply_kind = as_str(body.get("type"), 40) or "unknown"
        reply = as_dict(body.get(reply_kind))
        tags.append(f"interactive:{reply_kind}")
        if as_id(reply.get("id")):
            tags.append(f"choice:{as_id(reply.get('id'))}")
        return as_str(reply.get("title")), tags
    if kind == "button":
        return as_str(body.get("text")), tags
    if kind == "reaction":
        return as_str(body.get("emoji")), tags
    return None, tags


def status_event(status: dict):
    recipient, wamid = as_str(status.get("recipient_id"), 320), as_id(status.get("id"))
    state = as_str(status.get("status"), 40)
    if recipient is None or wamid is None or state is None:
        return None
    tags = [f"status:{state}"]
    for error in as_list(status.get("errors"))[:5]:
        code = as_str(as_dict(error).get("code"), 40)
        if code:
            tags.append(f"error:{code}")
    data = {"channel": "whatsapp", "direction": "outbound",
            "identifiers": [{"type": "whatsapp", "value": recipient}], "tags": tags}
    return interaction(SOURCE, f"{wamid}:status:{state}", data, from_unix(status.get("timestamp")))
