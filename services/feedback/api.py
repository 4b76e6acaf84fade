"""Feedback HTTP API.

- ``GET /v1/surveys/{token}`` (public; the signed, expiring token is the credential): the survey as a page in
  the customer's language (an HTML form), or as JSON with ``Accept: application/json``.
- ``POST /v1/responses/{token}`` (public): the answers, as JSON or a posted form. 200 with the stored response;
  400 with the reason for a forged link or an invalid answer (``invalid_answer:<question>``), 410 expired,
  409 already answered. Idempotent: the first answer counts.
- ``POST /v1/invitations`` (scope ``ingest``): invite a customer to a survey now or after a delay.
- ``GET /v1/metrics`` (scope ``read``): NPS, CSAT or CES by channel, team, agent, product or survey, per period,
  with counts and 95 % intervals. ``GET /v1/loops`` (scope ``read``): detractor follow-ups opened, closed, overdue
  and the time to close.
"""

from __future__ import annotations

import html
from datetime import datetime
from typing import Any, Literal
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field

from services.feedback.service import Attribution, FeedbackError
from shared.auth import Principal
from shared.httpapi import ApiError, across_tenants, error_body, require_scope

router = APIRouter(prefix="/v1")
read_scope = require_scope("read")
write_scope = require_scope("ingest")  # upstream systems asking for a survey, like publishing an event
MAX_BODY = 64 * 1024
FORM = "application/x-www-form-urlencoded"   # what the survey page posts
LABELS = {"en": {"send": "Send", "thanks": "Thank you for your feedback.", "invalid": "This link cannot be used"},
          "de": {"send": "Absenden", "thanks": "Vielen Dank für Ihr Feedback.", "invalid": "Dieser Link ist nicht gültig"}}


def _wants_json(request: Request) -> bool:
    """JSON for API clients (``Accept`` or a JSON body), a page for browsers."""
    return "application/json" in request.headers.get("accept", "") or \
        request.headers.get("content-type", "").startswith("application/json")


def _error(request: Request, exc: FeedbackError) -> Any:
    if _wants_json(request):
        return JSONResponse(error_body(exc.reason, exc.detail), exc.status)
    return HTMLResponse(_page("en", LABELS["en"]["invalid"], f"<p>{html.escape(exc.detail)}</p>"), exc.status)


def _page(lang: str, title: str, body: str) -> str:
    return (f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"></head>'
            f"<body><main><h1>{html.escape(title)}</h1>{body}</main></body></html>")


def _field(q: Any, lang: str) -> str:
    label = html.escape(q.text.get(lang) or next(iter(q.text.values())))
    req = " required" if q.required else ""
    if q.kind in ("text",):
        return (f'<p><label for="{q.id}">{label}</label><br><textarea id="{q.id}" name="{q.id}" '
                f'maxlength="{q.max_length}"{req}></textarea></p>')
    if q.kind == "choice":
        options = "".join(f'<label><input type="radio" name="{q.id}" value="{html.escape(c)}"{req}> '
                          f'{html.escape(q.choice_label(c, lang))}</label> ' for c in q.choices)
        return f"<fieldset><legend>{label}</legend>{options}</fieldset>"
    low, high = q.bounds()
    options = "".join(f'<label><input type="radio" name="{q.id}" value="{v}"{req}> {v}</label> '
                      for v in range(low, high + 1))
    return f"<fieldset><legend>{label}</legend>{options}</fieldset>"


@router.get("/surveys/{token}", dependencies=[Depends(across_tenants)])
async def survey(request: Request, token: str) -> Any:
    service = request.app.state.service
    try:
        invitation, s, cfg = await service.survey_for(token)
    except FeedbackError as exc:
        return _error(request, exc)
    lang = cfg.language_for(invitation["language"])  # "de-AT" sees the German form
    if _wants_json(request):
        return {"survey_id": s.id, "version": s.version, "title": s.title.get(lang), "language": lang,
                "questions": [{"id": q.id, "kind": q.kind, "text": q.text.get(lang), "required": q.required,
                               "bounds": q.bounds() if q.kind not in ("text", "choice") else None,
                               "choices": list(q.choices) or None} for q in s.questions]}
    form = "".join(_field(q, lang) for q in s.questions)
    body = (f'<form method="post" action="/v1/responses/{html.escape(token)}">{form}'
            f'<button type="submit">{LABELS.get(lang, LABELS["en"])["send"]}</button></form>')
    return HTMLResponse(_page(lang, s.title.get(lang) or s.id, body))


