"""Web chat widget API. Thin routes over ``connectors/webchat.py`` (rules) and ``connectors/repository.py``.

- ``POST /v1/webchat/conversations`` (site key): start; answers the conversation id and its token.
- ``POST /v1/webchat/conversations/{id}/messages`` (site key + token): a visitor message → inbound interaction.
- ``GET /v1/webchat/conversations/{id}/events`` (site key + token, also as query parameters because
  ``EventSource`` cannot send headers): server-sent events, one ``reply`` per agent reply, resumable with
  ``Last-Event-ID``.
- ``POST /v1/webchat/conversations/{id}/replies`` (API key with scope ``ingest``): an agent reply → outbound
  interaction, streamed to the widget.

Messages are answered 202 only after Kafka acknowledged the interaction. Replies reach the widget through an
in-process wake-up plus a short database poll, so several ingestion instances can serve one conversation.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import defaultdict
from datetime import datetime, timezone
from typing import Annotated, AsyncIterator

import orjson
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from services.ingestion.admission import Overloaded
from services.ingestion.connectors import webchat
from services.ingestion.connectors.base import ConnectorError
from services.ingestion.connectors.repository import WebchatStore
from services.ingestion.handlers import read_body
from services.ingestion.normalise import validation_summary
from shared.auth import Principal
from shared.cloudevents import InvalidEvent
from shared.contracts.interaction import Identifier
from shared.httpapi import ApiError, across_tenants, require_scope
from shared.identifiers import normalise_identifier

log = logging.getLogger(__name__)
router = APIRouter(tags=["webchat"])
MAX_BODY = 64 * 1024
POLL_SECONDS = 2.0
STREAM_SECONDS = 300.0  # then the stream ends and EventSource reconnects with Last-Event-ID


def _storable(value: str) -> str:
    if "\x00" in value:
        raise ValueError("NUL characters are not allowed")
    value.encode("utf-8")  # lone surrogates raise UnicodeEncodeError, a ValueError
    return value


Text = Annotated[str, AfterValidator(_storable)]


class StartConversation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    visitor_id: Text | None = Field(default=None, min_length=1, max_length=200,
                                    description="the widget's visitor id (kept in a cookie); new when absent")
    email: Text | None = Field(default=None, min_length=3, max_length=320)


class VisitorMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: Text | None = Field(default=None, min_length=1, max_length=200,
                            description="client message id: a retried send with the same id is a duplicate")
    text: Text = Field(min_length=1, max_length=8000)


class AgentReply(VisitorMessage):
    agent_id: Text | None = Field(default=None, min_length=1, max_length=200)


class ReplyHub:
    """In-process wake-ups for open event streams; the database stays the source of truth."""

    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)

    def notify(self, conversation_id: str) -> None:
        for event in self._waiters.get(conversation_id, ()):
            event.set()

    async def wait(self, conversation_id: str, timeout: float) -> None:
        event = asyncio.Event()
        self._waiters[conversation_id].add(event)
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            self._waiters[conversation_id].discard(event)
            if not self._waiters[conversation_id]:
                del self._waiters[conversation_id]


def _body_schema(model: type[BaseModel]) -> dict:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}


async def _parse(request: Request, model: type[BaseModel]) -> BaseModel:
    body = await read_body(request, MAX_BODY)
    try:
        return model.model_validate_json(body or b"{}")
    except ValidationError as exc:
        raise ApiError(422, "invalid_request", validation_summary(exc)) from None


def _site(request: Request, site_key: str | None) -> str:
    try:
        tenant, _ = webchat.tenant_for_site_key(request.app.state.intake.config, site_key,
                                                request.headers.get("origin"))
    except ConnectorError as exc:
        raise ApiError(exc.status, exc.reason, exc.detail) from None
    return tenant


async def _conversation(request: Request, conversation_id: str, tenant: str, token: str | None):
    store: WebchatStore = request.app.state.webchat
    try:
        return webchat.authorise(await store.conversation(conversation_id), tenant, token)
    except ConnectorError as exc:
        raise ApiError(exc.status, exc.reason, exc.detail) from None


def _bearer(authorization: str | None) -> str | None:
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return None


async def _publish(request: Request, event, tenant: str) -> None:
    try:
        accepted, rejected = await request.app.state.pipeline.relay([event], tenant)
    except Overloaded:  # answered 429/503 with Retry-After by the app's handler
        raise
    except Exception as exc:  # Kafka did not acknowledge
        log.error("chat message not stored", extra={"error": type(exc).__name__})
        raise ApiError(503, "unavailable", "the message could not be stored; retry later") from None
    if rejected:
        raise ApiError(400, rejected[0].reason, rejected[0].detail)


@router.post("/v1/webchat/conversations", dependencies=[Depends(across_tenants)], status_code=201, openapi_extra=_body_schema(StartConversation),
             summary="Start a web chat conversation (site key)")
async def start_conversation(request: Request, x_site_key: str | None = Header(default=None)) -> JSONResponse:
    tenant = _site(request, x_site_key)
    start = await _parse(request, StartConversation)
    email = None
    if start.email:
        try:
            email = normalise_identifier(Identifier(type="email", value=start.email), "ZZ").value
        except (InvalidEvent, ValueError):
            raise ApiError(400, "invalid_identifier", "email is not an address") from None
    conversation, token = webchat.start(tenant, x_site_key, start.visitor_id, email)
    await request.app.state.webchat.add_conversation(conversation)
    return JSONResponse({"conversation_id": conversation.conversation_id, "token": token,
                         "visitor_id": conversation.visitor_id}, status_code=201)


@router.post("/v1/webchat/conversations/{conversation_id}/messages", dependencies=[Depends(across_tenants)], status_code=202,
             openapi_extra=_body_schema(VisitorMessage), summary="Send a visitor message (site key + token)")
async def send_message(conversation_id: str, request: Request, x_site_key: str | None = Header(default=None),
                       authorization: str | None = Header(default=None)) -> JSONResponse:
    tenant = _site(request, x_site_key)
    conversation = await _conversation(request, conversation_id, tenant, _bearer(authorization))
    message = await _parse(request, VisitorMessage)
    event = webchat.message_event(conversation, message.id or str(uuid.uuid4()), message.text, "inbound",
                                  datetime.now(timezone.utc))
    await _publish(request, event, tenant)
    return JSONResponse({"id": event.id}, status_code=202)


@router.post("/v1/webchat/conversations/{conversation_id}/replies", status_code=202,
             openapi_extra=_body_schema(AgentReply), summary="Post an agent reply (API key, scope ingest)")
async def post_reply(conversation_id: str, request: Request,
                     principal: Principal = Depends(require_scope("ingest"))) -> JSONResponse:
    store: WebchatStore = request.app.state.webchat
    conversation = await store.conversation(conversation_id)
    if conversation is None or conversation.tenant != principal.tenant:
        raise ApiError(404, "unknown_conversation", "no such conversation")
    reply = await _parse(request, AgentReply)
    reply_id = reply.id or str(uuid.uuid4())
    event = webchat.message_event(conversation, f"reply:{reply_id}", reply.text, "outbound",
                                  datetime.now(timezone.utc), reply.agent_id)
    await _publish(request, event, conversation.tenant)
    await store.add_reply(conversation_id, reply_id, reply.text, reply.agent_id)
    request.app.state.reply_hub.notify(conversation_id)
    return JSONResponse({"id": event.id}, status_code=202)


@router.get("/v1/webchat/conversations/{conversation_id}/events", dependencies=[Depends(across_tenants)], summary="Agent replies as server-sent events")
async def stream_replies(conversation_id: str, request: Request,
                         site_key: str | None = Query(default=None), token: str | None = Query(default=None),
                         x_site_key: str | None = Header(default=None),
                         authorization: str | None = Header(default=None),
                         last_event_id: str | None = Header(default=None)) -> StreamingResponse:
    tenant = _site(request, x_site_key or site_key)
    conversation = await _conversation(request, conversation_id, tenant, _bearer(authorization) or token)
    after = int(last_event_id) if last_event_id and last_event_id.isascii() and last_event_id.isdigit() else 0
    stream = _reply_stream(request, conversation.conversation_id, min(after, 2**62))
    return StreamingResponse(stream, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _reply_stream(request: Request, conversation_id: str, after: int) -> AsyncIterator[bytes]:
    store: WebchatStore = request.app.state.webchat
    hub: ReplyHub = request.app.state.reply_hub
    deadline = time.monotonic() + STREAM_SECONDS
    yield b"retry: 2000\n\n"
    while time.monotonic() < deadline and not await request.is_disconnected():
        replies = await store.replies_after(conversation_id, after)
        for reply in replies:
            after = reply.seq
            data = {"id": reply.reply_id, "text": reply.text, "agent_id": reply.agent_id,
                    "sent_at": reply.sent_at.isoformat()}
            yield b"id: %d\nevent: reply\ndata: %s\n\n" % (reply.seq, orjson.dumps(data))
        if not replies:
            yield b": keep-alive\n\n"
            await hub.wait(conversation_id, POLL_SECONDS)
