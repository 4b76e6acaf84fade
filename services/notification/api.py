"""Notification HTTP API.

- ``GET /v1/customers/{customer_id}/notifications`` and ``GET /v1/notifications/{id}`` (scope ``read``): a
  customer's notifications with every decision taken (step, outcome, reason), each send attempt, and the
  consent record each send relied on.
- ``GET|POST /v1/answers/{token}`` (public; the signed, expiring token is the credential): the customer's
  answer to "is your problem solved?". GET shows a confirmation page whose button posts the answer, so that
  link scanners in mail systems that fetch links never answer for the customer.
- ``POST /v1/callbacks/{provider}`` (public; each verified by the provider's signature): delivery reports.
"""

from __future__ import annotations

import html
import uuid
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse

from services.notification import repository as repo
from services.notification.adapters import callbacks
from services.notification.service import AnswerError
from shared import tokens
from shared.auth import Principal
from shared.httpapi import ApiError, across_tenants, error_body, require_scope

router = APIRouter(prefix="/v1")
read_scope = require_scope("read")
MAX_LIST = 200


def _jsonable(row: Any) -> dict[str, Any]:
    out = {}
    for key, value in dict(row).items():
        if key == "payload":
            value = orjson.loads(value) if isinstance(value, str) else value
        elif isinstance(value, uuid.UUID):
            value = str(value)
        out[key] = value
    return out


async def _with_details(conn, tenant: str, rows: list[Any]) -> list[dict[str, Any]]:
    ids = [r["notification_id"] for r in rows]
    decisions: dict[str, list] = {}
    for d in await repo.decisions_of(conn, tenant, ids):
        decisions.setdefault(str(d["notification_id"]), []).append(
            {k: d[k] for k in ("at", "step", "outcome", "reason", "detail", "channel", "consent_id")})
    attempts: dict[str, list] = {}
    for a in await repo.attempts_of(conn, tenant, ids):
        attempts.setdefault(str(a["notification_id"]), []).append(
            {k: a[k] for k in ("channel", "idempotency_key", "tries", "state", "provider_message_id", "error",
                               "started_at", "finished_at")})
    consents = {c["consent_id"]: c for c in await repo.consent_record(
        conn, tenant, sorted({r["consent_id"] for r in rows if r["consent_id"]}))}
    out = []
    for r in rows:
        item = _jsonable(r)
        item.pop("lease_until", None)
        nid = item["notification_id"]
        item["decisions"] = decisions.get(nid, [])
        item["attempts"] = attempts.get(nid, [])
        record = consents.get(r["consent_id"]) if r["consent_id"] else None
        item["consent"] = None if record is None else {
            k: record[k] for k in ("consent_id", "status", "purpose", "channel", "at", "expires_at",
                                   "wording_version", "source")}
        out.append(item)
    return out


@router.get("/customers/{customer_id}/notifications")
async def customer_notifications(request: Request, customer_id: str, limit: int = 50,
                                 principal: Principal = Depends(read_scope)) -> dict[str, Any]:
    """The customer's notifications, newest first, each with its decisions, attempts and consent record."""
    if not 1 <= limit <= MAX_LIST:
        raise ApiError(422, "invalid_limit", f"limit must be between 1 and {MAX_LIST}")
    async with request.app.state.resources.pool.acquire() as conn:
        rows = await repo.customer_notifications(conn, principal.tenant, customer_id, limit)
        return {"customer_id": customer_id, "notifications": await _with_details(conn, principal.tenant, rows)}


@router.get("/notifications/{notification_id}")
async def one_notification(request: Request, notification_id: uuid.UUID,
                           principal: Principal = Depends(read_scope)) -> dict[str, Any]:
    async with request.app.state.resources.pool.acquire() as conn:
        row = await repo.notification(conn, principal.tenant, notification_id)
        if row is None:
            raise ApiError(404, "not_found", "no such notification for this tenant")
        return (await _with_details(conn, principal.tenant, [row]))[0]


PAGE = """<!doctype html><html lang="{lang}"><head><meta charset="utf-8"><title>{title}</title></head>
<body><p>{text}</p>{form}</body></html>"""


def _page(title: str, text: str, form: str = "", status: int = 200) -> HTMLResponse:
    return HTMLResponse(PAGE.format(lang="en", title=html.escape(title), text=html.escape(text), form=form),
                        status_code=status)


