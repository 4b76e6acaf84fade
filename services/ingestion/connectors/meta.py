"""What WhatsApp, Messenger and Instagram share: Meta's webhook signature and GET verification handshake.

POST: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body, key = app secret>``. Meta signs the
bytes it sent, so the body is verified before it is parsed and never re-serialised. Meta carries no
timestamp: replay protection is the de-duplication of the message id.

GET: ``hub.mode=subscribe&hub.verify_token=<token>&hub.challenge=<n>`` is answered with the challenge as
plain text when the token matches the configured verify token.
"""

from __future__ import annotations

from services.ingestion.connectors.base import (
    Connector, HandshakeError, PayloadError, Reply, SignatureError, WebhookRequest,
)
from services.ingestion.connectors.config import MetaAppConfig
from shared.signatures import meta_signature, signature_matches

SIGNATURE_HEADER = "x-hub-signature-256"


def verify_meta_signature(request: WebhookRequest, config: MetaAppConfig) -> None:
    given = request.header(SIGNATURE_HEADER)
    if not given:
        raise SignatureError(f"the {SIGNATURE_HEADER} header is missing", "signature_missing")
    expected = meta_signature(request.body, config.app_secret.get_secret_value()).encode()
    if not signature_matches(expected, given.lower()):
        raise SignatureError("the signature does not match the body")


def meta_handshake(request: WebhookRequest, config: MetaAppConfig) -> Reply:
    mode = request.query.get("hub.mode")
    token = request.query.get("hub.verify_token")
    challenge = request.query.get("hub.challenge")
    if mode != "subscribe" or not challenge or token is None:
        raise PayloadError("expected hub.mode=subscribe with hub.verify_token and hub.challenge", "handshake_invalid")
    if not signature_matches(config.verify_token.get_secret_value().encode(), token):
        raise HandshakeError("the verify token does not match")
    return Reply(challenge.encode(), "text/plain")


class MetaConnector(Connector[MetaAppConfig]):
    """A Meta webhook (WhatsApp, Messenger, Instagram): the ``hub.challenge`` handshake and the
    ``X-Hub-Signature-256`` check are the same for all; subclasses parse their payloads."""

    def handshake(self, request: WebhookRequest, config: MetaAppConfig) -> Reply:
        return meta_handshake(request, config)

    def verify(self, request: WebhookRequest, config: MetaAppConfig) -> None:
        verify_meta_signature(request, config)
