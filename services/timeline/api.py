"""Timeline HTTP API: a customer's timeline, profile and the "screen pop" lookup. Tenant-scoped; scope ``read``
(or an agent key: agents see the customers they talk to).

An id that was merged away is answered with the survivor's data (``customer_id`` in the answer says which).
A customer of another tenant is indistinguishable from one that does not exist: 404.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Literal

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response

from services.timeline import repository as repo
from shared.auth import Principal
from shared.cloudevents import InvalidEvent
from shared.contracts.interaction import Channel, Identifier
from shared.httpapi import ApiError, require_reader
from shared.identifiers import normalise_identifier

router = APIRouter(prefix="/v1/customers")
read_scope = require_reader()
# Entry kinds a timeline can be filtered on (a routing entry's kind is "routing.<event>").
KindGroup = Literal["interaction", "routing", "notification", "feedback"]


def encode_cursor(occurred_at: datetime, seq: int) -> str:
    return base64.urlsafe_b64encode(f"{occurred_at.isoformat()}|{seq}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        ts, seq = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        return datetime.fromisoformat(ts), int(seq)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "invalid_cursor", "the cursor is not one this API returned") from None


async def canonical_id(request: Request, tenant: str, customer_id: str) -> str:
    pool = request.app.state.resources.pool
    async with pool.acquire() as conn:
        found = await repo.canonical_ids(conn, {(tenant, customer_id)})
    return found.get((tenant, customer_id), customer_id)


@router.get("/lookup", summary="Find the customer holding an identifier (screen pop)")
async def lookup(request: Request, type: str = Query(min_length=2, max_length=32), value: str = Query(min_length=1, max_length=320),
                 principal: Principal = Depends(read_scope)) -> dict:
    settings = request.app.state.resources.settings
    try:
        ident = normalise_identifier(Identifier(type=type, value=value), settings.default_phone_region)
    except (InvalidEvent, ValueError):
        raise ApiError(400, "invalid_identifier", f"not a valid {type} identifier") from None
    async with request.app.state.resources.pool.acquire() as conn:
        customer_id = await repo.lookup(conn, principal.tenant, ident.type, ident.value)
    if customer_id is None:
        raise ApiError(404, "not_found", "no customer holds this identifier")
    return await profile_of(request, principal.tenant, customer_id)


@router.get("/{customer_id}", summary="A customer's profile")
async def profile(request: Request, customer_id: str, principal: Principal = Depends(read_scope)) -> dict:
    return await profile_of(request, principal.tenant, await canonical_id(request, principal.tenant, customer_id))


async def profile_of(request: Request, tenant: str, customer_id: str) -> dict:
    async with request.app.state.resources.pool.acquire() as conn:
        rows = await repo.profiles(conn, [(tenant, customer_id)])
    if not rows:
        raise ApiError(404, "not_found", "no such customer")
    row = rows[0]
    return {
        "customer_id": row["customer_id"],
        "identifiers": [dict(zip(("type", "value"), i.split(":", 1))) for i in row["identifiers"]],
        "channels": list(row["channels"]),
        "first_contact_at": row["first_contact_at"],
        "last_contact_at": row["last_contact_at"],
        "entry_count": row["entry_count"],
        "merged_ids": list(row["merged_ids"]),
    }


@router.get("/{customer_id}/timeline", summary="A customer's timeline, newest first, cursor-paginated")
async def timeline(
    request: Request,
    customer_id: str,
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = None,
    channel: list[Channel] | None = Query(None),
    kind: list[KindGroup] | None = Query(None, description="interaction, routing, notification or feedback"),
    since: datetime | None = None,
    until: datetime | None = None,
    principal: Principal = Depends(read_scope),
) -> Response:
    tenant = principal.tenant
    before = decode_cursor(cursor) if cursor else None
    async with request.app.state.resources.pool.acquire() as conn:
        canonical, rows = await repo.timeline_page(conn, tenant, customer_id, limit + 1, before, channel, since, until,
                                                   kind)
        if not rows and before is None:
            if not await repo.profiles(conn, [(tenant, canonical)]):
                raise ApiError(404, "not_found", "no such customer")
    more = len(rows) > limit
    rows = rows[:limit]
    # Stored payloads are entry objects without customer_id: each one's closing brace gives way to it.
    quoted = orjson.dumps(canonical).decode()
    close = f',"customer_id":{quoted}}}'
    body = (close + ",").join(r["payload"][:-1] for r in rows) + close if rows else ""
    next_cursor = encode_cursor(rows[-1]["occurred_at"], rows[-1]["seq"]) if more else None
    text = f'{{"customer_id":{quoted},"entries":[{body}],"next_cursor":{orjson.dumps(next_cursor).decode()}}}'
    return Response(text.encode(), media_type="application/json")