@router.get("/answers/{token}", dependencies=[Depends(across_tenants)], response_class=HTMLResponse, include_in_schema=True)
async def answer_page(request: Request, token: str) -> HTMLResponse:
    """A confirmation page: the answer is recorded only when its button posts it."""
    service = request.app.state.service
    try:
        claims = tokens.verify(token, service.answer_secret, service.clock())
    except tokens.TokenError as exc:
        return _page("Link not valid", str(exc), status=410 if exc.reason == "expired" else 400)
    label = "Yes, my problem is solved" if claims.get("a") == "yes" else "No, my problem is not solved"
    form = (f'<form method="post" action="{html.escape(str(request.url.path))}">'
            f'<button type="submit">{html.escape(label)}</button></form>')
    return _page("Your answer", "Please confirm your answer:", form)


@router.post("/answers/{token}", dependencies=[Depends(across_tenants)])
async def answer(request: Request, token: str):
    """Record the answer. 200 with the outcome; 400 for a forged link, 410 expired, 409 already answered.
    Answers with JSON when the caller asks for it (``Accept: application/json``), else with a page."""
    service = request.app.state.service
    wants_json = "application/json" in request.headers.get("accept", "")
    try:
        _, solved, summary = await service.answer(token)
    except tokens.TokenError as exc:
        status = 410 if exc.reason == "expired" else 400
        return JSONResponse(error_body(exc.reason, str(exc)), status) if wants_json else _page("Link not valid", str(exc), status=status)
    except AnswerError as exc:
        return JSONResponse(error_body(exc.reason, exc.detail), exc.status) if wants_json else _page("Thank you", exc.detail, status=exc.status)
    if wants_json:
        return {"solved": solved, **summary}
    text = ("Thank you, we are glad it is solved." if solved
            else "Thank you for telling us. We have reopened your request and will get back to you.")
    return _page("Thank you", text)


def _parsed(parse) -> list[callbacks.DeliveryStatus]:
    try:
        return parse()
    except callbacks.SignatureError as exc:
        raise ApiError(401, exc.reason, exc.detail) from None
    except callbacks.CallbackError as exc:
        raise ApiError(400, exc.reason, exc.detail) from None


def _public_url(request: Request, settings: Any) -> str:
    """The URL the provider signed: the configured callback URL (the service may sit behind a proxy)."""
    return settings.twilio_status_callback_url or str(request.url)


@router.post("/callbacks/twilio", dependencies=[Depends(across_tenants)], response_class=PlainTextResponse)
async def twilio_callback(request: Request) -> str:
    """Twilio-style StatusCallback (form-encoded), verified by ``X-Twilio-Signature``."""
    settings = request.app.state.settings
    if settings.twilio_auth_token is None:
        raise ApiError(404, "not_configured", "the SMS channel is not configured")
    body = await request.body()
    statuses = _parsed(lambda: callbacks.parse_twilio_callback(_public_url(request, settings), body, request.headers,
                                                              settings.twilio_auth_token))
    await request.app.state.service.delivery_status(statuses)
    return ""


@router.get("/callbacks/whatsapp", response_class=PlainTextResponse)
async def whatsapp_verify(request: Request) -> str:
    """Meta's subscription handshake: echo ``hub.challenge`` when ``hub.verify_token`` matches."""
    settings = request.app.state.settings
    q = request.query_params
    secret = settings.whatsapp_app_secret
    if secret is None or q.get("hub.mode") != "subscribe" or q.get("hub.verify_token") != secret.get_secret_value():
        raise ApiError(403, "verification_failed", "hub.verify_token does not match")
    return q.get("hub.challenge", "")


@router.post("/callbacks/whatsapp", dependencies=[Depends(across_tenants)])
async def whatsapp_callback(request: Request) -> dict[str, int]:
    """WhatsApp Cloud-style status webhook, verified by ``X-Hub-Signature-256``."""
    settings = request.app.state.settings
    if settings.whatsapp_app_secret is None:
        raise ApiError(404, "not_configured", "the WhatsApp channel is not configured")
    body = await request.body()
    statuses = _parsed(lambda: callbacks.parse_whatsapp_callback(body, request.headers, settings.whatsapp_app_secret))
    return {"applied": await request.app.state.service.delivery_status(statuses)}


@router.post("/callbacks/email", dependencies=[Depends(across_tenants)])
async def email_callback(request: Request) -> dict[str, int]:
    """Delivery reports and bounces for e-mail from the mail relay, signed with the Standard Webhooks scheme."""
    settings = request.app.state.settings
    if settings.email_callback_secret is None:
        raise ApiError(404, "not_configured", "e-mail delivery callbacks are not configured")
    body = await request.body()
    now = request.app.state.service.clock()
    statuses = _parsed(lambda: callbacks.parse_email_callback(body, request.headers, settings.email_callback_secret, now))
    return {"applied": await request.app.state.service.delivery_status(statuses)}
