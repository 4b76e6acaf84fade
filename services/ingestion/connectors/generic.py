"""Generic signed webhooks in the Standard Webhooks format, for any other system.

Headers: ``webhook-id`` (unique per message, the same on retries), ``webhook-timestamp`` (Unix seconds) and
``webhook-signature`` (space-separated ``v1,<base64>`` entries; any may match). The signed content is
``<id>.<timestamp>.<raw body>``, HMAC-SHA256 with the secret (``whsec_<base64>`` → the decoded bytes).
Timestamps further than ``tolerance_seconds`` (default 300) from now are refused, so a captured request
cannot be replayed later; within the window the id de-duplicates.

Payload: ``{"type": "interaction.occurred", "timestamp": "...", "data": {<touchpoint.interaction.occurred.v1
data: channel, direction, identifiers, ...>}}``. It becomes one interaction with source = the configured
webhook name (the URL's last segment) and id = ``webhook-id``. Other ``type`` values are ignored (answered
200, so the sender does not retry them).
"""

from __future__ import annotations

from services.ingestion.connectors.base import (
    Connector, Parsed, PayloadError, SignatureError, WebhookRequest, as_id, interaction, load_json_object,
)
from services.ingestion.connectors.config import GenericWebhookConfig
from shared.signatures import standard_signature, standard_signature_in, standard_timestamp_fresh

EVENT_TYPE = "interaction.occurred"


class GenericWebhookConnector(Connector[GenericWebhookConfig]):
    """One configured sender; ``name`` is both its URL segment and the CloudEvents source."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.source = name

    def verify(self, request: WebhookRequest, config: GenericWebhookConfig) -> None:
        msg_id, timestamp = request.header("webhook-id"), request.header("webhook-timestamp")
        signatures = request.header("webhook-signature")
        if not msg_id or not timestamp or not signatures:
            raise SignatureError("webhook-id, webhook-timestamp and webhook-signature are required",
                                 "signature_missing")
        if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
            raise SignatureError("webhook-timestamp is not Unix seconds", "timestamp_out_of_tolerance")
        if not standard_timestamp_fresh(timestamp, request.received_at.timestamp(), config.tolerance_seconds):
            raise SignatureError("webhook-timestamp is outside the tolerance", "timestamp_out_of_tolerance")
        expected = standard_signature(config.secret.get_secret_value(), msg_id, timestamp, request.body)
        if not standard_signature_in(expected, signatures):
            raise SignatureError("no signature matches the body")

    def parse(self, request: WebhookRequest, config: GenericWebhookConfig) -> Parsed:
        payload = load_json_object(request.body)
        if payload.get("type") != EVENT_TYPE:
            return Parsed(ignored=["other_type"])
        if not isinstance(payload.get("data"), dict):
            raise PayloadError("data must be an object")
        msg_id = as_id(request.header("webhook-id"))
        if msg_id is None:
            raise PayloadError("webhook-id is not a usable id")
        event = interaction(self.source, msg_id, payload["data"])
        event.time = request.received_at
        return Parsed([event])
