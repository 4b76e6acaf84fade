"""Property-based fuzzing of every webhook format over HTTP (hypothesis, about 5,000 requests).

Payloads keep each provider's shape but draw every value from well-typed and hostile alternatives (wrong
types, NUL, unicode, huge numbers, missing keys), and are sent validly signed, unsigned or wrongly signed.
Properties: never a 5xx or an unhandled exception; an unverified request publishes nothing; whatever a
verified one publishes is an event ingestion accepts (invalid input never reaches Kafka).
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone
from urllib.parse import urlencode

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from services.ingestion.normalise import ingest
from tests.connectors import providers as p
from tests.connectors.conftest import fake_ingestion

pytestmark = [pytest.mark.unit, pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")]
FAKE = fake_ingestion()
LOOP = asyncio.new_event_loop()
FUZZ = settings(max_examples=700, deadline=None, suppress_health_check=list(HealthCheck), database=None)
SIGNING = st.sampled_from(["valid", "valid", "valid", "missing", "wrong"])

INT64 = st.integers(-(2**63), 2**63 - 1)
scalars = st.one_of(st.none(), st.booleans(), INT64, st.floats(allow_nan=False), st.text(max_size=12))
junk = st.recursive(scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3),
                    max_leaves=6)
texts = st.text(max_size=40)


def mostly(good, bad):
    """``good`` four times in five, else ``bad``."""
    return st.integers(0, 4).flatmap(lambda n: bad if n == 4 else good)


ids = mostly(st.from_regex(r"[A-Za-z0-9._:-]{1,40}", fullmatch=True) | st.integers(0, 2**63 - 1),
             st.one_of(st.text(min_size=1, max_size=30), st.just(""), st.text(min_size=600, max_size=700)))
phones = mostly(st.sampled_from(["4915112345678", "+4930123456", "+14155550123", "whatsapp:+4915112345678"]),
                st.one_of(st.from_regex(r"\+?[1-9][0-9]{3,16}", fullmatch=True), texts, st.just("whatsapp:")))
stamps = st.one_of(st.integers(-10**12, 10**15), st.from_regex(r"[0-9]{1,16}", fullmatch=True), texts)


def f(strategy):
    """Mostly (nine times in ten) the documented type, else anything."""
    return st.integers(0, 9).flatmap(lambda n: junk if n == 9 else strategy)


def obj(required: dict, optional: dict | None = None):
    return f(st.fixed_dictionaries({k: f(v) for k, v in required.items()},
                                   optional={k: f(v) for k, v in (optional or {}).items()}))


wa_message = obj({"from": phones, "id": ids, "timestamp": stamps,
                  "type": st.sampled_from(["text", "image", "interactive", "button", "reaction", "location", "x"])},
                 {"text": obj({"body": texts}), "image": obj({"id": ids}, {"caption": texts}),
                  "interactive": obj({"type": st.sampled_from(["button_reply", "list_reply"])},
                                     {"button_reply": obj({"id": ids, "title": texts}),
                                      "list_reply": obj({"id": ids, "title": texts})}),
                  "button": obj({"text": texts}), "reaction": obj({"emoji": texts}),
                  "context": obj({"id": ids})})
wa_status = obj({"id": ids, "status": st.sampled_from(["sent", "delivered", "read", "failed"]) | texts,
                 "recipient_id": phones, "timestamp": stamps}, {"errors": st.lists(obj({"code": INT64}), max_size=2)})
whatsapp = obj({"object": st.just("whatsapp_business_account"), "entry": st.lists(obj({"id": ids, "changes": st.lists(obj(
    {"field": mostly(st.just("messages"), st.just("account_update")),
     "value": obj({"metadata": obj({"phone_number_id": ids})},
                  {"messages": st.lists(wa_message, min_size=1, max_size=3), "statuses": st.lists(wa_status, max_size=2)})}),
    min_size=1, max_size=2)}), min_size=1, max_size=2)})
meta_messaging = obj({"sender": obj({"id": ids}), "recipient": obj({"id": ids}), "timestamp": stamps},
                     {"message": obj({"mid": ids}, {"text": texts, "is_echo": st.booleans(),
                                                    "attachments": st.lists(obj({"type": texts}), max_size=2),
                                                    "quick_reply": obj({"payload": texts})}),
                      "postback": obj({"title": texts}, {"mid": ids}), "delivery": junk})


def meta(object_name: str):
    return obj({"object": mostly(st.just(object_name), st.sampled_from(["page", "instagram", ""])),
                "entry": st.lists(obj({"id": ids}, {"messaging": st.lists(meta_messaging, min_size=1, max_size=3)}),
                                  min_size=1, max_size=2)})


x_user = st.sampled_from(["4000000042", p.OUR_X_ACCOUNT, "7"]) | ids
x_payload = obj({"for_user_id": st.just(p.OUR_X_ACCOUNT) | ids}, {
    "direct_message_events": st.lists(obj({"type": st.just("message_create") | texts, "id": ids,
                                           "created_timestamp": stamps,
                                           "message_create": obj({"sender_id": x_user, "target": obj({"recipient_id": x_user}),
                                                                  "message_data": obj({"text": texts})})}), max_size=3),
    "tweet_create_events": st.lists(obj({"id_str": ids, "text": texts, "created_at": texts,
                                         "user": obj({"id_str": x_user, "screen_name": texts})},
                                        {"in_reply_to_user_id_str": x_user, "extended_tweet": obj({"full_text": texts})}),
                                    max_size=2),
    "users": st.dictionaries(x_user.map(str), obj({"screen_name": texts}), max_size=2)})
identifier = mostly(
    st.sampled_from([("email", "anna@example.org"), ("phone", "+49 30 1234567"), ("twitter", "@handle"),
                     ("loyalty_card", "LC-1")]).map(lambda t: {"type": t[0], "value": t[1]}),
    obj({"type": st.sampled_from(["email", "phone", "Bad Type", ""]) | texts, "value": texts}))
generic = obj({"type": mostly(st.just("interaction.occurred"), texts), "data": obj(
    {"channel": mostly(st.sampled_from(["email", "web"]), st.just("pigeon")),
     "direction": mostly(st.just("inbound"), st.just("up")),
     "identifiers": st.lists(identifier, min_size=1, max_size=3)},
    {"text": texts, "tags": st.lists(texts, max_size=3), "conversation_id": texts,
     "occurred_at": mostly(st.datetimes(timezones=st.just(timezone.utc)).map(datetime.isoformat), texts)})})
twilio_params = st.fixed_dictionaries({}, optional={
    "MessageSid": ids.map(str), "CallSid": ids.map(str), "From": phones, "To": phones, "Body": texts,
    "MessageStatus": st.sampled_from(["received", "delivered", "failed"]) | texts,
    "CallStatus": st.sampled_from(["completed", "ringing", "busy"]) | texts, "Direction": st.sampled_from(["inbound", "outbound-api"]),
    "CallDuration": st.from_regex(r"[0-9]{1,6}", fullmatch=True) | texts, "NumMedia": st.from_regex(r"[0-9]{1,3}", fullmatch=True) | texts,
    "MediaContentType0": texts, "ErrorCode": texts, "Timestamp": texts})


def post(path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=FAKE.app, raise_app_exceptions=True)
        async with httpx.AsyncClient(transport=transport, base_url=p.BASE_URL) as client:
            return await client.post(path, content=body, headers=headers)

    return LOOP.run_until_complete(call())


def check(path: str, body: bytes, headers: dict[str, str], verified: bool) -> None:
    FAKE.producer.records.clear()
    resp = post(path, body, headers)
    event(f"HTTP {resp.status_code}, {'some' if FAKE.producer.records else 'nothing'} published")
    assert resp.status_code < 500, resp.text
    if not verified:
        assert resp.status_code in (400, 401), resp.text
        assert FAKE.producer.records == [], "an unverified request reached Kafka"
        return
    assert resp.status_code in (200, 400), resp.text
    for published in FAKE.published():
        assert published.tenant == p.TENANT
        ingest(published, "default", "DE", datetime.now(timezone.utc))  # raises InvalidEvent for invalid input


def meta_headers(body: bytes, signing: str) -> dict[str, str]:
    if signing == "missing":
        return {"Content-Type": "application/json"}
    return p.meta_sign(body, p.META_SECRET if signing == "valid" else "wrong")


@FUZZ
@given(payload=whatsapp, signing=SIGNING)
def test_whatsapp_payloads(payload, signing):
    body = orjson.dumps(payload)
    check(f"/v1/webhooks/{p.TENANT}/whatsapp", body, meta_headers(body, signing), signing == "valid")


@FUZZ
@given(data=st.data(), connector=st.sampled_from(["messenger", "instagram"]), signing=SIGNING)
def test_messenger_and_instagram_payloads(data, connector, signing):
    body = orjson.dumps(data.draw(meta("page" if connector == "messenger" else "instagram")))
    check(f"/v1/webhooks/{p.TENANT}/{connector}", body, meta_headers(body, signing), signing == "valid")


@FUZZ
@given(params=twilio_params, signing=SIGNING)
def test_twilio_payloads(params, signing):
    path = f"/v1/webhooks/{p.TENANT}/twilio"
    headers = p.twilio_sign(p.BASE_URL + path, params, p.TWILIO_TOKEN if signing == "valid" else "wrong")
    if signing == "missing":
        del headers["X-Twilio-Signature"]
    check(path, urlencode(params).encode(), headers, signing == "valid")


@FUZZ
@given(payload=x_payload, signing=SIGNING)
def test_x_payloads(payload, signing):
    body = orjson.dumps(payload)
    headers = p.x_sign(body, p.X_SECRET if signing == "valid" else "wrong")
    if signing == "missing":
        del headers["X-Twitter-Webhooks-Signature"]
    check(f"/v1/webhooks/{p.TENANT}/x", body, headers, signing == "valid")


@FUZZ
@given(payload=generic, msg_id=st.text(min_size=1, max_size=40).filter(lambda s: s.isprintable() and s.isascii() and s.strip() == s),
       skew=st.integers(-900, 900), signing=SIGNING)
def test_standard_webhook_payloads(payload, msg_id, skew, signing):
    body = orjson.dumps(payload)
    headers = p.standard_sign(msg_id, body, p.GENERIC_SECRET if signing == "valid" else "whsec_d3Jvbmc=",
                              timestamp=int(time.time()) + skew)
    if signing == "missing":
        del headers["webhook-signature"]
    verified = signing == "valid" and abs(skew) < 295
    if signing == "valid" and 295 <= abs(skew) <= 305:
        return  # too close to the tolerance to say which side of it the request lands
    check(f"/v1/webhooks/{p.TENANT}/generic/crm", body, headers, verified)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(body=st.binary(max_size=300), connector=st.sampled_from(["whatsapp", "messenger", "instagram", "x", "twilio"]))
@example(body=b'{"object": "whatsapp_business_account", "entry": "\\ud800"}', connector="whatsapp")
@example(body=b"\xff\xfe", connector="twilio")
@example(body=b"Body=%FF%FE&MessageSid=SM1", connector="twilio")
def test_arbitrary_bytes_validly_signed(body, connector):
    path = f"/v1/webhooks/{p.TENANT}/{connector}"
    if connector == "twilio":
        headers = {"X-Twilio-Signature": "AAAA", "Content-Type": "application/x-www-form-urlencoded"}
        FAKE.producer.records.clear()
        resp = post(path, body, headers)
        assert resp.status_code in (400, 401) and FAKE.producer.records == []
        return
    headers = p.x_sign(body) if connector == "x" else p.meta_sign(body)
    check(path, body, headers, verified=True)
