"""The channel adapters against real local receivers (tests/support/receivers.py) that check every request in
the provider's format: what goes over the wire, how failures are classified, that secrets stay hidden.

Marked ``unit``: the receivers are in-process servers on 127.0.0.1, no Kafka or PostgreSQL is needed."""

from __future__ import annotations

import smtplib
import socket
import time

import httpx
import pytest
from pydantic import SecretStr

from services.notification.adapters import OutboundMessage, SendError
from services.notification.adapters.smtp import SmtpSender
from services.notification.adapters.twilio import TwilioSmsSender
from services.notification.adapters.webhook import WebhookSender
from services.notification.adapters.whatsapp import WhatsAppCloudSender
from tests.support.receivers import SmtpReceiver, TwilioReceiver, WebhookReceiver, WhatsAppReceiver
from tests.support.stack import free_port

pytestmark = pytest.mark.unit

SENDER = "Touchpoint <notifications@touchpoint.example>"
CALLBACK = "https://notify.acme.example/v1/callbacks/twilio"
PHONE = "+4915112345678"


def email(key: str = "n-1:email", html: str | None = "<p>Hallo Jürgen, <b>Grüße</b></p>") -> OutboundMessage:
    return OutboundMessage("n-1", key, "email", "Jürgen Müller <juergen@example.com>", "Ist Ihr Problem gelöst?",
                           "Hallo Jürgen,\nist Ihr Problem gelöst? Grüße aus Köln", html)


def sms(key: str = "n-1:sms", to: str = PHONE) -> OutboundMessage:
    return OutboundMessage("n-1", key, "sms", to, None, "Ihre Sendung verspätet sich: neue Zustellung Dienstag.")


def whatsapp(key: str = "n-1:whatsapp", **kw) -> OutboundMessage:
    return OutboundMessage("n-1", key, "whatsapp", PHONE, None, kw.pop("text", "Ist Ihr Problem gelöst?"), **kw)


@pytest.fixture
def smtp_server():
    with SmtpReceiver() as receiver:
        yield receiver


@pytest.fixture
async def twilio():
    with TwilioReceiver() as receiver:
        sender = TwilioSmsSender(receiver.url, receiver.account_sid, SecretStr(receiver.auth_token), "+4930555000",
                                 CALLBACK)
        yield receiver, sender
        await sender.aclose()


@pytest.fixture
async def meta():
    with WhatsAppReceiver() as receiver:
        sender = WhatsAppCloudSender(receiver.url, receiver.phone_number_id, SecretStr(receiver.access_token))
        yield receiver, sender
        await sender.aclose()


@pytest.fixture
async def hook():
    with WebhookReceiver() as receiver:
        sender = WebhookSender(None, SecretStr(receiver.secret))
        yield receiver, sender
        await sender.aclose()


async def failure(send) -> SendError:
    with pytest.raises(SendError) as raised:
        await send
    return raised.value


# --- email --------------------------------------------------------------------------------------------------


async def test_email_is_utf8_multipart_with_the_message_id_of_the_idempotency_key(smtp_server):
    result = await SmtpSender(smtp_server.host, smtp_server.port, SENDER).send(email("n-1.email"))

    [received] = await smtp_server.wait_for(1)
    assert result.provider_message_id == received["Message-ID"] == "<n-1.email@touchpoint>"
    assert received["Subject"] == "Ist Ihr Problem gelöst?"
    assert received.get_content_type() == "multipart/alternative"
    assert received.get_body(("plain",)).get_content().rstrip("\n") == email().text
    assert received.get_body(("html",)).get_content().rstrip("\n") == email().html
    assert received["Auto-Submitted"] == "auto-generated"
    assert smtp_server.envelopes == [("notifications@touchpoint.example", ["juergen@example.com"])]
    assert smtp_server.rejections == []


async def test_email_without_html_is_plain_text_and_unsafe_key_characters_are_escaped(smtp_server):
    result = await SmtpSender(smtp_server.host, smtp_server.port, SENDER).send(email("n 1:email<>", html=None))

    [received] = await smtp_server.wait_for(1)
    assert received.get_content_type() == "text/plain" and received.get_content_charset() == "utf-8"
    assert result.provider_message_id == received["Message-ID"] == "<n%201%3Aemail%3C%3E@touchpoint>"


