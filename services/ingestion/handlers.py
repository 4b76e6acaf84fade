"""Ingestion entry points: the HTTP gateway routes and the inbound-topic subscriber. Thin: translate, call."""

from __future__ import annotations

import logging

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from services.ingestion.admission import Overloaded
from services.ingestion.pipeline import IngestionPipeline
from shared.auth import Principal
from shared.contracts.interaction import InteractionOccurredV1
from shared.cloudevents import BATCH_CONTENT_TYPE, JSON, STRUCTURED_CONTENT_TYPE, InvalidEvent, loads_json
from shared.httpapi import ApiError, require_scope

log = logging.getLogger(__name__)
router = APIRouter()


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing with 413 before reading more than ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "payload_too_large", f"body exceeds {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "payload_too_large", f"body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_events(content_type: str, body: bytes) -> list:
    media = content_type.split(";")[0].strip().lower()
    if media not in (STRUCTURED_CONTENT_TYPE, BATCH_CONTENT_TYPE, JSON):
        raise ApiError(415, "unsupported_media_type",
                       f"use {STRUCTURED_CONTENT_TYPE} or {BATCH_CONTENT_TYPE}")
    try:
        parsed = loads_json(body)
    except InvalidEvent as exc:
        raise ApiError(400, exc.reason, exc.detail) from None
    if media == BATCH_CONTENT_TYPE and not isinstance(parsed, list):
        raise ApiError(400, "invalid_batch", "a batch must be a JSON array of CloudEvents")
    items = parsed if isinstance(parsed, list) else [parsed]
    if not items:
        raise ApiError(400, "invalid_batch", "the batch is empty")
    if len(items) > 1000:
        raise ApiError(413, "batch_too_large", "at most 1000 events per batch")
    return items


def _inlined(schema: dict) -> dict:
    """The schema with its local ``$defs`` references replaced by their definitions (OpenAPI has no $defs)."""
    defs = schema.pop("$defs", {})

    def walk(node):
        if isinstance(node, dict):
            if "$ref" in node:
                return walk(defs[node["$ref"].rsplit("/", 1)[-1]])
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(schema)


EVENT_SCHEMA = {
    "type": "object",
    "required": ["specversion", "id", "source", "type"],
    "properties": {
        "specversion": {"type": "string", "enum": ["1.0"]}, "id": {"type": "string"}, "source": {"type": "string"},
        "type": {"type": "string", "enum": ["touchpoint.interaction.occurred.v1"]},
        "time": {"type": "string", "format": "date-time"}, "tenant": {"type": "string"},
        "data": _inlined(InteractionOccurredV1.model_json_schema()),
    },
}
REQUEST_BODY = {"required": True, "content": {
    STRUCTURED_CONTENT_TYPE: {"schema": EVENT_SCHEMA},
    BATCH_CONTENT_TYPE: {"schema": {"type": "array", "items": EVENT_SCHEMA, "minItems": 1, "maxItems": 1000}},
}}


@router.post("/v1/events", status_code=202, summary="Publish CloudEvents (structured or batch mode)",
             openapi_extra={"requestBody": REQUEST_BODY})
async def post_events(request: Request, principal: Principal = Depends(require_scope("ingest"))) -> JSONResponse:
    pipeline: IngestionPipeline = request.app.state.pipeline
    body = await read_body(request, request.app.state.max_body_bytes)
    items = parse_events(request.headers.get("content-type", ""), body)
    try:
        accepted, rejected = await pipeline.accept_http(items, principal.tenant, dict(request.headers))
    except Overloaded:  # answered 429/503 with Retry-After by the app's handler
        raise
    except Exception as exc:  # Kafka did not acknowledge: never answer 2xx for what is not durable
        log.error("publish failed", extra={"error": type(exc).__name__})
        raise ApiError(503, "unavailable", "events could not be stored; retry later") from None
    status = 202 if not rejected else (400 if not accepted else 207)
    content = {"accepted": accepted, "rejected": [r.__dict__ for r in rejected]}
    return JSONResponse(orjson.loads(orjson.dumps(content)), status_code=status)