@router.post("/responses/{token}", dependencies=[Depends(across_tenants)])
async def respond(request: Request, token: str) -> Any:
    service = request.app.state.service
    raw = await request.body()
    if len(raw) > MAX_BODY:
        return JSONResponse(error_body("too_large", f"at most {MAX_BODY} bytes"), 413)
    content_type = request.headers.get("content-type", "")
    try:
        if content_type.startswith("application/json"):
            answers = await request.json()
            if not isinstance(answers, dict):
                raise ValueError("the body must be a JSON object of question id -> answer")
        elif content_type.startswith(FORM) or not content_type:
            # Parsed here: Starlette's form parsing needs python-multipart, which the survey form does not.
            answers = dict(parse_qsl(raw.decode("utf-8"), max_num_fields=200))  # blank fields left out
        else:
            return JSONResponse(error_body("unsupported_media_type", f"post application/json or {FORM}"), 415)
    except ValueError as exc:
        return JSONResponse(error_body("invalid_body", str(exc)), 400)
    try:
        result = await service.respond(token, answers)
    except FeedbackError as exc:
        return _error(request, exc)
    if _wants_json(request) or content_type.startswith("application/json"):
        return result
    lang = result["language"] if result["language"] in LABELS else "en"
    return HTMLResponse(_page(lang, LABELS[lang]["thanks"], ""))


class InvitationBody(BaseModel):
    customer_id: str = Field(min_length=1, max_length=200)
    survey_id: str = Field(min_length=1, max_length=200)
    request_id: str = Field(min_length=1, max_length=200, description="idempotency key of this request")
    delay_s: float = Field(default=0, ge=0, le=30 * 86400)
    conversation_id: str | None = Field(default=None, max_length=200)
    case_id: str | None = Field(default=None, max_length=200)
    agent_id: str | None = Field(default=None, max_length=200)
    team: str | None = Field(default=None, max_length=200)
    channel: str | None = Field(default=None, max_length=50)
    product: str | None = Field(default=None, max_length=200)
    language: str | None = Field(default=None, max_length=35)


@router.post("/invitations", status_code=202)
async def invite(request: Request, body: InvitationBody, principal: Principal = Depends(write_scope)) -> dict:
    service = request.app.state.service
    at = Attribution(body.conversation_id, body.case_id, body.agent_id, body.team, body.channel, body.product,
                     body.language)
    try:
        invitation_id, status = await service.invite(principal.tenant, body.customer_id, body.survey_id, at,
                                                     body.request_id, body.delay_s)
    except FeedbackError as exc:
        raise ApiError(exc.status, exc.reason, exc.detail) from None
    return {"invitation_id": invitation_id, "status": status}


@router.get("/metrics")
async def metrics(request: Request, metric: Literal["nps", "csat", "ces"],
                  by: Literal["channel", "team", "agent", "product", "survey"] | None = None,
                  period: Literal["day", "week", "month", "quarter", "year"] | None = None,
                  since: datetime | None = None, until: datetime | None = None,
                  principal: Principal = Depends(read_scope)) -> dict:
    """Estimates with 95 % intervals; ``value`` is null for a group without responses."""
    items = await request.app.state.service.metric(principal.tenant, metric, by, period, since, until)
    return {"metric": metric, "by": by, "period": period, "items": items}


@router.get("/loops")
async def loops(request: Request, principal: Principal = Depends(read_scope)) -> dict:
    """Detractor follow-ups: opened, closed, overdue (open past their SLA), mean and median seconds to close."""
    return await request.app.state.service.loops(principal.tenant)
