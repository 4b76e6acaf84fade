"""X (Twitter) Account Activity API webhooks.

CRC: ``GET ?crc_token=<t>`` is answered ``{"response_token": "sha256=<base64 HMAC-SHA256(consumer secret, t)>"}``.
POST: ``X-Twitter-Webhooks-Signature: sha256=<base64 HMAC-SHA256 of the raw body with the consumer secret>``.
No timestamp: replay protection is the de-duplication of the DM event id / tweet id.

What becomes of each event (source ``x``), ``for_user_id`` being the subscribed (our) account:
- ``direct_message_events[]`` of type ``message_create``: a ``twitter`` interaction, id = the event id,
  inbound when the customer sent it, outbound when our account did; identifiers ``twitter`` = the customer's
  screen name (from ``users``) and ``twitter_id`` = their numeric id.
- ``tweet_create_events[]``: a mention or reply by someone else → inbound, tag ``mention``; a tweet by our
  account replying to someone → outbound to that user, tag ``reply``.
- every other event (favourites, follows, typing, read receipts, ...): ignored, answered 200.
"""

from __future__ import annotations

from datetime import datetime

from services.ingestion.connectors.base import (
    Connector, Parsed, PayloadError, Reply, SignatureError, WebhookRequest, as_dict, as_id,
    as_list, as_str, from_unix, interaction, json_reply, load_json_object, stable_id,
)
from services.ingestion.connectors.config import XConfig
from shared.signatures import signature_matches, x_signature

SIGNATURE_HEADER = "x-twitter-webhooks-signature"
SOURCE = "x"


class XConnector(Connector[XConfig]):
    name = "x"
    source = SOURCE

    def handshake(self, request: WebhookRequest, config: XConfig) -> Reply:
        token = request.query.get("crc_token")
        if not token:
            raise PayloadError("crc_token is missing", "handshake_invalid")
        token_bytes = token.encode("utf-8", "surrogatepass")
        return json_reply({"response_token": x_signature(token_bytes, config.consumer_secret.get_secret_value())})

    def verify(self, request: WebhookRequest, config: XConfig) -> None:
        given = request.header(SIGNATURE_HEADER)
        if not given:
            raise SignatureError(f"the {SIGNATURE_HEADER} header is missing", "signature_missing")
        expected = x_signature(request.body, config.consumer_secret.get_secret_value())
        if not signature_matches(expected.encode(), given):
            raise SignatureError("the signature does not match the body")

    def parse(self, request: WebhookRequest, config: XConfig) -> Parsed:
        payload = load_json_object(request.body)
        account = as_str(payload.get("for_user_id"))
        if account is None:
            raise PayloadError("for_user_id is missing")
        users = as_dict(payload.get("users"))
        parsed = Parsed()
        for dm in as_list(payload.get("direct_message_events")):
            _add(parsed, dm_event(as_dict(dm), account, users), "not_a_message")
        for tweet in as_list(payload.get("tweet_create_events")):
            _add(parsed, tweet_event(as_dict(tweet), account), "own_tweet_or_incomplete")
        if not parsed.events and not parsed.ignored:
            parsed.ignored.append("no_supported_events")
        return parsed


def _add(parsed: Parsed, event, reason: str) -> None:
    if event is None:
        parsed.ignored.append(reason)
    else:
        parsed.events.append(event)


def _identifiers(user_id: str, screen_name: str | None) -> list[dict]:
    out = [{"type": "twitter_id", "value": user_id}]
    if screen_name:
        out.insert(0, {"type": "twitter", "value": screen_name})
    return out


def dm_event(dm: dict, account: str, users: dict):
    create = as_dict(dm.get("message_create"))
    event_id = as_id(dm.get("id"))
    sender = as_str(create.get("sender_id"), 320)
    recipient = as_str(as_dict(create.get("target")).get("recipient_id"), 320)
    if dm.get("type") != "message_create" or event_id is None or sender is None:
        return None
    outbound = sender == account
    customer = recipient if outbound else sender
    if customer is None:
        return None
    data = {"channel": "twitter", "direction": "outbound" if outbound else "inbound",
            "identifiers": _identifiers(customer, as_str(as_dict(users.get(customer)).get("screen_name"), 100)),
            "conversation_id": stable_id(SOURCE, account, customer), "tags": ["direct_message"]}
    text = as_str(as_dict(create.get("message_data")).get("text"))
    if text:
        data["text"] = text[:65536]
    return interaction(SOURCE, event_id, data, from_unix(dm.get("created_timestamp"), millis=True))


def tweet_event(tweet: dict, account: str):
    tweet_id = as_id(tweet.get("id_str")) or as_id(tweet.get("id"))
    user = as_dict(tweet.get("user"))
    author = as_str(user.get("id_str")) or as_str(user.get("id"))
    if tweet_id is None or author is None:
        return None
    if author == account:
        customer = as_str(tweet.get("in_reply_to_user_id_str"), 320)
        if customer is None:
            return None
        identifiers = _identifiers(customer, as_str(tweet.get("in_reply_to_screen_name"), 100))
        direction, tags = "outbound", ["reply"]
    else:
        identifiers = _identifiers(author[:320], as_str(user.get("screen_name"), 100))
        direction, tags = "inbound", ["mention"]
    data = {"channel": "twitter", "direction": direction, "identifiers": identifiers, "tags": tags}
    text = as_str(as_dict(tweet.get("extended_tweet")).get("full_text")) or as_str(tweet.get("text"))
    if text:
        data["text"] = text[:65536]
    return interaction(SOURCE, tweet_id, data, _created_at(tweet.get("created_at")))


def _created_at(value):
    """X's ``created_at`` (``Wed Oct 10 20:19:24 +0000 2018``)."""
    try:
        return datetime.strptime(value, "%a %b %d %H:%M:%S %z %Y") if isinstance(value, str) else None
    except ValueError:
        return None
