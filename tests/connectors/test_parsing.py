"""What each provider payload becomes: pure connector functions on documented-format fixtures."""

from __future__ import annotations

from datetime import datetime, timezone
from email.message import EmailMessage
from urllib.parse import urlencode

import orjson
import pytest

from services.ingestion.connectors import email as mail
from services.ingestion.connectors import webchat
from services.ingestion.connectors.base import NotConfigured, PayloadError, WebhookRequest
from services.ingestion.connectors.generic import GenericWebhookConnector
from services.ingestion.connectors.intake import CONNECTORS
from services.ingestion.normalise import ingest
from tests.connectors import providers as p
from tests.connectors.conftest import connectors_config

pytestmark = pytest.mark.unit
CONFIG = connectors_config()[p.TENANT]
NOW = datetime(2025, 6, 9, 21, 0, tzinfo=timezone.utc)


def parse(connector: str, body: bytes, section=None):
    request = WebhookRequest("POST", p.BASE_URL, {}, {}, body, NOW)
    return CONNECTORS[connector].parse(request, section or getattr(CONFIG, connector))


def only(parsed):
    [event] = parsed.events
    _, interaction = ingest(event, "t", "DE", NOW)  # what ingestion will make of it: must validate
    return event, interaction


def test_whatsapp_text_message():
    event, i = only(parse("whatsapp", orjson.dumps(p.whatsapp_text("wamid.A1"))))
    assert (event.source, event.id) == ("whatsapp", "wamid.A1")
    assert (i.channel, i.direction, i.text) == ("whatsapp", "inbound", "Hallo, ist meine Bestellung unterwegs?")
    assert [(x.type, x.value) for x in i.identifiers] == [("whatsapp", "+4915112345678")]
    assert i.occurred_at == datetime.fromtimestamp(1749416383, timezone.utc)
    assert i.conversation_id and "4915112345678" not in i.conversation_id, "no phone number in ids"


def test_whatsapp_media_and_interactive_replies():
    _, image = only(parse("whatsapp", orjson.dumps(p.whatsapp_image("wamid.A2"))))
    assert image.text == "Das Paket ist beschädigt"
    assert "media:image:1003383421387256" in image.tags
    _, button = only(parse("whatsapp", orjson.dumps(p.whatsapp_button_reply("wamid.A3"))))
    assert button.text == "Ja, bitte"
    assert {"interactive:button_reply", "choice:confirm-yes", "reply_to:wamid.HBgLMTU1NTA3ODM4ODEVAgARGBI0"} <= set(button.tags)


@pytest.mark.parametrize("status", ["sent", "delivered", "read", "failed"])
def test_whatsapp_statuses_are_outbound_entries(status):
    event, i = only(parse("whatsapp", orjson.dumps(p.whatsapp_status("wamid.OUT1", status))))
    assert event.id == f"wamid.OUT1:status:{status}"
    assert (i.direction, i.tags[0]) == ("outbound", f"status:{status}")
    assert ("error:131047" in i.tags) == (status == "failed")


def test_whatsapp_other_fields_are_ignored_and_foreign_objects_refused():
    account_update = {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [
        {"field": "account_update", "value": {"event": "VERIFIED_ACCOUNT"}}]}]}
    parsed = parse("whatsapp", orjson.dumps(account_update))
    assert parsed.events == [] and parsed.ignored == ["field"]
    with pytest.raises(PayloadError):
        parse("whatsapp", orjson.dumps(p.messenger_message("m_1")))
    with pytest.raises(PayloadError):
        parse("whatsapp", b"not json")


def test_messenger_message_echo_and_postback():
    event, i = only(parse("messenger", orjson.dumps(p.messenger_message("m_1"))))
    assert (event.source, event.id, i.channel, i.direction) == ("facebook", "m_1", "facebook", "inbound")
    assert [(x.type, x.value) for x in i.identifiers] == [("facebook", "6783920147712345")]
    _, echo = only(parse("messenger", orjson.dumps(p.messenger_echo("m_2"))))
    assert echo.direction == "outbound" and echo.identifiers[0].value == "6783920147712345"
    _, postback = only(parse("messenger", orjson.dumps(p.messenger_postback("m_3"))))
    assert (postback.text, postback.tags) == ("Talk to an agent", ["postback"])
    assert echo.conversation_id == postback.conversation_id


def test_instagram_message_and_object_check():
    event, i = only(parse("instagram", orjson.dumps(p.instagram_message("ig_1"))))
    assert (event.source, i.channel, i.identifiers[0].type) == ("instagram", "instagram", "instagram")
    with pytest.raises(PayloadError):
        parse("instagram", orjson.dumps(p.messenger_message("m_1")))


def test_twilio_sms_whatsapp_and_statuses():
    event, sms = only(parse("twilio", urlencode(p.twilio_sms("SM1")).encode()))
    assert (event.id, sms.channel, sms.direction, sms.text) == ("SM1", "sms", "inbound", "STOP sending me offers")
    assert [(x.type, x.value) for x in sms.identifiers] == [("phone", "+4915112345678")]
    _, wa = only(parse("twilio", urlencode(p.twilio_sms("SM2", sender="whatsapp:+4915112345678")).encode()))
    assert (wa.channel, wa.identifiers[0].type) == ("whatsapp", "whatsapp")
    event, status = only(parse("twilio", urlencode(p.twilio_message_status("SM3", "undelivered")).encode()))
    assert event.id == "SM3:status:undelivered"
    assert (status.direction, status.tags) == ("outbound", ["status:undelivered", "error:30003"])


