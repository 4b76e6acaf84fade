"""Provider webhook routes: ``/v1/webhooks/{tenant}/{connector}`` (GET handshake, POST notifications) and
``/v1/webhooks/{tenant}/generic/{name}`` (Standard Webhooks). Thin: translate the HTTP request, call the
connector intake, translate its answer or error. See docs/connectors.md.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Awaitable, Callable

from fastapi import APIRouter, Request, Response

from services.ingestion.admission import Overloaded
from services.ingestion.connectors.base import ConnectorError, Reply, WebhookRequest
from services.ingestion.connectors.intake import ConnectorIntake
from services.ingestion.handlers import read_body
from shared.db import enter_scope
from shared.httpapi import ApiError

log = logging.getLogger(__name__)
router = APIRouter(tags=["webhooks"])
RESPONSES = {401: {"description": "signature missing, invalid or stale"}, 404: {"description": "no such connector"},
             413: {"description": "body too large"}, 503: {"description": "not stored; retry later"}}


def webhook_request(request: Request, body: bytes, public_url: str | None) -> WebhookRequest:
    """The request as the provider sent it; ``public_url`` replaces scheme and host behind a proxy."""
    url = str(request.url)
    if public_url:
        query = request.url.query
        url = public_url.rstrip("/") + request.url.path + (f"?{query}" if query else "")
    return WebhookRequest(
        method=request.method, url=url, headers={k.lower(): v for k, v in request.headers.items()},
        query=dict(request.query_params), body=body, received_at=datetime.now(timezone.utc),
    )


def _as_response(reply: Reply) -> Response:
    return Response(reply.body, status_code=reply.status, media_type=reply.content_type)


async def _answer(call: Callable[[], Awaitable[Reply]]) -> Response:
    try:
        return _as_response(await call())
    except ConnectorError as exc:
        raise ApiError(exc.status, exc.reason, exc.detail) from None
    except ApiError:
        raise
    except Overloaded:  # answered 429/503 with Retry-After by the app's handler
        raise
    except Exception as exc:  # Kafka or PostgreSQL failed: never 2xx for what is not durable
        log.error("webhook not stored", extra={"error": type(exc).__name__})
        raise ApiError(503, "unavailable", "the notification could not be stored; retry later") from None


@router.get("/v1/webhooks/{tenant}/{connector}", responses=RESPONSES,
            summary="Verification handshake (Meta hub.challenge, X CRC)")
async def webhook_handshake(tenant: str, connector: str, request: Request) -> Response:
    intake: ConnectorIntake = request.app.state.intake
    hook = webhook_request(request, b"", request.app.state.public_url)

    async def call() -> Reply:
        return intake.handshake(tenant, connector, hook)

    return await _answer(call)


@router.post("/v1/webhooks/{tenant}/{connector}", responses=RESPONSES,
             summary="Provider notification (WhatsApp, Messenger, Instagram, Twilio, X)")
async def receive_webhook(tenant: str, connector: str, request: Request) -> Response:
    return await _receive(request, tenant, connector, generic=False)


@router.post("/v1/webhooks/{tenant}/generic/{name}", responses=RESPONSES,
             summary="Generic signed webhook (Standard Webhooks)")
async def receive_generic_webhook(tenant: str, name: str, request: Request) -> Response:
    return await _receive(request, tenant, name, generic=True)


async def _receive(request: Request, tenant: str, name: str, generic: bool) -> Response:
    intake: ConnectorIntake = request.app.state.intake

    async def call() -> Reply:
        intake.connector(tenant, name, generic)  # 404 before reading the body
        enter_scope(tenant)  # a configured tenant: the rest of the request sees its rows only
        body = await read_body(request, request.app.state.max_body_bytes)
        hook = webhook_request(request, body, request.app.state.public_url)
        return await intake.receive(tenant, name, hook, generic)

    return await _answer(call)
