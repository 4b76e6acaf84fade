"""Facebook Messenger (``object: page``) and Instagram messaging (``object: instagram``) webhooks.

Both use Meta's signature and handshake (``meta.py``) and the same ``entry[].messaging[]`` shape.
What becomes of each event (source ``facebook`` or ``instagram``):
- ``message``: an interaction on channel ``facebook``/``instagram``, id = ``mid``, identifier
  ``facebook``/``instagram`` = the customer's page-scoped id; inbound from the customer, or outbound when it is
  an echo of the page's own message (``is_echo``). ``text`` = the message text; attachments are tagged
  ``attachment:<type>``, quick replies ``quick_reply``.
- ``postback`` (a button press): an inbound interaction, text = the button title, tag ``postback``.
- ``delivery``, ``read``, reactions and others: ignored, answered 200.
"""

from __future__ import annotations

from services.ingestion.connectors.base import (
    Parsed, PayloadError, WebhookRequest, as_dict, as_id, as_list, as_str, from_unix,
    interaction, load_json_object, stable_id,
)
from services.ingestion.connectors.config import MetaAppConfig
from services.ingestion.connectors.meta import MetaConnector

OBJECTS = {"facebook": "page", "instagram": "instagram"}


class MessengerConnector(MetaConnector):
    """``channel`` is ``facebook`` (Messenger, URL segment ``messenger``) or ``instagram``."""

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.source = channel
        self.name = "messenger" if channel == "facebook" else channel

    def parse(self, request: WebhookRequest, config: MetaAppConfig) -> Parsed:
        payload = load_json_object(request.body)
        if payload.get("object") != OBJECTS[self.channel]:
            raise PayloadError(f"object is not {OBJECTS[self.channel]}")
        parsed = Parsed()
        for entry in as_list(payload.get("entry")):
            entry = as_dict(entry)
            account = as_str(entry.get("id")) or ""
            if not as_list(entry.get("messaging")):
                parsed.ignored.append("no_messaging")
            for item in as_list(entry.get("messaging")):
                event = self.messaging_event(as_dict(item), account)
                if event is None:
                    parsed.ignored.append("not_a_message")
                else:
                    parsed.events.append(event)
        return parsed

    def messaging_event(self, item: dict, account: str):
        sender = as_str(as_dict(item.get("sender")).get("id"), 320)
        recipient = as_str(as_dict(item.get("recipient")).get("id"), 320)
        when = from_unix(item.get("timestamp"), millis=True)
        if isinstance(item.get("message"), dict):
            return self._message(item["message"], sender, recipient, account, when)
        if isinstance(item.get("postback"), dict):
            return self._postback(item["postback"], sender, account, when, item.get("timestamp"))
        return None

    def _message(self, message: dict, sender, recipient, account: str, when):
        echo = message.get("is_echo") is True
        customer = recipient if echo else sender
        mid = as_id(message.get("mid"))
        if customer is None or mid is None:
            return None
        tags = [f"attachment:{as_str(as_dict(a).get('type'), 40) or 'unknown'}"
                for a in as_list(message.get("attachments"))[:10]]
        if isinstance(message.get("quick_reply"), dict):
            tags.append("quick_reply")
        return self._event(mid, "outbound" if echo else "inbound", customer, account,
                           as_str(message.get("text")), tags, when)

    def _postback(self, postback: dict, sender, account: str, when, timestamp):
        if sender is None:
            return None
        mid = as_id(postback.get("mid")) or as_id(f"postback:{sender}:{as_str(timestamp) or ''}")
        return self._event(mid, "inbound", sender, account, as_str(postback.get("title")), ["postback"], when)

    def _event(self, event_id: str, direction: str, customer: str, account: str, text, tags, when):
        data = {"channel": self.channel, "direction": direction,
                "identifiers": [{"type": self.channel, "value": customer}],
                "conversation_id": stable_id(self.channel, account, customer), "tags": tags}
        if text:
            data["text"] = text[:65536]
        return interaction(self.source, event_id, data, when)