def test_twilio_calls_become_one_phone_interaction_when_final():
    event, call = only(parse("twilio", urlencode(p.twilio_call("CA1")).encode()))
    assert (event.id, call.channel, call.direction) == ("CA1", "phone", "inbound")
    assert call.tags == ["call:completed", "duration:63s"]
    assert call.occurred_at == datetime(2025, 6, 9, 20, 59, 43, tzinfo=timezone.utc)
    _, missed = only(parse("twilio", urlencode(p.twilio_call("CA2", status="no-answer", duration="0")).encode()))
    assert missed.tags[0] == "call:no-answer"
    ringing = parse("twilio", urlencode(p.twilio_call("CA3", status="ringing")).encode())
    assert ringing.events == [] and ringing.reply.content_type == "text/xml"
    with pytest.raises(PayloadError):
        parse("twilio", b"Body=hello")


def test_x_direct_messages_and_mentions():
    event, dm = only(parse("x", orjson.dumps(p.x_dm("1100000000000000001"))))
    assert (event.source, event.id, dm.channel, dm.direction) == ("x", "1100000000000000001", "twitter", "inbound")
    assert [(x.type, x.value) for x in dm.identifiers] == [("twitter", "carlacustomer"), ("twitter_id", "4000000042")]
    _, ours = only(parse("x", orjson.dumps(p.x_dm("1100000000000000002", sender=p.OUR_X_ACCOUNT))))
    assert ours.direction == "outbound" and ours.identifiers[1].value == "4000000042"
    event, mention = only(parse("x", orjson.dumps(p.x_mention("1200000000000000001"))))
    assert (mention.direction, mention.tags, mention.text) == ("inbound", ["mention"], "@AcmeSupport my parcel is late")
    favourite = parse("x", orjson.dumps({"for_user_id": p.OUR_X_ACCOUNT, "favorite_events": [{"id": "1"}]}))
    assert favourite.events == [] and favourite.ignored


def test_generic_standard_webhook():
    connector = GenericWebhookConnector("crm")
    body = orjson.dumps(p.standard_payload())
    request = WebhookRequest("POST", p.BASE_URL, {"webhook-id": "msg_1"}, {}, body, NOW)
    [event] = connector.parse(request, CONFIG.generic["crm"]).events
    assert (event.source, event.id, event.data["channel"]) == ("crm", "msg_1", "web")
    other = WebhookRequest("POST", p.BASE_URL, {"webhook-id": "msg_2"}, {}, b'{"type": "invoice.paid", "data": {}}', NOW)
    assert connector.parse(other, CONFIG.generic["crm"]).events == []


def _email(msg_id: str, sender="Anna <anna@example.org>", to="support@acme.example", **headers) -> bytes:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, to, "Order 4711"
    message["Message-ID"], message["Date"] = msg_id, "Mon, 09 Jun 2025 20:59:43 +0000"
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content("Where is my order?")
    return message.as_bytes()


def test_email_threading_attachments_and_direction():
    first = mail.parse_email(_email("<m1@mail.example.org>"))
    assert (first.message_id, first.root, first.sender) == ("m1@mail.example.org", "m1@mail.example.org", "anna@example.org")
    raw = EmailMessage()
    raw.set_content("See the photo")
    raw.add_attachment(b"\x89PNG fake", maintype="image", subtype="png", filename="damage.png")
    for name, value in (("From", "anna@example.org"), ("To", "support@acme.example"), ("Message-ID", "<m2@x>"),
                        ("In-Reply-To", "<m1@mail.example.org>"), ("References", "<m1@mail.example.org>")):
        raw[name] = value
    second = mail.parse_email(raw.as_bytes())
    assert second.root == "m1@mail.example.org" and second.text == "See the photo"
    [attachment] = second.attachments
    assert (attachment.name, attachment.size, attachment.content_type) == ("damage.png", len(b"\x89PNG fake"), "image/png")
    event = mail.email_event(second, mail.conversation_for("t", second.root), CONFIG.email.addresses)
    assert event.id == "m2@x" and event.data["tags"] == [attachment.tag()]
    assert event.data["conversation_id"] == mail.conversation_for("t", first.root)
    reply = mail.parse_email(_email("<m3@acme>", sender="support@acme.example", to="Anna <anna@example.org>"))
    out = mail.email_event(reply, "c", CONFIG.email.addresses)
    assert out.data["direction"] == "outbound" and out.data["identifiers"] == [{"type": "email", "value": "anna@example.org"}]


def test_email_without_message_id_or_sender():
    message = EmailMessage()
    message["From"] = "anna@example.org"
    message.set_content("hi")
    parsed = mail.parse_email(message.as_bytes())
    assert parsed.message_id.startswith("sha256-"), "an MTA re-delivery still de-duplicates"
    with pytest.raises(PayloadError):
        mail.parse_email(b"Subject: no sender\r\n\r\nbody")


def test_webchat_site_keys_and_tokens():
    config = connectors_config()
    tenant, _ = webchat.tenant_for_site_key(config, p.SITE_KEY, p.SITE_ORIGIN)
    assert tenant == p.TENANT
    with pytest.raises(webchat.Forbidden):
        webchat.tenant_for_site_key(config, p.SITE_KEY, "https://evil.example")
    with pytest.raises(NotConfigured):
        webchat.tenant_for_site_key(config, "nope", p.SITE_ORIGIN)
    conversation, token = webchat.start(tenant, p.SITE_KEY, None, "anna@example.org")
    assert token not in conversation.token_hash
    assert webchat.authorise(conversation, tenant, token) is conversation
    for other_tenant, other_token in ((tenant, "guess"), ("other", token), (tenant, None)):
        with pytest.raises(NotConfigured):
            webchat.authorise(conversation, other_tenant, other_token)