async def test_the_smtp_receiver_refuses_a_malformed_email(smtp_server):
    raw = ("From: a@example.com\r\nTo: b@example.com\r\nSubject: Grüße\r\nDate: Mon, 1 Jun 2026 10:00:00 +0000\r\n"
           "Message-ID: <x@touchpoint>\r\n\r\nhi\r\n").encode()
    missing_id = (b"From: a@example.com\r\nTo: b@example.com\r\nSubject: s\r\n"
                  b"Date: Mon, 1 Jun 2026 10:00:00 +0000\r\n\r\nhi")
    with smtplib.SMTP(smtp_server.host, smtp_server.port) as client:
        for message in (raw, missing_id):
            with pytest.raises(smtplib.SMTPDataError) as refused:
                client.sendmail("a@example.com", ["b@example.com"], message)
            assert refused.value.smtp_code == 554
    assert smtp_server.messages == []
    assert smtp_server.rejections == ["8-bit header without SMTPUTF8 (non-ASCII headers must be RFC 2047 encoded)",
                                      "exactly one Message-ID header is required"]


@pytest.mark.parametrize("code, permanent", [(451, False), (421, False), (550, True), (554, True)])
async def test_smtp_replies_are_classified(smtp_server, code, permanent):
    smtp_server.fail_next(1, code)
    error = await failure(SmtpSender(smtp_server.host, smtp_server.port, SENDER).send(email()))
    assert (error.reason, error.permanent) == (f"smtp_{code}", permanent)
    assert smtp_server.messages == []


async def test_smtp_authentication_and_a_server_that_comes_back():
    receiver = SmtpReceiver(username="mailer", password="s3cret-smtp")
    sender = SmtpSender(receiver.host, receiver.port, SENDER, "mailer", SecretStr("s3cret-smtp"))
    error = await failure(sender.send(email()))
    assert (error.reason, error.permanent) == ("connection_failed", False), "nothing listens yet"

    with receiver:
        wrong = SmtpSender(receiver.host, receiver.port, SENDER, "mailer", SecretStr("wrong"))
        assert (await failure(wrong.send(email()))).reason == "smtp_535"
        anonymous = SmtpSender(receiver.host, receiver.port, SENDER)
        assert ((await failure(anonymous.send(email()))).reason,) == ("smtp_530",)
        await sender.send(email())
    with receiver:   # restarted on the same port: the retry with the same key arrives, counted per Message-ID
        await sender.send(email())
    assert receiver.count("<n-1%3Aemail@touchpoint>") == 2
    assert receiver.duplicates == {"<n-1%3Aemail@touchpoint>": 2}


async def test_an_address_with_a_line_break_is_refused_before_connecting():
    message = OutboundMessage("n-1", "k", "email", "a@example.com\r\nBcc: x@example.com", "s", "t")
    error = await failure(SmtpSender("127.0.0.1", free_port(), SENDER).send(message))
    assert (error.reason, error.permanent) == ("invalid_message", True)


# --- Twilio SMS ---------------------------------------------------------------------------------------------


async def test_twilio_message_request(twilio):
    receiver, sender = twilio
    result = await sender.send(sms())

    [received] = receiver.messages
    assert result.provider_message_id == received.sid and received.sid.startswith("SM")
    assert (received.to, received.from_, received.body) == (PHONE, "+4930555000", sms().text)
    assert received.status_callback == CALLBACK
    assert received.idempotency_token == "n-1:sms"


