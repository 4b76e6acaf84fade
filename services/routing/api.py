"""Routing HTTP API. Tenant-scoped by the caller's API key.

Agents (scope ``agent:<agent id>`` for one agent, ``agent`` for a desktop integration acting for any):
presence, profile, their offers and conversations, accept/decline, conversation events.
Supervisors (scope ``read``): conversations with position, ETA and SLA clocks, queues, SLA overview. A single
conversation can also be read with an agent key (the agent console shows the customer's open conversations).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Header, Request
from pydantic import BaseModel, Field

from services.routing import repository as repo
from services.routing.domain.desk import Desk, DeskError
from services.routing.domain.model import Conversation
from services.routing.domain.queueing import Waiting, positions
from services.routing.domain.sla import SlaClocks
from services.routing.service import Op, conversation_activity
from shared.auth import Principal, key_from_headers
from shared.contracts import routing as rc
from shared.httpapi import ApiError, require_reader, require_scope

router = APIRouter(prefix="/v1")
read_scope = require_scope("read")


async def agent_principal(request: Request, agent_id: str, authorization: str | None = Header(default=None),
                          x_api_key: str | None = Header(default=None)) -> Principal:
    return await request.app.state.verifier.verify_agent(key_from_headers(authorization, x_api_key), agent_id)


class PresenceBody(BaseModel):
    presence: Literal["online", "away", "offline"]


class ProfileBody(BaseModel):
    name: str | None = Field(default=None, max_length=200)
    skills: dict[str, int] = Field(default_factory=dict, examples=[{"billing": 7, "returns": 3}])
    languages: list[str] = Field(default_factory=list, max_length=50, examples=[["de", "en"]])
    teams: list[str] = Field(default_factory=list, max_length=50)
    capacity_total: int = Field(default=100, ge=1, le=1000)
    attributes: dict[str, Any] = Field(default_factory=dict)


class ConversationEventBody(BaseModel):
    type: Literal["agent_replied", "customer_replied", "waiting_on_customer", "resolved", "reopened"]
    agent_id: str | None = Field(default=None, max_length=200)
    resolution: str | None = Field(default=None, max_length=500)
    prefer_agent_id: str | None = Field(default=None, max_length=200)


async def _act(request: Request, tenant: str, apply) -> Any:
    service = request.app.state.service
    try:
        [result] = await service.apply(tenant, [Op(None, apply)])
    except DeskError as exc:
        raise ApiError(exc.status, exc.reason, exc.detail) from None
    await service.publish_pending()
    return result


def _sync(fn):
    async def apply(desk: Desk, conn) -> Any:
        return fn(desk)
    return apply


@router.put("/agents/{agent_id}/presence", summary="Set an agent's presence")
async def set_presence(request: Request, agent_id: str, body: PresenceBody,
                       principal: Principal = Depends(agent_principal)) -> dict:
    now = request.app.state.service.clock.now()
    agent = await _act(request, principal.tenant, _sync(lambda desk: desk.presence(agent_id, body.presence, now)))
    return {"agent_id": agent.agent_id, "presence": agent.presence}


@router.put("/agents/{agent_id}", summary="Create or update an agent's skills, languages, teams and capacity")
async def set_profile(request: Request, agent_id: str, body: ProfileBody,
                      principal: Principal = Depends(require_scope("admin"))) -> dict:
    if any(not 1 <= level <= 10 for level in body.skills.values()):
        raise ApiError(422, "invalid_request", "skill levels are 1–10")
    attributes = {**body.attributes, "skills": body.skills, "languages": body.languages, "teams": body.teams}
    agent = await _act(request, principal.tenant, _sync(
        lambda desk: desk.profile(agent_id, body.name, attributes, body.capacity_total)))
    return {"agent_id": agent.agent_id, "capacity_total": agent.capacity_total}


@router.get("/agents/{agent_id}/conversations", summary="An agent's offers and conversations")
async def agent_queue(request: Request, agent_id: str, principal: Principal = Depends(agent_principal)) -> dict:
    async with request.app.state.resources.pool.acquire() as conn:
        items = await repo.agent_conversations(conn, principal.tenant, agent_id)
    return {"agent_id": agent_id, "conversations": [_view(request, principal.tenant, c) for c in items]}


@router.post("/agents/{agent_id}/offers/{offer_id}/accept", summary="Accept an offer")
async def accept(request: Request, agent_id: str, offer_id: str, principal: Principal = Depends(agent_principal)) -> dict:
    c = await _act(request, principal.tenant, _sync(lambda desk: desk.accept(offer_id, agent_id)))
    return _view(request, principal.tenant, c)


@router.post("/agents/{agent_id}/offers/{offer_id}/decline", summary="Decline an offer")
async def decline(request: Request, agent_id: str, offer_id: str, principal: Principal = Depends(agent_principal)) -> dict:
    c = await _act(request, principal.tenant, _sync(lambda desk: desk.decline(offer_id, agent_id)))
    return {"conversation_id": c.conversation_id, "status": c.status}


@router.post("/agents/{agent_id}/conversations/{conversation_id}/events",
             summary="Report a conversation event (reply, waiting on customer, resolved, reopened)")
async def conversation_event(request: Request, agent_id: str, conversation_id: str, body: ConversationEventBody,
                             principal: Principal = Depends(agent_principal)) -> dict:
    event_type = f"touchpoint.conversation.{body.type}.v1"
    model = rc.CONVERSATION_MODELS[event_type]
    now = request.app.state.service.clock.now()
    activity = model.model_validate({"conversation_id": conversation_id, "agent_id": body.agent_id or agent_id,
                                     "occurred_at": now.isoformat(), "resolution": body.resolution,
                                     "prefer_agent_id": body.prefer_agent_id})
    c = await _act(request, principal.tenant, conversation_activity(event_type, activity))
    if c is None:
        raise ApiError(404, "unknown_conversation", "no conversation with this id")
    return _view(request, principal.tenant, c)


@router.get("/conversations/{conversation_id}", summary="A conversation: status, queue position, ETA, SLA clocks")
async def get_conversation(request: Request, conversation_id: str,
                           principal: Principal = Depends(require_reader())) -> dict:
    async with request.app.state.resources.pool.acquire() as conn:
        c = await repo.conversation(conn, principal.tenant, conversation_id)
    if c is None:
        raise ApiError(404, "unknown_conversation", "no conversation with this id")
    return _view(request, principal.tenant, c)


@router.get("/queues", summary="Queues: waiting conversations in order with position and ETA, agents by presence")
async def queues(request: Request, principal: Principal = Depends(read_scope)) -> dict:
    async with request.app.state.resources.pool.acquire() as conn:
        items = await repo.open_overview(conn, principal.tenant)
        presence = await repo.agent_count(conn, principal.tenant)
    service = request.app.state.service
    now = service.clock.now()
    # Positions in the serving order now: the ones announced to customers are throttled beyond the first few
    # places, so a conversation ranked ahead later (another partition's older arrival) would leave them stale.
    ageing_s = service.config_source.current().tenant(principal.tenant).ageing_s
    queued = [c for c in items if c.status == "queued"]
    current = positions([Waiting(c.conversation_id, c.queue or "general", c.priority, c.queued_at or c.opened_at)
                         for c in queued], now, ageing_s)
    out: dict[str, dict] = {}
    for c in sorted(queued, key=lambda c: (c.queue or "", current[c.conversation_id])):
        q = out.setdefault(c.queue or "general", {"queue": c.queue or "general", "waiting": 0, "oldest_wait_s": 0.0,
                                                   "conversations": []})
        q["waiting"] += 1
        waited = (now - c.queued_at).total_seconds() if c.queued_at else 0.0
        q["oldest_wait_s"] = max(q["oldest_wait_s"], round(waited, 1))
        q["conversations"].append({"conversation_id": c.conversation_id, "customer_id": c.customer_id,
                                   "channel": c.channel, "priority": c.priority,
                                   "position": current[c.conversation_id],
                                   "eta_s": c.eta_s, "waited_s": round(waited, 1)})
    return {"queues": list(out.values()), "agents": presence,
            "handling": {s: sum(1 for c in items if c.status == s) for s in ("offered", "assigned", "waiting")}}


@router.get("/sla", summary="SLA overview: open conversations by SLA status, the ones closest to breach first")
async def sla_overview(request: Request, principal: Principal = Depends(read_scope)) -> dict:
    async with request.app.state.resources.pool.acquire() as conn:
        items = await repo.open_overview(conn, principal.tenant)
    counts: dict[str, int] = {}
    at_risk = []
    for c in items:
        clocks = _clocks(request, principal.tenant, c)
        if clocks is None:
            continue
        status = clocks.status()
        counts[status] = counts.get(status, 0) + 1
        due = clocks.due()
        if due:
            metric, at = min(due.items(), key=lambda kv: kv[1])
            at_risk.append({"conversation_id": c.conversation_id, "status": c.status, "sla_status": status,
                            "metric": metric, "due_at": at.isoformat(), "agent_id": c.agent_id, "queue": c.queue})
    at_risk.sort(key=lambda r: r["due_at"])
    return {"by_status": counts, "next_due": at_risk[:100]}


def _clocks(request: Request, tenant: str, c: Conversation) -> SlaClocks | None:
    if c.sla_state is None:
        return None
    policy = request.app.state.config_source.current().tenant(tenant).sla_policy(c.sla_task or c.task())
    return SlaClocks(policy, c.sla_state) if policy is not None else None


def _view(request: Request, tenant: str, c: Conversation) -> dict:
    clocks = _clocks(request, tenant, c)
    return {
        "conversation_id": c.conversation_id, "customer_id": c.customer_id, "channel": c.channel,
        "status": c.status, "queue": c.queue, "priority": c.priority, "position": c.position if c.status == "queued" else None,
        "eta_s": c.eta_s if c.status == "queued" else None, "agent_id": c.agent_id, "offer_id": c.offer_id,
        "offer_expires_at": _iso(c.offer_expires_at), "queued_at": _iso(c.queued_at), "assigned_at": _iso(c.assigned_at),
        "sla": {"status": clocks.status(), "clocks": clocks.detail()} if clocks else None,
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
