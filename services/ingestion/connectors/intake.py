"""The connector use cases: a provider webhook or an email in, interaction events out to the inbound topic.

Order for every delivery: find the tenant's connector → verify the raw request → parse → keep the raw payload
for audit → relay the events and wait for Kafka's acknowledgement → answer. Unverified requests are neither
stored nor published. A Kafka or database failure propagates (the HTTP layer answers 503, the SMTP layer a
temporary 451) so the provider retries; the retry carries the same provider ids and is de-duplicated.

Called by ``services/ingestion/webhooks.py`` and ``smtp.py``; depends only on the two ports below.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

from services.ingestion.connectors import email as mail
from services.ingestion.connectors.base import (
    Connector, NotConfigured, Parsed, PayloadError, Reply, WebhookRequest, json_reply,
)
from services.ingestion.connectors.config import ConnectorsConfig
from services.ingestion.connectors.generic import GenericWebhookConnector
from services.ingestion.connectors.messenger import MessengerConnector
from services.ingestion.connectors.twilio import TwilioConnector
from services.ingestion.connectors.whatsapp import WhatsAppConnector
from services.ingestion.connectors.x import XConnector
from shared.cloudevents import CloudEvent

log = logging.getLogger(__name__)

# URL segment → connector; the tenant's configuration section has the same name.
CONNECTORS: dict[str, Connector] = {
    c.name: c for c in (WhatsAppConnector(), MessengerConnector("facebook"), MessengerConnector("instagram"),
                        TwilioConnector(), XConnector())
}


class Relay(Protocol):
    async def relay(self, events: list[CloudEvent], tenant: str) -> tuple[list[str], list[Any]]:
        """Validate and publish; returns (accepted ids, rejections). Raises when Kafka did not acknowledge."""

    async def key_ids(self, events: list[CloudEvent], tenant: str) -> list[str]:
        """The ids of the data keys the valid ones among ``events`` are sealed under (created if missing)."""


class AuditLog(Protocol):
    async def keep(self, tenant: str, connector: str, content_type: str, body: bytes, event_ids: Sequence[str],
                   kids: Sequence[str] = ()) -> None:
        """Store the raw payload (size-capped) once per distinct body, with the data keys of its events (erasing
        one of their customers deletes it). Raises on database failure."""


class ThreadStore(Protocol):
    async def conversation_of(self, tenant: str, email: mail.ParsedEmail) -> str:
        """The conversation id of an email, recording its Message-ID in it. Raises on database failure."""


@dataclass
class ConnectorIntake:
    config: ConnectorsConfig
    relay: Relay
    audit: AuditLog

    def connector(self, tenant: str, name: str, generic: bool = False) -> tuple[Connector, Any]:
        """The connector and its configuration for ``tenant``; NotConfigured when it has none."""
        connectors = self.config.get(tenant)
        if generic:
            section = connectors.generic.get(name) if connectors else None
            connector: Connector | None = GenericWebhookConnector(name)
        else:
            connector = CONNECTORS.get(name)
            section = getattr(connectors, name, None) if connectors and connector else None
        if connector is None or section is None:
            raise NotConfigured("no such connector for this tenant")
        return connector, section

    def handshake(self, tenant: str, name: str, request: WebhookRequest) -> Reply:
        connector, section = self.connector(tenant, name)
        return connector.handshake(request, section)

    async def receive(self, tenant: str, name: str, request: WebhookRequest, generic: bool = False) -> Reply:
        """Verify, keep, publish. Raises ConnectorError for refusals, anything else for transient failures."""
        connector, section = self.connector(tenant, name, generic)
        connector.verify(request, section)
        parsed = connector.parse(request, section)
        content_type = request.header("content-type") or "application/octet-stream"
        await self.audit.keep(tenant, connector.name, content_type, request.body, [e.id for e in parsed.events],
                              await self.relay.key_ids(parsed.events, tenant))
        accepted, rejected = await self.relay.relay(parsed.events, tenant)
        log.info("webhook received", extra={"tenant": tenant, "connector": connector.name,
                                            "accepted": len(accepted), "rejected": len(rejected),
                                            "ignored": len(parsed.ignored)})
        return parsed.reply or summary(parsed, accepted, rejected)

    async def receive_email(self, tenant: str, raw: bytes, threads: ThreadStore) -> str:
        """Publish one email for ``tenant``; returns the event id. Raises PayloadError for unusable mail."""
        connectors = self.config.get(tenant)
        own = connectors.email.addresses if connectors and connectors.email else []
        parsed = mail.parse_email(raw)
        conversation = await threads.conversation_of(tenant, parsed)
        event = mail.email_event(parsed, conversation, own)
        await self.audit.keep(tenant, "email", "message/rfc822", raw, [event.id],
                              await self.relay.key_ids([event], tenant))
        _, rejected = await self.relay.relay([event], tenant)
        if rejected:
            raise PayloadError(f"the message is not a valid interaction ({rejected[0].reason})")
        log.info("email received", extra={"tenant": tenant, "attachments": len(parsed.attachments)})
        return event.id

    def email_tenants(self, address: str) -> list[str]:
        """Tenants that receive mail for ``address`` (an exact address or a configured ``@domain``)."""
        return [t for t, c in self.config.items() if c.email and mail.is_own(address, c.email.addresses)]


def summary(parsed: Parsed, accepted: list[str], rejected: list[Any]) -> Reply:
    return json_reply({"accepted": len(accepted), "ignored": len(parsed.ignored),
                       "rejected": [{"id": r.id, "reason": r.reason, "detail": r.detail} for r in rejected]})