async def test_the_twilio_receiver_refuses_malformed_requests(twilio):
    receiver, _ = twilio
    url = f"{receiver.url}/2010-04-01/Accounts/{receiver.account_sid}/Messages.json"
    auth = (receiver.account_sid, receiver.auth_token)
    token = {"I-Twilio-Idempotency-Token": "k"}
    form = {"To": PHONE, "From": "+4930555000", "Body": "hi"}
    async with httpx.AsyncClient(auth=auth) as client:
        cases = {
            "Content-Type must be application/x-www-form-urlencoded": client.post(url, json=form, headers=token),
            "I-Twilio-Idempotency-Token header is required": client.post(url, data=form),
            "unexpected parameters ['MediaUrl']": client.post(url, data=form | {"MediaUrl": "x"}, headers=token),
            "To is not an E.164 phone number": client.post(url, data=form | {"To": "0151 123"}, headers=token),
            "Body must have 1 to 1600 characters": client.post(url, data=form | {"Body": ""}, headers=token),
            "unknown path /2010-04-01/Accounts/ACx/Messages.json": client.post(
                url.replace(receiver.account_sid, "ACx"), data=form, headers=token),
        }
        for reason, request in cases.items():
            response = await request
            assert (response.status_code, response.json()["message"]) == (400, reason)
        assert (await client.post(url, data=form, headers=token)).status_code == 201, "the control case passes"
    assert receiver.rejections == list(cases)
    assert len(receiver.messages) == 1


async def test_twilio_refusals_are_permanent_and_never_show_the_token(twilio):
    receiver, _ = twilio
    wrong = TwilioSmsSender(receiver.url, receiver.account_sid, SecretStr("not-the-token"), "+4930555000")
    error = await failure(wrong.send(sms()))
    assert (error.reason, error.permanent) == ("http_401", True)
    assert "Twilio error 20003" in error.detail and "not-the-token" not in str(error)
    await wrong.aclose()

    _, sender = twilio
    error = await failure(sender.send(sms(to="0151 2345678")))
    assert (error.reason, error.permanent) == ("http_400", True)
    assert "0151" not in str(error), "provider messages may repeat the number; only the code is kept"


@pytest.mark.parametrize("status, permanent", [(500, False), (503, False), (429, False), (408, False),
                                               (400, True), (404, True), (403, True)])
async def test_provider_statuses_are_classified(twilio, status, permanent):
    receiver, sender = twilio
    receiver.fail_next(1, status)
    error = await failure(sender.send(sms()))
    assert (error.reason, error.permanent) == (f"http_{status}", permanent)
    assert receiver.messages == []
    await sender.send(sms())
    assert receiver.count("n-1:sms") == 1


async def test_no_connection_and_no_answer_are_transient():
    sender = TwilioSmsSender(f"http://127.0.0.1:{free_port()}", "AC1", SecretStr("t"), "+4930555000")
    error = await failure(sender.send(sms()))
    assert (error.reason, error.permanent) == ("connection_failed", False)
    await sender.aclose()

    with socket.socket() as silent:   # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        slow = TwilioSmsSender(f"http://127.0.0.1:{silent.getsockname()[1]}", "AC1", SecretStr("t"), "+4930555000",
                               timeout=0.3)
        error = await failure(slow.send(sms()))
        await slow.aclose()
    assert (error.reason, error.permanent) == ("timeout", False)


# --- WhatsApp Cloud API -------------------------------------------------------------------------------------


async def test_whatsapp_text_template_and_reply_buttons(meta):
    receiver, sender = meta
    await sender.send(whatsapp("k-text"))
    await sender.send(whatsapp("k-template", template="case_follow_up_v1", template_language="de",
                               template_params=("Anna", "C-17")))
    await sender.send(whatsapp("k-buttons", buttons=(("solved:yes", "Ja, gelöst"), ("solved:no", "Nein"))))

    text, template, buttons = (m.payload for m in receiver.messages)
    base = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": PHONE}
    assert text == base | {"type": "text", "text": {"body": "Ist Ihr Problem gelöst?"}}
    assert template == base | {"type": "template", "template": {
        "name": "case_follow_up_v1", "language": {"code": "de"},
        "components": [{"type": "body", "parameters": [{"type": "text", "text": "Anna"},
                                                         {"type": "text", "text": "C-17"}]}]}}
    assert buttons == base | {"type": "interactive", "interactive": {
        "type": "button", "body": {"text": "Ist Ihr Problem gelöst?"}, "action": {"buttons": [
            {"type": "reply", "reply": {"id": "solved:yes", "title": "Ja, gelöst"}},
            {"type": "reply", "reply": {"id": "solved:no", "title": "Nein"}}]}}}
    assert [m.idempotency_key for m in receiver.messages] == ["k-text", "k-template", "k-buttons"]
    assert receiver.rejections == []


