"""Identity HTTP API, tenant-scoped: merge, split and erase customers (scope ``admin``); show a customer's
identity graph and request a split for review (scope ``read`` or an agent key)."""

from __future__ import annotations

import uuid
from typing import Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from services.identity import admin
from services.identity.rules import TenantRulesConfig
from shared.auth import Principal
from shared.contracts.interaction import Identifier
from shared.httpapi import ApiError, require_reader, require_scope

router = APIRouter(prefix="/v1/identities")
admin_scope = require_scope("admin")
reader = require_reader()


class MergeRequest(BaseModel):
    customer_ids: list[str] = Field(min_length=2, max_length=50)
    request_id: str = Field(default_factory=lambda: str(uuid.uuid4()), max_length=200)


class SplitRequest(BaseModel):
    identifiers: list[Identifier] = Field(min_length=1, max_length=100)
    reason: str = Field(default="operator request", max_length=500)
    request_id: str = Field(default_factory=lambda: str(uuid.uuid4()), max_length=200)


async def _answer(action):
    """The read-only action's result, its AdminError as the HTTP error."""
    try:
        return await action
    except admin.AdminError as exc:
        raise ApiError(exc.status, exc.reason, exc.detail) from None


async def _run(request: Request, action):
    """The graph-changing action's result, published (its outbox events) before answering."""
    result = await _answer(action)
    await request.app.state.service.publish_pending_merges()
    return result


@router.get("/reviews", summary="Merges held for review, with the evidence")
async def list_reviews(request: Request, status: Literal["pending", "approved", "rejected"] = "pending",
                       principal: Principal = Depends(admin_scope)) -> dict:
    return {"reviews": await admin.reviews(request.app.state.resources.pool, principal.tenant, status)}


@router.post("/reviews/{review_id}/approve", summary="Approve a held merge: the customers are merged")
async def approve_review(request: Request, review_id: str, principal: Principal = Depends(admin_scope)) -> dict:
    return await _run(request, admin.decide_review(request.app.state.resources.pool, principal.tenant, review_id,
                                                   True, principal.key_id))


@router.post("/reviews/{review_id}/reject", summary="Reject a held merge: the customers stay apart")
async def reject_review(request: Request, review_id: str, principal: Principal = Depends(admin_scope)) -> dict:
    return await _run(request, admin.decide_review(request.app.state.resources.pool, principal.tenant, review_id,
                                                   False, principal.key_id))


@router.get("/rules", summary="The identity rules in force for the caller's tenant")
async def rules_in_force(request: Request, principal: Principal = Depends(admin_scope)) -> dict:
    source = request.app.state.rules
    config = source.current()
    rules = config.tenants.get(principal.tenant) or config.tenants.get("default") or TenantRulesConfig()
    return {"tenant": principal.tenant, "rules": rules.model_dump(),
            "file": str(source.path) if source.path else None, "last_error": source.last_error}


@router.get("/{customer_id}/explain", summary="Why these identifiers belong to this customer, and what was refused")
async def explain(request: Request, customer_id: str, principal: Principal = Depends(reader)) -> dict:
    return await _answer(admin.explain(request.app.state.resources.pool, principal.tenant, customer_id))


@router.get("/split-requests", summary="Splits requested by agents, oldest first")
async def list_split_requests(request: Request, principal: Principal = Depends(admin_scope)) -> dict:
    return {"split_requests": await admin.split_requests(request.app.state.resources.pool, principal.tenant)}


@router.get("/{customer_id}", summary="A customer's identity graph: why each identifier belongs to it")
async def show(request: Request, customer_id: str, principal: Principal = Depends(reader)) -> dict:
    return await _answer(admin.show(request.app.state.resources.pool, principal.tenant, customer_id))


@router.post("/merge", summary="Merge customers into the oldest of them")
async def merge(request: Request, body: MergeRequest, principal: Principal = Depends(admin_scope)) -> dict:
    return await _run(request, admin.merge(request.app.state.resources.pool, principal.tenant, body.customer_ids,
                                           body.request_id))


@router.post("/merges/{merge_id}/undo", summary="Undo a merge: the merged-away customers come back with what they held")
async def undo_merge(request: Request, merge_id: str, principal: Principal = Depends(admin_scope)) -> dict:
    return await _run(request, admin.undo_merge(request.app.state.resources.pool, principal.tenant, merge_id))


@router.post("/{customer_id}/split", summary="Detach identifiers into a new customer")
async def split(request: Request, customer_id: str, body: SplitRequest, principal: Principal = Depends(admin_scope)) -> dict:
    idents = [(i.type, i.value) for i in body.identifiers]
    return await _run(request, admin.split(request.app.state.resources.pool, principal.tenant, customer_id, idents,
                                           body.reason, body.request_id))


@router.post("/{customer_id}/split-requests", summary="Ask an administrator to split identifiers off", status_code=202)
async def request_split(request: Request, customer_id: str, body: SplitRequest,
                        principal: Principal = Depends(reader)) -> dict:
    idents = [(i.type, i.value) for i in body.identifiers]
    return await _answer(admin.request_split(request.app.state.resources.pool, principal.tenant, customer_id, idents,
                                             body.reason, body.request_id, principal.key_id))


@router.post("/{customer_id}/erase", summary="Erase a customer's personal data everywhere", status_code=202)
async def erase(request: Request, customer_id: str, principal: Principal = Depends(admin_scope)) -> dict:
    return await _run(request, admin.erase(request.app.state.resources.pool, principal.tenant, customer_id,
                                           str(uuid.uuid4())))
