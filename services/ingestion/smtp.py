"""The inbound SMTP listener (aiosmtpd), run inside the ingestion process when ``TOUCHPOINT_SMTP_ENABLED``.

Thin: recipients are accepted only for addresses a tenant configured (``550`` otherwise); a message is
answered ``250`` only after its interaction was acknowledged by Kafka, ``451`` (try again later) when Kafka or
PostgreSQL failed, ``554`` when it cannot become an interaction, ``552`` when it exceeds the size limit.
The listener does no SPF/DKIM checks: put it behind the MTA that receives the company's mail and let that
MTA forward (or BCC) customer mail to it.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from typing import AsyncIterator

from aiosmtpd.smtp import SMTP, Envelope, Session
from fastapi import FastAPI

from services.ingestion.connectors.base import PayloadError
from services.ingestion.connectors.intake import ConnectorIntake, ThreadStore
from shared.db import tenant_scope

log = logging.getLogger(__name__)


class InboundMailHandler:
    """aiosmtpd hooks; one instance serves every connection."""

    def __init__(self, intake: ConnectorIntake, threads: ThreadStore) -> None:
        self.intake = intake
        self.threads = threads

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        if not self.intake.email_tenants(address):
            return "550 5.1.1 No such recipient here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        tenants = dict.fromkeys(t for r in envelope.rcpt_tos for t in self.intake.email_tenants(r))
        raw = envelope.original_content or envelope.content
        if not isinstance(raw, bytes):
            raw = str(raw).encode("utf-8", "surrogateescape")
        try:
            for tenant in tenants:
                with tenant_scope(tenant):  # the recipient address names the tenant
                    await self.intake.receive_email(tenant, raw, self.threads)
        except PayloadError as exc:
            return f"554 5.6.0 Message refused: {exc.reason}"
        except Exception as exc:  # noqa: BLE001 - Kafka or PostgreSQL failed: the sending MTA retries
            log.error("email not stored", extra={"error": type(exc).__name__})
            return "451 4.3.0 Temporary failure, try again later"
        return "250 2.0.0 Message accepted"


async def start_listener(handler: InboundMailHandler, host: str, port: int, max_bytes: int) -> asyncio.AbstractServer:
    # aiosmtpd logs every envelope address at INFO: personal data, which never goes to our logs.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, data_size_limit=max_bytes, enable_SMTPUTF8=True, hostname="touchpoint", timeout=60),
        host, port,
    )
    log.info("smtp listener started", extra={"port": port})
    return server


def serve_smtp(app: FastAPI, host: str, port: int, max_bytes: int) -> None:
    """Run the listener for the app's lifetime: started after the service's clients, stopped before them."""
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(application: FastAPI) -> AsyncIterator[None]:
        async with inner(application):
            state = application.state
            server = await start_listener(InboundMailHandler(state.intake, state.email_threads), host, port, max_bytes)
            try:
                yield
            finally:
                server.close()
                await server.wait_closed()

    app.router.lifespan_context = lifespan