async def test_whatsapp_result_is_the_wamid(meta):
    receiver, sender = meta
    result = await sender.send(whatsapp(template="case_follow_up_v1", template_language="en"))
    assert result.provider_message_id == receiver.messages[0].id and result.provider_message_id.startswith("wamid.")
    assert "components" not in receiver.messages[0].payload["template"]


@pytest.mark.parametrize("kw, rule", [
    ({"buttons": (("a", "A"), ("b", "B"), ("c", "C"), ("d", "D"))}, "at most 3 reply buttons"),
    ({"buttons": (("a", "Ein viel zu langer Titel"),)}, "button titles have 1 to 20 characters"),
    ({"buttons": (("a", "Ja"), ("a", "Nein"))}, "button ids and titles are unique"),
    ({"template": "case_follow_up_v1"}, "a template message needs a language"),
    ({"text": ""}, "a text message has 1 to 4096 characters"),
])
async def test_messages_whatsapp_would_refuse_fail_before_sending(meta, kw, rule):
    receiver, sender = meta
    error = await failure(sender.send(whatsapp(**kw)))
    assert (error.reason, error.permanent, error.detail) == ("invalid_message", True, f"WhatsApp rule broken: {rule}")
    assert receiver.messages == [] and receiver.rejections == []


async def test_the_whatsapp_receiver_refuses_malformed_requests(meta):
    receiver, _ = meta
    url = f"{receiver.url}/{receiver.api_version}/{receiver.phone_number_id}/messages"
    headers = {"Authorization": f"Bearer {receiver.access_token}", "X-Idempotency-Key": "k"}
    good = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": PHONE, "type": "text",
            "text": {"body": "hi"}}
    interactive = good | {"type": "interactive", "interactive": {"type": "button", "body": {"text": "?"},
                                                                 "action": {"buttons": [{"type": "reply"}]}}}
    interactive.pop("text")
    async with httpx.AsyncClient() as client:
        cases = [
            (good, {"Authorization": "Bearer wrong"}, 401, "Invalid OAuth access token."),
            ({k: v for k, v in good.items() if k != "recipient_type"}, {}, 400,
             "fields must be messaging_product, recipient_type, to, type and text"),
            (good | {"text": {"body": "hi", "extra": 1}}, {}, 400, "text has only body and preview_url"),
            (good | {"to": "whatsapp:+49151"}, {}, 400, "to is not a phone number"),
            (interactive, {}, 400, "a button is {type: reply, reply: {id, title}}"),
            (good, {"X-Idempotency-Key": ""}, 400, "X-Idempotency-Key header is required"),
        ]
        for payload, extra, status, reason in cases:
            response = await client.post(url, json=payload, headers=headers | extra)
            assert (response.status_code, response.json()["error"]["message"]) == (status, reason)
        assert (await client.post(url, json=good, headers=headers)).status_code == 200, "the control case passes"
    assert receiver.rejections == [reason for *_, reason in cases]


@pytest.mark.parametrize("status, code, permanent", [
    (400, 130429, False),   # rate limit, whatever the status
    (400, 131026, True),    # undeliverable
    (400, 131047, True),    # outside the 24 h window
    (500, 131000, False),
    (401, 190, True),
])
async def test_meta_errors_are_classified_by_code_and_status(meta, status, code, permanent):
    receiver, sender = meta
    receiver.fail_next(1, status, code)
    error = await failure(sender.send(whatsapp()))
    assert (error.reason, error.permanent) == (f"http_{status}", permanent)
    assert f"Meta error {code}" in error.detail


# --- Standard Webhooks ----------------------------------------------------------------------------------------


