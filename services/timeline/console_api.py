"""The agent console: the page (``/console``) and the APIs behind it (``/v1/console``). Tenant-scoped; scope
``read`` or an agent key (``agent``, ``agent:<id>``).

- ``GET /v1/console/search?q=`` finds customers by any identifier value (phone, e-mail, handle, contract
  number, ...) or by the start of their name.
- ``GET /v1/console/customers/{id}`` is the customer header: identifiers with the channels they were used on,
  name, language, time zone, tier, consent per purpose and channel, last NPS/CSAT/CES, open conversations (live
  queue position and SLA clocks from the routing service) and notifications with their decisions.
- ``GET /v1/console/customers/{id}/identity`` explains the identity graph (from the identity service) and
  ``POST .../split-requests`` asks an administrator for a split.
- ``GET /v1/console/customers/{id}/live`` is a server-sent event stream: ``entry`` for each new timeline entry,
  ``changed`` when anything else about the customer changed, ``merged`` when the customer was merged into
  another (data: the survivor's id; the stream ends there).

Calls to the routing and identity services carry the caller's own key, so they apply the caller's tenant and
scopes; when a peer is down or slow the panel says so and the rest of the page still renders.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, AsyncIterator

import httpx
import orjson
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import FileResponse, StreamingResponse

from services.timeline import console
from services.timeline import repository as repo
from services.timeline.api import canonical_id, profile_of
from shared.auth import Principal
from shared.httpapi import ApiError, require_reader

router = APIRouter(prefix="/v1/console")
page_router = APIRouter()
reader = require_reader()
STATIC = Path(__file__).resolve().parent / "console_static"
# Global sequence numbers a transaction still running may hold below the last one handed out: a live stream
# re-reads this window so that an entry committed late is still sent.
LIVE_WINDOW = 1_000_000
MAX_OPEN_CONVERSATIONS = 10
# New entries sent per wake-up; more wait for the next one (a wake-up follows at once while any are left).
MAX_LIVE_BATCH = 500
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self';"
                               " connect-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@page_router.get("/console", include_in_schema=False)
async def console_page() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"})


@page_router.get("/console/assets/{name}", include_in_schema=False)
async def console_asset(name: str) -> FileResponse:
    path = STATIC / name
    if "/" in name or name.startswith(".") or not path.is_file():
        raise ApiError(404, "not_found", "no such asset")
    return FileResponse(path, headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"})


@router.get("/search", summary="Find customers by identifier value or name")
async def search(request: Request, q: str = Query(min_length=1, max_length=320), limit: int = Query(20, ge=1, le=50),
                 principal: Principal = Depends(reader)) -> dict:
    settings = request.app.state.resources.settings
    values, name = console.search_terms(q, settings.default_phone_region)
    async with request.app.state.resources.pool.acquire() as conn:
        rows = await repo.search(conn, principal.tenant, values, name, limit)
        names = await _names(conn, principal.tenant, [r["customer_id"] for r in rows])
    return {"results": [{"customer_id": r["customer_id"], "matched": r["matched"],
                         "display_name": names.get(r["customer_id"])} for r in rows]}


async def _names(conn: Any, tenant: str, customer_ids: list[str]) -> dict[str, str | None]:
    names = {}
    for cid in customer_ids:
        profile = await repo.profiles(conn, [(tenant, cid)])
        idents = list(profile[0]["identifiers"]) if profile else []
        prefs = console.preferences(await repo.preferences_of(conn, tenant, console.subjects(cid, [], idents)))
        names[cid] = prefs.get("display_name")
    return names


@router.get("/customers/{customer_id}", summary="The customer header: who, consent, scores, conversations, notifications")
async def header(request: Request, customer_id: str, principal: Principal = Depends(reader)) -> dict:
    tenant = principal.tenant
    profile = await profile_of(request, tenant, await canonical_id(request, tenant, customer_id))
    cid = profile["customer_id"]
    idents = [f"{i['type']}:{i['value']}" for i in profile["identifiers"]]
    async with request.app.state.resources.pool.acquire() as conn:
        channels = await repo.identifier_channels(conn, tenant, cid)
        subjects = console.subjects(cid, profile["merged_ids"], idents)
        consents = console.consent_state(await repo.consents_of(conn, tenant, subjects), datetime.now(timezone.utc))
        prefs = console.preferences(await repo.preferences_of(conn, tenant, subjects))
        feedback = _entries(await repo.entries_of_kind(conn, tenant, cid, "feedback", 200))
        notifications = _entries(await repo.entries_of_kind(conn, tenant, cid, "notification", 300))
        routing = _entries(await repo.entries_of_kind(conn, tenant, cid, "routing.", 500))
    conversations = console.open_conversations(routing)[:MAX_OPEN_CONVERSATIONS]
    return {
        **profile,
        "identifiers": [{**i, "channels": channels.get(f"{i['type']}:{i['value']}", [])} for i in profile["identifiers"]],
        "display_name": prefs.get("display_name"), "language": prefs.get("language"),
        "time_zone": prefs.get("time_zone"), "tier": prefs.get("tier"),
        "preferred_channel": prefs.get("preferred_channel"), "quiet_hours": prefs.get("quiet_hours"),
        "consent": consents,
        "scores": console.last_scores(feedback),
        "conversations": await _with_live_state(request, conversations),
        "notifications": console.notification_decisions(notifications),
        "server_time": datetime.now(timezone.utc).isoformat(),
    }


def _entries(rows: list[Any]) -> list[dict]:
    return [orjson.loads(r["payload"]) for r in rows]


async def _with_live_state(request: Request, conversations: list[dict]) -> list[dict]:
    """Each open conversation with the routing service's view of it (status, position, ETA, SLA clocks) under
    ``live``, or ``live_error`` when the routing service could not say."""
    async def one(c: dict) -> dict:
        status, body = await _peer(request, "routing_url", "GET", f"/v1/conversations/{c['conversation_id']}")
        if status == 200:
            return {**c, "live": body}
        return {**c, "live_error": body.get("error", {}).get("reason", "unavailable") if isinstance(body, dict) else "unavailable"}
    return list(await asyncio.gather(*(one(c) for c in conversations)))


@router.get("/customers/{customer_id}/identity", summary="Why these identifiers belong to this customer")
async def identity(request: Request, customer_id: str, principal: Principal = Depends(reader)) -> Response:
    canonical = await canonical_id(request, principal.tenant, customer_id)
    status, body = await _peer(request, "identity_url", "GET", f"/v1/identities/{canonical}/explain")
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


@router.post("/customers/{customer_id}/split-requests", summary="Ask an administrator to split identifiers off",
             status_code=202)
async def split_request(request: Request, customer_id: str, principal: Principal = Depends(reader)) -> Response:
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise ApiError(400, "invalid_json", "the body is not JSON") from None
    canonical = await canonical_id(request, principal.tenant, customer_id)
    status, answer = await _peer(request, "identity_url", "POST", f"/v1/identities/{canonical}/split-requests", body)
    return Response(orjson.dumps(answer), status_code=status, media_type="application/json")


async def _peer(request: Request, setting: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """Call a peer service with the caller's key: (status, JSON body). A peer that is not configured, down or
    slow is a 503 with a reason, never an exception."""
    settings = request.app.state.resources.settings
    base = getattr(settings, setting)
    if not base:
        return 503, {"error": {"reason": "not_configured", "detail": f"{setting} is not set"}}
    client: httpx.AsyncClient = request.app.state.peer_client
    headers = {k: v for k, v in (("authorization", request.headers.get("authorization")),
                                 ("x-api-key", request.headers.get("x-api-key"))) if v}
    try:
        answer = await client.request(method, base.rstrip("/") + path, json=body, headers=headers,
                                      timeout=settings.peer_timeout_seconds)
        return answer.status_code, answer.json()
    except (httpx.HTTPError, ValueError):
        return 503, {"error": {"reason": "unavailable", "detail": f"{setting.removesuffix('_url')} did not answer"}}


@router.get("/customers/{customer_id}/live", summary="Server-sent events: new entries and changes of the customer")
async def live(request: Request, customer_id: str, principal: Principal = Depends(reader)) -> StreamingResponse:
    tenant = principal.tenant
    canonical = (await profile_of(request, tenant, await canonical_id(request, tenant, customer_id)))["customer_id"]
    watch = await request.app.state.live_hub.watch(tenant, canonical)
    return StreamingResponse(_stream(request, watch), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _stream(request: Request, watch: Any) -> AsyncIterator[bytes]:
    """The live stream of one page. Entries already stored when it starts are the page's to load; every entry
    stored later is sent once, whichever order transactions commit in."""
    pool = request.app.state.resources.pool
    settings = request.app.state.resources.settings
    tenant = watch.key[0]
    try:
        async with pool.acquire() as conn:
            floor = max(0, await repo.last_seq(conn) - LIVE_WINDOW)
            seen = set(await repo.entry_ids_after(conn, tenant, watch.key[1], floor))
        yield b"event: ready\ndata: {}\n\n"
        while True:
            woken = await watch.wait(settings.live_idle_seconds)
            await request.app.state.live_hub.ensure_listening()
            survivor = await canonical_id(request, tenant, watch.key[1])
            if survivor != watch.key[1]:  # the page opens the survivor, with a stream of its own
                yield b"event: merged\ndata: " + orjson.dumps({"customer_id": survivor}) + b"\n\n"
                return
            async with pool.acquire() as conn:
                ids = [i for i in await repo.entry_ids_after(conn, tenant, watch.key[1], floor) if i not in seen]
                fresh = await repo.entries_by_id(conn, tenant, ids[:MAX_LIVE_BATCH]) if ids else []
            for r in fresh:
                seen.add(r["entry_id"])
                data = r["payload"].encode()[:-1] + b',"customer_id":' + orjson.dumps(watch.key[1]) + b"}"
                yield b"event: entry\ndata: " + data + b"\n\n"
            if len(ids) > len(fresh):
                watch.wake()
            yield b"event: changed\ndata: {}\n\n" if woken or fresh else b": idle\n\n"
    finally:
        watch.close()
