"""Provider payloads in each provider's documented format, and signers written from the providers' docs
(independently of the production code they test).

Formats modelled on: WhatsApp Cloud API webhook "messages" notifications, Messenger Platform / Instagram
messaging webhooks, Twilio messaging and voice status callbacks, X Account Activity API events, and the
Standard Webhooks specification.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode

import orjson

TENANT = "acme"
BASE_URL = "https://hooks.acme.example"
META_SECRET = "meta-app-secret-0123456789"
VERIFY_TOKEN = "verify-me-please"
TWILIO_TOKEN = "twilio-auth-token-abcdef"
X_SECRET = "x-consumer-secret-xyz"
GENERIC_SECRET = "whsec_" + base64.b64encode(b"generic-signing-key-32-bytes-long!").decode()
SITE_KEY = "site_acme_public"
SITE_ORIGIN = "https://www.acme.example"
OUR_X_ACCOUNT = "3000000001"

CONFIG = {
    TENANT: {
        "whatsapp": {"app_secret": META_SECRET, "verify_token": VERIFY_TOKEN},
        "messenger": {"app_secret": META_SECRET, "verify_token": VERIFY_TOKEN},
        "instagram": {"app_secret": META_SECRET, "verify_token": VERIFY_TOKEN},
        "twilio": {"auth_token": TWILIO_TOKEN},
        "x": {"consumer_secret": X_SECRET},
        "generic": {"crm": {"secret": GENERIC_SECRET, "tolerance_seconds": 300}},
        "webchat": {"site_keys": {SITE_KEY: {"origins": [SITE_ORIGIN]}}},
        "email": {"addresses": ["support@acme.example", "@help.acme.example"]},
    }
}


@dataclass
class Delivery:
    """One webhook request as the provider would send it."""

    path: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return BASE_URL + self.path


# --- signers ----------------------------------------------------------------------------------------------


def meta_sign(body: bytes, secret: str = META_SECRET) -> dict[str, str]:
    return {"X-Hub-Signature-256": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(),
            "Content-Type": "application/json"}


def twilio_sign(url: str, params: dict[str, str], token: str = TWILIO_TOKEN) -> dict[str, str]:
    data = url + "".join(k + params[k] for k in sorted(params))
    sig = base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()).decode()
    return {"X-Twilio-Signature": sig, "Content-Type": "application/x-www-form-urlencoded"}


def x_sign(body: bytes, secret: str = X_SECRET) -> dict[str, str]:
    sig = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
    return {"X-Twitter-Webhooks-Signature": "sha256=" + sig, "Content-Type": "application/json"}


def standard_sign(msg_id: str, body: bytes, secret: str = GENERIC_SECRET, timestamp: int | None = None) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    key = base64.b64decode(secret.removeprefix("whsec_"))
    sig = base64.b64encode(hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()).decode()
    return {"webhook-id": msg_id, "webhook-timestamp": ts, "webhook-signature": f"v1,{sig}",
            "Content-Type": "application/json"}


# --- WhatsApp Business Cloud API --------------------------------------------------------------------------


def whatsapp_envelope(value: dict) -> dict:
    return {"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [
        {"value": {"messaging_product": "whatsapp",
                   "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
                   **value},
         "field": "messages"}]}]}


def whatsapp_text(wamid: str, sender: str = "4915112345678", body: str = "Hallo, ist meine Bestellung unterwegs?") -> dict:
    return whatsapp_envelope({
        "contacts": [{"profile": {"name": "Anna Beispiel"}, "wa_id": sender}],
        "messages": [{"from": sender, "id": wamid, "timestamp": "1749416383", "type": "text", "text": {"body": body}}],
    })


def whatsapp_image(wamid: str, sender: str = "4915112345678") -> dict:
    return whatsapp_envelope({
        "contacts": [{"profile": {"name": "Anna Beispiel"}, "wa_id": sender}],
        "messages": [{"from": sender, "id": wamid, "timestamp": "1749416400", "type": "image",
                      "image": {"caption": "Das Paket ist beschädigt", "mime_type": "image/jpeg",
                                "sha256": "Vx9vPGpSQ0Q0b0M2Qk5kRzZ1b0t4", "id": "1003383421387256"}}],
    })


def whatsapp_button_reply(wamid: str, sender: str = "4915112345678") -> dict:
    return whatsapp_envelope({
        "contacts": [{"profile": {"name": "Anna Beispiel"}, "wa_id": sender}],
        "messages": [{"context": {"from": "15550783881", "id": "wamid.HBgLMTU1NTA3ODM4ODEVAgARGBI0"},
                      "from": sender, "id": wamid, "timestamp": "1749416500", "type": "interactive",
                      "interactive": {"type": "button_reply", "button_reply": {"id": "confirm-yes", "title": "Ja, bitte"}}}],
    })


def whatsapp_status(wamid: str, status: str, recipient: str = "4915112345678") -> dict:
    entry = {"id": wamid, "status": status, "timestamp": "1749416600", "recipient_id": recipient,
             "conversation": {"id": "b1c2d3", "origin": {"type": "utility"}},
             "pricing": {"billable": True, "pricing_model": "PMP", "category": "utility"}}
    if status == "failed":
        entry["errors"] = [{"code": 131047, "title": "Re-engagement message"}]
    return whatsapp_envelope({"statuses": [entry]})


# --- Messenger and Instagram -------------------------------------------------------------------------------


def messenger_message(mid: str, psid: str = "6783920147712345", text: str = "Do you ship to Austria?",
                      obj: str = "page") -> dict:
    page = "109876543210987"
    return {"object": obj, "entry": [{"id": page, "time": 1749416383000, "messaging": [
        {"sender": {"id": psid}, "recipient": {"id": page}, "timestamp": 1749416383000,
         "message": {"mid": mid, "text": text}}]}]}


def messenger_echo(mid: str, psid: str = "6783920147712345") -> dict:
    page = "109876543210987"
    return {"object": "page", "entry": [{"id": page, "time": 1749416390000, "messaging": [
        {"sender": {"id": page}, "recipient": {"id": psid}, "timestamp": 1749416390000,
         "message": {"mid": mid, "is_echo": True, "app_id": 1517776481860111, "text": "Yes, we do."}}]}]}


def messenger_postback(mid: str, psid: str = "6783920147712345") -> dict:
    page = "109876543210987"
    return {"object": "page", "entry": [{"id": page, "time": 1749416395000, "messaging": [
        {"sender": {"id": psid}, "recipient": {"id": page}, "timestamp": 1749416395000,
         "postback": {"mid": mid, "title": "Talk to an agent", "payload": "AGENT"}}]}]}


def instagram_message(mid: str, igsid: str = "5432109876543210") -> dict:
    return messenger_message(mid, igsid, "Is this still available?", obj="instagram")


# --- Twilio ------------------------------------------------------------------------------------------------


def twilio_sms(sid: str, sender: str = "+4915112345678", body: str = "STOP sending me offers") -> dict[str, str]:
    return {"ToCountry": "DE", "SmsMessageSid": sid, "NumMedia": "0", "SmsSid": sid, "SmsStatus": "received",
            "Body": body, "To": "+4930555000", "NumSegments": "1", "MessageSid": sid,
            "AccountSid": "AC0123456789abcdef0123456789abcdef", "From": sender, "ApiVersion": "2010-04-01"}


def twilio_message_status(sid: str, status: str, to: str = "+4915112345678") -> dict[str, str]:
    params = {"MessageSid": sid, "SmsSid": sid, "MessageStatus": status, "SmsStatus": status, "To": to,
              "From": "+4930555000", "AccountSid": "AC0123456789abcdef0123456789abcdef", "ApiVersion": "2010-04-01"}
    if status == "undelivered":
        params["ErrorCode"] = "30003"
    return params


def twilio_call(sid: str, status: str = "completed", caller: str = "+4930123456", duration: str = "63") -> dict[str, str]:
    return {"CallSid": sid, "AccountSid": "AC0123456789abcdef0123456789abcdef", "From": caller, "To": "+4930555000",
            "CallStatus": status, "ApiVersion": "2010-04-01", "Direction": "inbound", "CallDuration": duration,
            "Duration": "2", "Timestamp": "Mon, 09 Jun 2025 20:59:43 +0000", "CallbackSource": "call-progress-events",
            "SequenceNumber": "3"}


def twilio_delivery(path: str, params: dict[str, str], token: str = TWILIO_TOKEN) -> Delivery:
    return Delivery(path, urlencode(params).encode(), twilio_sign(BASE_URL + path, params, token))


# --- X Account Activity API --------------------------------------------------------------------------------


def x_dm(event_id: str, sender: str = "4000000042", text: str = "My order never arrived") -> dict:
    recipient = OUR_X_ACCOUNT if sender != OUR_X_ACCOUNT else "4000000042"
    return {"for_user_id": OUR_X_ACCOUNT, "direct_message_events": [
        {"type": "message_create", "id": event_id, "created_timestamp": "1749416383000",
         "message_create": {"target": {"recipient_id": recipient}, "sender_id": sender,
                            "message_data": {"text": text, "entities": {"hashtags": [], "urls": []}}}}],
        "users": {"4000000042": {"id": "4000000042", "name": "Carla", "screen_name": "CarlaCustomer"},
                  OUR_X_ACCOUNT: {"id": OUR_X_ACCOUNT, "name": "Acme", "screen_name": "AcmeSupport"}}}


def x_mention(tweet_id: str) -> dict:
    return {"for_user_id": OUR_X_ACCOUNT, "user_has_blocked": False, "tweet_create_events": [
        {"created_at": "Mon Jun 09 20:59:43 +0000 2025", "id": int(tweet_id), "id_str": tweet_id,
         "text": "@AcmeSupport my parcel is late", "user": {"id": 4000000042, "id_str": "4000000042",
                                                            "screen_name": "CarlaCustomer"},
         "entities": {"user_mentions": [{"screen_name": "AcmeSupport", "id_str": OUR_X_ACCOUNT}]}}]}


# --- Standard Webhooks -------------------------------------------------------------------------------------


def standard_payload(email: str = "dora@example.org") -> dict:
    return {"type": "interaction.occurred", "timestamp": "2025-06-09T20:59:43Z",
            "data": {"channel": "web", "direction": "inbound", "identifiers": [{"type": "email", "value": email}],
                     "subject": "Contact form", "text": "Please call me back"}}


# --- one valid delivery per connector, and the signature matrix --------------------------------------------


def dumps(payload: dict) -> bytes:
    """Compact JSON as providers send it (the signature covers exactly these bytes)."""
    return orjson.dumps(payload)


def valid_delivery(connector: str, uid: str) -> Delivery:
    """A signed delivery of one inbound message with provider id derived from ``uid``."""
    base = f"/v1/webhooks/{TENANT}"
    if connector == "whatsapp":
        body = dumps(whatsapp_text(f"wamid.{uid}"))
        return Delivery(f"{base}/whatsapp", body, meta_sign(body))
    if connector == "messenger":
        body = dumps(messenger_message(f"m_{uid}"))
        return Delivery(f"{base}/messenger", body, meta_sign(body))
    if connector == "instagram":
        body = dumps(instagram_message(f"ig_{uid}"))
        return Delivery(f"{base}/instagram", body, meta_sign(body))
    if connector == "twilio":
        return twilio_delivery(f"{base}/twilio", twilio_sms(f"SM{uid}"))
    if connector == "x":
        body = dumps(x_dm(uid))
        return Delivery(f"{base}/x", body, x_sign(body))
    if connector == "generic":
        body = dumps(standard_payload())
        return Delivery(f"{base}/generic/crm", body, standard_sign(f"msg_{uid}", body))
    raise KeyError(connector)


CONNECTORS = ("whatsapp", "messenger", "instagram", "twilio", "x", "generic")
SIGNATURE_HEADERS = {"whatsapp": "X-Hub-Signature-256", "messenger": "X-Hub-Signature-256",
                     "instagram": "X-Hub-Signature-256", "twilio": "X-Twilio-Signature",
                     "x": "X-Twitter-Webhooks-Signature", "generic": "webhook-signature"}


def resign(connector: str, delivery: Delivery, body: bytes, secret: str | None = None) -> dict[str, str]:
    """Headers for ``body`` signed as ``connector`` does, with the right or a given (wrong) secret."""
    if connector in ("whatsapp", "messenger", "instagram"):
        return meta_sign(body, secret or META_SECRET)
    if connector == "x":
        return x_sign(body, secret or X_SECRET)
    if connector == "generic":
        wrong = "whsec_" + base64.b64encode((secret or "").encode()).decode() if secret else GENERIC_SECRET
        return standard_sign(delivery.headers["webhook-id"], body, wrong)
    params = dict(parse_qsl(body.decode(), keep_blank_values=True))
    return twilio_sign(delivery.url, params, secret or TWILIO_TOKEN)


def tampered(connector: str, uid: str) -> dict[str, Delivery]:
    """The signature matrix: every way a delivery can be wrong, each of which must publish nothing."""
    good = valid_delivery(connector, uid)
    no_sig = {k: v for k, v in good.headers.items() if k != SIGNATURE_HEADERS[connector]}
    flipped = bytearray(good.body)
    flipped[len(flipped) // 2] ^= 0x01
    cases = {
        "missing signature": Delivery(good.path, good.body, no_sig),
        "wrong secret": Delivery(good.path, good.body, resign(connector, good, good.body, "not-the-secret")),
        "one byte changed": Delivery(good.path, bytes(flipped), good.headers),
        "wrong prefix": Delivery(good.path, good.body, _wrong_prefix(connector, good.headers)),
    }
    if connector == "twilio":
        params = twilio_sms(f"SM{uid}")
        reordered = urlencode(dict(reversed(list(params.items())))).encode() + b"&Extra=1"
        cases["parameter added"] = Delivery(good.path, reordered, good.headers)
        cases["other URL"] = Delivery(good.path + "?x=1", good.body, good.headers)
    else:
        cases["re-serialised JSON"] = Delivery(good.path, orjson.dumps(orjson.loads(good.body),
                                                                         option=orjson.OPT_INDENT_2), good.headers)
    if connector == "generic":
        stale = int(time.time()) - 600
        cases["stale timestamp"] = Delivery(good.path, good.body, standard_sign(f"msg_{uid}", good.body, timestamp=stale))
        cases["future timestamp"] = Delivery(good.path, good.body,
                                             standard_sign(f"msg_{uid}", good.body, timestamp=int(time.time()) + 600))
        cases["timestamp header changed"] = Delivery(good.path, good.body,
                                                     {**good.headers, "webhook-timestamp": str(int(time.time()) - 1)})
    return cases


def _wrong_prefix(connector: str, headers: dict[str, str]) -> dict[str, str]:
    name = SIGNATURE_HEADERS[connector]
    value = headers[name]
    if "," in value:
        swapped = "v2," + value.split(",", 1)[1]
    elif "=" in value[:8]:
        swapped = "sha1=" + value.split("=", 1)[1]
    else:
        swapped = "sha256=" + value
    return {**headers, name: swapped}