async def test_webhook_is_signed_and_keeps_its_id_across_retries(hook):
    receiver, sender = hook
    message = OutboundMessage("n-1", "n-1:webhook", "webhook", receiver.url, "Ist Ihr Problem gelöst?", "Ja/Nein",
                              buttons=(("solved:yes", "Ja"),))
    receiver.fail_next(1, 503)
    error = await failure(sender.send(message))
    assert (error.reason, error.permanent) == ("http_503", False)
    result = await sender.send(message)

    [delivery] = receiver.messages
    assert result.provider_message_id == delivery.id == "n-1:webhook"
    assert delivery.payload == {"type": "notification.message", "data": {
        "notification_id": "n-1", "subject": "Ist Ihr Problem gelöst?", "text": "Ja/Nein", "html": None,
        "buttons": [{"id": "solved:yes", "title": "Ja"}]}}
    assert abs(delivery.timestamp - time.time()) < 60
    await sender.send(message)
    assert receiver.duplicates == {"n-1:webhook": 2}, "the receiver counts what it got twice"


async def test_webhook_with_a_wrong_secret_or_a_stale_clock_is_refused(hook):
    receiver, _ = hook
    message = OutboundMessage("n-1", "n-1:webhook", "webhook", receiver.url, None, "hi")
    wrong = WebhookSender(None, SecretStr("whsec_" + "QUJD" * 8))
    stale = WebhookSender(None, SecretStr(receiver.secret), clock=lambda: time.time() - 3600)
    for sender in (wrong, stale):
        error = await failure(sender.send(message))
        assert (error.reason, error.permanent) == ("http_401", True)
        await sender.aclose()
    assert receiver.rejections == ["no signature matches", "webhook-timestamp outside the tolerance"]


async def test_the_webhook_receiver_refuses_unsigned_and_malformed_requests(hook):
    receiver, _ = hook
    async with httpx.AsyncClient() as client:
        unsigned = await client.post(receiver.url, json={"type": "t", "data": {}})
        wrong_type = await client.post(receiver.url, content=b"{}", headers={"Content-Type": "text/plain"})
    assert (unsigned.status_code, unsigned.json()["error"]) == (
        400, "webhook-id, webhook-timestamp and webhook-signature required")
    assert (wrong_type.status_code, wrong_type.json()["error"]) == (400, "Content-Type must be application/json")


async def test_webhook_goes_to_the_configured_url_when_the_address_is_not_one(hook):
    receiver, _ = hook
    configured = WebhookSender(receiver.url, SecretStr(receiver.secret))
    await configured.send(OutboundMessage("n-2", "n-2:webhook", "webhook", "customer-17", None, "hi"))
    assert receiver.count("n-2:webhook") == 1
    await configured.aclose()

    nowhere = WebhookSender(None, SecretStr(receiver.secret))
    error = await failure(nowhere.send(OutboundMessage("n-3", "k", "webhook", "customer-17", None, "hi")))
    assert (error.reason, error.permanent) == ("no_endpoint", True)
    await nowhere.aclose()


# --- secrets --------------------------------------------------------------------------------------------------


async def test_senders_never_show_their_secrets():
    senders = [
        SmtpSender("127.0.0.1", 25, SENDER, "mailer", SecretStr("smtp-password-123")),
        TwilioSmsSender("https://api.twilio.com", "AC1", SecretStr("twilio-token-123"), "+4930555000"),
        WhatsAppCloudSender("https://graph.facebook.com", "106540352242922", SecretStr("whatsapp-token-123")),
        WebhookSender("https://hooks.example", SecretStr("whsec_webhook-secret-123")),
    ]
    for sender in senders:
        for shown in (repr(sender), str(sender), repr(vars(sender))):
            assert "-123" not in shown, type(sender).__name__
        assert "**********" in repr(sender)
        await sender.aclose()


# --- the receivers themselves -------------------------------------------------------------------------------------

async def test_http_receivers_restart_on_the_same_port():
    receiver = WebhookReceiver()
    sender = WebhookSender(receiver.url, SecretStr(receiver.secret))
    for attempt in range(3):
        with receiver:
            await sender.send(OutboundMessage("n", f"k{attempt}", "webhook", "customer", None, "hi"))
        error = await failure(sender.send(OutboundMessage("n", "down", "webhook", "customer", None, "hi")))
        assert (error.reason, error.permanent) == ("connection_failed", False)
    await sender.aclose()
    assert [m.id for m in receiver.messages] == ["k0", "k1", "k2"] and receiver.duplicates == {}
