"""Feedback use cases: invite customers to surveys when something worth asking about happened, capture their
answers (by link or from upstream survey tools), attribute and aggregate them, and close the loop on detractors.

Guarantees
- One invitation per trigger instance (a unique key), decided by the fatigue rules when triggered and again when
  due; every suppression is an event with its reason.
- A response counts once: its id is the invitation (link) or the upstream response id, a primary key; a reused
  link is refused with 409, an expired one with 410.
- Each consumed event changes the state once (``feedback.processed_events``, in the batch's transaction);
  offsets move only after that commit. Events go through the outbox (see ``shared.outbox``).
- Metrics are computed from the stored responses (per-score counts, so they are exact), never from counters
  that a redelivery could inflate.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Mapping, Sequence

import asyncpg
from pydantic import BaseModel, SecretStr

from services.feedback import repository as repo
from services.feedback.domain import fatigue, metrics, surveys
from shared import directory, outbox, tokens
from shared.cloudevents import CloudEvent
from shared.contracts import business as bc
from shared.contracts import feedback as fc
from shared.contracts import routing as rc
from shared.contracts import types
from shared.contracts.identity import CustomersMergedV1
from shared.contracts.interaction import InteractionResolvedV1
from shared.db import UnitOfWork
from shared.vault import Vault
from shared.intake import Decoded, decode
from shared.kafka import EventProducer, dead_letter
from shared.loops import run_every
from shared.outbox import Emitted

log = logging.getLogger(__name__)
SOURCE = "touchpoint/feedback"
FOLLOW_UP_PREFIX = "feedback-followup:"
CALL = "call"
RESURVEY = "resurvey"
FATIGUE_HORIZON = timedelta(days=400)

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class FeedbackError(Exception):
    """A refused request: ``status`` (HTTP), ``reason`` (code), ``detail`` (sentence)."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.reason, self.detail = status, reason, detail


@dataclass
class Attribution:
    """What a survey is about, copied from the triggering event onto the invitation and every response."""

    conversation_id: str | None = None
    case_id: str | None = None
    agent_id: str | None = None
    team: str | None = None
    channel: str | None = None
    product: str | None = None
    language: str | None = None

    @property
    def conversation_key(self) -> str | None:
        return f"case:{self.case_id}" if self.case_id else (f"conversation:{self.conversation_id}"
                                                            if self.conversation_id else None)


class FeedbackService:
    def __init__(self, pool: asyncpg.Pool, producer: EventProducer, config_source: Any, topic: str,
                 survey_secret: SecretStr, *, clock: Clock = utcnow, batch_size: int = 500, phone_region: str = "DE",
                 on_event: Callable[[str], None] = lambda kind: None) -> None:
        self.pool = pool
        self.vault = Vault(pool)
        self.producer = producer
        self.config_source = config_source
        self.topic = topic
        self.survey_secret = survey_secret
        self.clock = clock
        self.batch_size = batch_size
        self.phone_region = phone_region
        self.on_event = on_event

    def tenant_config(self, tenant: str) -> Any:
        return self.config_source.current().tenant(tenant)

    # ---- consumers ----------------------------------------------------------------------------------------

    async def process_inbound(self, records: Sequence[Any]) -> None:
        """Responses and product ratings published by upstream survey and review tools."""
        await self._consume(records, fc.FEEDBACK_INBOUND_MODELS)

    async def process_business(self, records: Sequence[Any]) -> None:
        await self._consume(records, {types.CASE_RESOLVED: bc.CaseResolvedV1}, ignore_others=True)

    async def process_routing(self, records: Sequence[Any]) -> None:
        await self._consume(records, {types.ROUTING_CONVERSATION_RESOLVED: rc.RoutingConversationResolvedV1},
                            ignore_others=True)

    async def process_agents(self, records: Sequence[Any]) -> None:
        await self._consume(records, {types.AGENT_PROFILE_UPDATED: rc.AgentProfileUpdatedV1}, ignore_others=True)

    async def process_identity(self, records: Sequence[Any]) -> None:
        await self._consume(records, {types.INTERACTION_RESOLVED: InteractionResolvedV1,
                                      types.CUSTOMERS_MERGED: CustomersMergedV1}, ignore_others=True)

    async def process_customers(self, records: Sequence[Any]) -> None:
        await directory.forget_tombstoned(self.pool, repo.SCHEMA, records)
        await self._consume([r for r in records if r.value is not None], {types.CUSTOMER_SNAPSHOT: None},
                            idempotent=False)

    async def _consume(self, records: Sequence[Any], models: Mapping[str, type[BaseModel] | None],
                       ignore_others: bool = False, idempotent: bool = True) -> None:
        await self.vault.prefetch(records)
        incoming, dead = decode(records, models, ignore_others, self.vault)

        async def apply(conn: asyncpg.Connection, item: Decoded, batch: Emitted) -> None:
            try:
                async with conn.transaction():  # a savepoint: one bad event does not sink the batch
                    await self._apply(conn, item.event, item.data, batch)
            except surveys.AnswerError as exc:
                dead.append(dead_letter(item.record, "invalid_data", exc))

        self._count(await outbox.apply_once(self.pool, repo.SCHEMA, incoming, apply, fc.FEEDBACK_MODELS, idempotent))
        await self.producer.send_all(dead)
        await self.publish_pending()

    async def _apply(self, conn: asyncpg.Connection, e: CloudEvent, m: Any, batch: Emitted) -> None:
        tenant = e.tenant
        if e.type == types.CUSTOMER_SNAPSHOT:
            await self._snapshot(conn, tenant, m, batch)
        elif e.type == types.AGENT_PROFILE_UPDATED:
            await repo.set_agent_team(conn, tenant, m.agent_id, m.teams[0] if m.teams else None)
        elif e.type == types.CUSTOMERS_MERGED:
            await repo.rename_customer(conn, tenant, m.merged_ids, m.survivor_id)
        elif e.type == types.INTERACTION_RESOLVED:
            if m.channel == "phone":
                at = Attribution(m.conversation_id, m.case_id, m.agent_id, await repo.team_of(conn, tenant, m.agent_id),
                                 m.channel, None, m.language)
                await self._trigger(conn, tenant, CALL, m.customer_id, at, f"call:{m.source}:{m.event_id}",
                                    m.occurred_at, batch)
        elif e.type == types.ROUTING_CONVERSATION_RESOLVED:
            await self._conversation_resolved(conn, tenant, e, m, batch)
        else:
            if e.type == types.FEEDBACK_RESPONSE_SUBMITTED:
                # Checked before the customer is resolved: an invalid response goes to the dead-letter topic now
                # instead of being parked and failing the customer snapshot that would release it.
                _checked_answers(self.tenant_config(tenant), m)
            customer_id = await self._customer(conn, tenant, m.customer, e)
            if customer_id is not None:
                await self._upstream(conn, tenant, e, m, customer_id, batch)

    async def _customer(self, conn: asyncpg.Connection, tenant: str, ref: bc.CustomerRef, e: CloudEvent) -> str | None:
        """The customer of ``ref``; None when not known yet (parked until a snapshot names it)."""
        return await directory.resolve(conn, repo.SCHEMA, tenant, ref, e, self.phone_region)

    async def _snapshot(self, conn: asyncpg.Connection, tenant: str, data: dict, batch: Emitted) -> None:
        customer_id = data.get("customer_id")
        if not customer_id:
            return
        identifiers = [(i["type"], i["value"]) for i in data.get("identifiers", []) if i.get("type") and i.get("value")]
        await directory.upsert(conn, repo.SCHEMA, tenant, customer_id, identifiers)
        if data.get("merged_ids"):
            await repo.rename_customer(conn, tenant, data["merged_ids"], customer_id)
        upstream = {**fc.FEEDBACK_INBOUND_MODELS, types.CASE_RESOLVED: bc.CaseResolvedV1}
        for parked in await directory.take_parked(conn, repo.SCHEMA, tenant, identifiers):
            event = directory.unparked(parked, tenant)
            await self._upstream(conn, tenant, event, upstream[event.type].model_validate(event.data), customer_id,
                                 batch)

    async def _upstream(self, conn: asyncpg.Connection, tenant: str, e: CloudEvent, m: Any, customer_id: str,
                        batch: Emitted) -> None:
        if e.type == types.CASE_RESOLVED:
            at = Attribution(m.conversation_id, m.case_id, m.agent_id,
                             m.team or await repo.team_of(conn, tenant, m.agent_id), m.channel, m.product, m.language)
            instance = f"case:{m.case_id}:{m.occurred_at.isoformat()}"  # a re-sent resolution is not a new one
            await self._trigger(conn, tenant, e.type, customer_id, at, instance, m.occurred_at, batch)
        elif e.type == types.PRODUCT_RATED:
            products = await repo.insert_ratings(conn, tenant, [(m.rating_id, m.product_id, m.rating, customer_id,
                                                                 m.occurred_at)])
            await self._product_alerts(conn, tenant, products, batch)
        elif e.type == types.FEEDBACK_RESPONSE_SUBMITTED:
            await self._upstream_response(conn, tenant, m, customer_id, batch)

    async def _conversation_resolved(self, conn: asyncpg.Connection, tenant: str, e: CloudEvent,
                                     m: rc.RoutingConversationResolvedV1, batch: Emitted) -> None:
        """A resolved follow-up closes its detractor loop; any other resolved conversation may trigger a survey."""
        if m.conversation_id.startswith(FOLLOW_UP_PREFIX):
            loop = await repo.close_loop(conn, tenant, m.conversation_id, m.at)
            if loop is not None:
                await self._loop_closed(conn, tenant, loop, m.at, batch)
            return
        at = Attribution(m.conversation_id, None, m.agent_id, await repo.team_of(conn, tenant, m.agent_id),
                         m.channel)
        # Keyed by the resolution, not the event id: a re-sent resolution is not a new one.
        await self._trigger(conn, tenant, e.type, m.customer_id, at,
                            f"conversation:{m.conversation_id}:{m.at.isoformat()}", m.at, batch)

    # ---- invitations --------------------------------------------------------------------------------------

    async def _trigger(self, conn: asyncpg.Connection, tenant: str, on: str, customer_id: str, at: Attribution,
                       instance: str, occurred: datetime, batch: Emitted) -> None:
        cfg = self.tenant_config(tenant)
        for name, trig in cfg.triggers_for(on):
            await self._invite(conn, tenant, cfg, name, trig.survey, customer_id, at, f"{name}:{instance}",
                               occurred + timedelta(seconds=trig.delay_s), batch)

    async def _invite(self, conn: asyncpg.Connection, tenant: str, cfg: Any, trigger: str, survey_id: str,
                      customer_id: str, at: Attribution, instance: str, due: datetime, batch: Emitted,
                      resurvey_of: str | None = None) -> uuid.UUID | None:
        """Schedule an invitation unless fatigue rules stop it (then it is stored as suppressed, with its reason).
        A merged customer id stands for its survivor, whose history the fatigue rules must see."""
        now = self.clock()
        customer_id = await directory.survivor_of(conn, repo.SCHEMA, tenant, customer_id)
        survey = cfg.survey(survey_id)
        iid = repo.invitation_id(tenant, trigger, instance)
        # A re-survey measures the follow-up the customer just had: it is exempt from the fatigue rules.
        allowed, reason, detail = (True, "ok", "") if resurvey_of else await self._fatigue(
            conn, tenant, cfg, survey, customer_id, at, now, trigger if trigger in cfg.triggers else None, instance,
            None)
        row = {"invitation_id": iid, "customer_id": customer_id, "survey_id": survey_id,
               "survey_version": survey.version, "trigger": trigger, "trigger_instance": instance,
               "conversation_key": at.conversation_key, "conversation_id": at.conversation_id, "case_id": at.case_id,
               "agent_id": at.agent_id, "team": at.team, "channel": at.channel, "product": at.product,
               "language": at.language, "status": "scheduled" if allowed else "suppressed",
               "reason": None if allowed else reason, "due_at": max(due, now), "resurvey_of": resurvey_of,
               "created_at": now}
        if not await repo.insert_invitation(conn, tenant, row):
            return None
        if not allowed:
            batch.emit(tenant, types.FEEDBACK_SUPPRESSED, customer_id, fc.FeedbackSuppressedV1(
                invitation_id=str(iid), customer_id=customer_id, survey_id=survey_id, at=now, trigger=trigger,
                reason=reason, detail=detail))
        return iid

    async def _fatigue(self, conn: asyncpg.Connection, tenant: str, cfg: Any, survey: Any, customer_id: str,
                       at: Attribution, now: datetime, trigger: str | None, instance: str,
                       exclude: uuid.UUID | None) -> tuple[bool, str, str]:
        """The fatigue verdict; ``trigger`` None (on demand, or the re-check when due) samples everyone. The
        sample is drawn per customer, survey and conversation (the trigger instance when there is none), so a
        re-sent trigger is decided alike."""
        rows = await repo.past_invitations(conn, tenant, customer_id, now - FATIGUE_HORIZON, exclude)
        past = [fatigue.PastInvitation(r["at"], r["survey_id"], r["conversation_key"]) for r in rows]
        return tuple(fatigue.check(cfg.fatigue_rules(trigger), cfg.recontact_days(survey.id), past, survey.id,
                                   at.conversation_key, now,
                                   fatigue.sample_key(tenant, customer_id, survey.id, at.conversation_key or instance)))

    async def tick(self) -> int:
        """Send the invitations that are due (re-checking fatigue: another survey may have gone out meanwhile)."""
        now = self.clock()
        batch = Emitted()
        async with UnitOfWork(self.pool) as uow:
            rows = await repo.claim_due(uow.conn, now, self.batch_size)
            for r in rows:
                await self._due(uow.conn, r, now, batch)
            await self._outbox(uow.conn, batch)
            await uow.commit()
        self._count(batch)
        await self.publish_pending()
        return len(rows)

    async def _due(self, conn: asyncpg.Connection, r: Any, now: datetime, batch: Emitted) -> None:
        tenant = r["tenant"]
        cfg = self.tenant_config(tenant)
        try:
            survey = cfg.survey(r["survey_id"])
        except KeyError:
            survey = None
        at = Attribution(r["conversation_id"], r["case_id"], r["agent_id"], r["team"], r["channel"], r["product"],
                         r["language"])
        if survey is None:  # removed from the configuration since it was scheduled: nothing to ask any more
            allowed, reason, detail = False, "survey_removed", f"survey {r['survey_id']!r} is no longer configured"
        elif r["resurvey_of"]:
            allowed, reason, detail = True, "ok", ""
        else:
            allowed, reason, detail = await self._fatigue(conn, tenant, cfg, survey, r["customer_id"], at, now, None,
                                                          r["trigger_instance"], r["invitation_id"])
        if not allowed:
            await repo.set_invitation(conn, tenant, r["invitation_id"], "suppressed", reason)
            batch.emit(tenant, types.FEEDBACK_SUPPRESSED, r["customer_id"], fc.FeedbackSuppressedV1(
                invitation_id=str(r["invitation_id"]), customer_id=r["customer_id"], survey_id=r["survey_id"], at=now,
                trigger=r["trigger"], reason=reason, detail=detail))
            return
        expires = now + timedelta(seconds=cfg.token_ttl_s)
        token = tokens.issue({"t": tenant, "i": str(r["invitation_id"])}, expires, self.survey_secret)
        await repo.set_invitation(conn, tenant, r["invitation_id"], "invited", invited_at=now, expires_at=expires)
        language = cfg.language_for(r["language"])  # "de-AT" is asked in German, "fr" in the default language
        batch.emit(tenant, types.FEEDBACK_INVITED, r["customer_id"], fc.FeedbackInvitedV1(
            invitation_id=str(r["invitation_id"]), customer_id=r["customer_id"], survey_id=r["survey_id"], at=now,
            link=f"{cfg.survey_link_base.rstrip('/')}/{token}", expires_at=expires, language=language,
            channel=r["channel"], conversation_id=r["conversation_id"], case_id=r["case_id"], agent_id=r["agent_id"],
            team=r["team"], product=r["product"], survey_title=survey.title.get(language) or next(iter(survey.title.values())),
            trigger=r["trigger"]))

    async def invite(self, tenant: str, customer_id: str, survey_id: str, at: Attribution, request_id: str,
                     delay_s: float = 0.0) -> tuple[str, str]:
        """An invitation requested by API (``request_id`` makes the request idempotent). Returns (invitation id,
        status): scheduled, or suppressed by the fatigue rules."""
        cfg = self.tenant_config(tenant)
        try:
            cfg.survey(survey_id)
        except KeyError:
            raise FeedbackError(422, "unknown_survey", f"no survey {survey_id!r} for this tenant") from None
        batch = Emitted()
        async with UnitOfWork(self.pool) as uow:
            instance = f"api:{request_id}"
            await self._invite(uow.conn, tenant, cfg, "api", survey_id, customer_id, at, instance,
                               self.clock() + timedelta(seconds=delay_s), batch)
            row = await repo.invitation(uow.conn, tenant, repo.invitation_id(tenant, "api", instance))
            await self._outbox(uow.conn, batch)
            await uow.commit()
        self._count(batch)
        await self.publish_pending()
        return str(row["invitation_id"]), row["status"]

    # ---- responses ----------------------------------------------------------------------------------------

    def _claims(self, token: str) -> tuple[str, uuid.UUID]:
        try:
            claims = tokens.verify(token, self.survey_secret, self.clock())
        except tokens.TokenError as exc:
            raise FeedbackError(410 if exc.reason == "expired" else 400, exc.reason, str(exc)) from None
        return claims["t"], uuid.UUID(claims["i"])

    @staticmethod
    def _configured(cfg: Any, survey_id: str) -> Any:
        try:
            return cfg.survey(survey_id)
        except KeyError:
            raise FeedbackError(410, "survey_removed", "this survey is no longer offered") from None

    async def survey_for(self, token: str) -> tuple[Any, Any, Any]:
        """(invitation, survey, tenant config) for a survey link; raises :class:`FeedbackError`."""
        tenant, iid = self._claims(token)
        async with self.pool.acquire() as conn:
            r = await repo.invitation(conn, tenant, iid)
        if r is None:
            raise FeedbackError(404, "unknown_invitation", "this survey link does not belong to an invitation")
        if r["status"] == "responded":
            raise FeedbackError(409, "already_answered", "this survey was already answered")
        cfg = self.tenant_config(tenant)
        return r, self._configured(cfg, r["survey_id"]), cfg

    async def respond(self, token: str, answers: Mapping[str, Any]) -> dict[str, Any]:
        """Record the answers given through a survey link. Raises :class:`FeedbackError`."""
        tenant, iid = self._claims(token)
        now = self.clock()
        batch = Emitted()
        async with UnitOfWork(self.pool) as uow:
            r = await repo.invitation(uow.conn, tenant, iid, lock=True)
            if r is None:
                raise FeedbackError(404, "unknown_invitation", "this survey link does not belong to an invitation")
            cfg = self.tenant_config(tenant)
            survey = self._configured(cfg, r["survey_id"])
            try:
                clean = surveys.validate_answers(survey, answers)
            except surveys.AnswerError as exc:
                raise FeedbackError(400, f"invalid_answer:{exc.field}", str(exc)) from None
            row = _response_row(str(iid), iid, r["customer_id"], survey, "link", now, clean, dict(r))
            if not await repo.insert_responses(uow.conn, tenant, [row]):
                raise FeedbackError(409, "already_answered", "this survey was already answered")
            await repo.set_invitation(uow.conn, tenant, iid, "responded")
            await self._responded(uow.conn, tenant, cfg, row, batch)
            await self._outbox(uow.conn, batch)
            await uow.commit()
        self._count(batch)
        # The events go out with the next tick (every TOUCHPOINT_TICK_INTERVAL_S): a burst of answers does not
        # make every request wait for Kafka.
        return {"response_id": row["response_id"], "metric": row["metric"], "score": row["score"],
                "language": cfg.language_for(r["language"])}

    async def _upstream_response(self, conn: asyncpg.Connection, tenant: str, m: Any, customer_id: str,
                                 batch: Emitted) -> None:
        cfg = self.tenant_config(tenant)
        survey, clean = _checked_answers(cfg, m)
        team = m.team or await repo.team_of(conn, tenant, m.agent_id)
        row = _response_row(f"upstream:{m.response_id}", None, customer_id, survey, "upstream", m.submitted_at,
                            clean, {"channel": m.channel, "conversation_id": m.conversation_id, "case_id": m.case_id,
                                    "agent_id": m.agent_id, "team": team, "product": m.product})
        if await repo.insert_responses(conn, tenant, [row]):
            await self._responded(conn, tenant, cfg, row, batch)

    async def _responded(self, conn: asyncpg.Connection, tenant: str, cfg: Any, row: dict, batch: Emitted) -> None:
        customer_id, response_id = row["customer_id"], row["response_id"]
        common = {"customer_id": customer_id, "survey_id": row["survey_id"],
                  "invitation_id": str(row["invitation_id"]) if row["invitation_id"] else None}
        batch.emit(tenant, types.FEEDBACK_RESPONDED, customer_id, fc.FeedbackRespondedV1(
            **common, at=row["submitted_at"], response_id=response_id, metric=row["metric"], score=row["score"],
            answers=row["public"], channel=row["channel"], conversation_id=row["conversation_id"],
            case_id=row["case_id"], agent_id=row["agent_id"], team=row["team"], product=row["product"],
            source=row["source"]))
        if row["metric"] is None or not surveys.is_detractor(row["metric"], row["score"]):
            return
        follow = cfg.detractor_follow_up
        now = self.clock()
        conversation = FOLLOW_UP_PREFIX + response_id
        due = now + timedelta(seconds=follow.sla_s)
        if await repo.open_loop(conn, tenant, response_id, conversation, customer_id, row["survey_id"], row["team"],
                                now, due):
            batch.emit(tenant, types.FEEDBACK_DETRACTOR_DETECTED, customer_id, fc.DetractorDetectedV1(
                **common, at=now, response_id=response_id, metric=row["metric"], score=row["score"],
                conversation_id=row["conversation_id"], team=row["team"], agent_id=row["agent_id"],
                channel=row["channel"], follow_up_conversation_id=conversation, priority=follow.priority,
                sla_s=follow.sla_s, due_at=due))

    async def _loop_closed(self, conn: asyncpg.Connection, tenant: str, loop: Any, closed_at: datetime,
                           batch: Emitted) -> None:
        cfg = self.tenant_config(tenant)
        resurvey = None
        # Only a survey of this tenant's configuration can be asked again (not an upstream tool's own survey).
        if cfg.detractor_follow_up.resurvey and loop["survey_id"] in cfg.surveys:
            original = await conn.fetchrow("SELECT * FROM feedback.responses WHERE tenant = $1 AND response_id = $2",
                                           tenant, loop["response_id"])
            invitation = (await repo.invitation(conn, tenant, original["invitation_id"])
                          if original["invitation_id"] else None)
            at = Attribution(original["conversation_id"], original["case_id"], original["agent_id"], original["team"],
                             original["channel"], original["product"],
                             invitation["language"] if invitation else None)
            resurvey = await self._invite(conn, tenant, cfg, RESURVEY, loop["survey_id"], loop["customer_id"], at,
                                          f"{RESURVEY}:{loop['response_id']}",
                                          closed_at + timedelta(seconds=cfg.detractor_follow_up.resurvey_delay_s),
                                          batch, resurvey_of=loop["response_id"])
        batch.emit(tenant, types.FEEDBACK_LOOP_CLOSED, loop["customer_id"], fc.LoopClosedV1(
            invitation_id=None, customer_id=loop["customer_id"], survey_id=loop["survey_id"], at=closed_at,
            response_id=loop["response_id"], follow_up_conversation_id=loop["follow_up_conversation_id"],
            opened_at=loop["opened_at"], closed_at=closed_at,
            time_to_close_s=(closed_at - loop["opened_at"]).total_seconds(),
            resurvey_invitation_id=str(resurvey) if resurvey else None))

    async def _product_alerts(self, conn: asyncpg.Connection, tenant: str, products: Sequence[str], batch: Emitted) -> None:
        if not products:
            return
        cfg = self.tenant_config(tenant)
        rule = cfg.product_alert
        now = self.clock()
        for r in await repo.product_averages(conn, tenant, products):
            below = metrics.product_alert(r["average"], r["n"], rule.threshold, rule.min_count)
            if below == bool(r["below"]):
                continue
            await repo.set_product_alert(conn, tenant, r["product_id"], below, r["average"], now)
            if below:
                batch.emit(tenant, types.FEEDBACK_PRODUCT_ALERT, r["product_id"], fc.ProductAlertV1(
                    product=r["product_id"], average=round(r["average"], 4), count=r["n"], threshold=rule.threshold,
                    at=now))

    # ---- metrics ------------------------------------------------------------------------------------------

    async def metric(self, tenant: str, metric: str, by: str | None, period: str | None, since: datetime | None,
                     until: datetime | None) -> list[dict[str, Any]]:
        """One estimate per (group, period): value, count and 95 % interval, from exact per-score counts."""
        async with self.pool.acquire() as conn:
            rows = await repo.score_counts(conn, tenant, metric, by, period, since, until)
        groups: dict[tuple[str, Any], dict[int, int]] = {}
        for r in rows:
            groups.setdefault((r["key"], r["period"]), {})[r["score"]] = r["n"]
        out = []
        for (key, start), counts in groups.items():
            est = metrics.from_counts(metric, counts)
            out.append({"key": key if by else None, "period": start, "value": est.value, "count": est.count,
                        "low": est.low, "high": est.high})
        return out

    async def loops(self, tenant: str) -> dict[str, Any]:
        """Detractor follow-ups opened, closed, overdue now, and the mean and median time to close (seconds)."""
        async with self.pool.acquire() as conn:
            row = await repo.loops_summary(conn, tenant, self.clock())
        return {k: float(v) if k.endswith("_s") and v is not None else v for k, v in row.items()}

    async def refresh_gauges(self, gauge: Any, responses: Any) -> None:
        """Prometheus gauges per tenant, metric and channel / team / product (all time), from the database."""
        async with self.pool.acquire() as conn:
            tenants = await repo.tenants_with_responses(conn)
        for tenant in tenants:
            for metric in ("nps", "csat", "ces"):
                for by in ("channel", "team", "product"):
                    for item in await self.metric(tenant, metric, by, None, None, None):
                        labels = (tenant, metric, by, item["key"])
                        responses.labels(*labels).set(item["count"])
                        if item["value"] is not None:
                            gauge.labels(*labels).set(item["value"])

    # ---- loops and publishing -----------------------------------------------------------------------------

    async def run(self, interval_s: float) -> None:
        await run_every(self.tick, interval_s, "invitation tick")

    async def _outbox(self, conn: asyncpg.Connection, batch: Emitted) -> None:
        await outbox.add_all(conn, repo.SCHEMA, batch, fc.FEEDBACK_MODELS)

    def _count(self, batch: Emitted) -> None:
        for kind in batch.kinds():
            self.on_event(kind)

    async def publish_pending(self) -> int:
        return await outbox.publish_pending(self.pool, self.producer, repo.SCHEMA, self.topic, SOURCE)


def _survey_or_adhoc(cfg: Any, survey_id: str, answers: Mapping[str, Any]) -> surveys.Survey:
    """The configured survey, or for a survey an upstream tool defined itself one that takes its metric answers
    by their kind (``nps``, ``csat``, ``ces``) and any other answer as text."""
    try:
        return cfg.survey(survey_id)
    except KeyError:
        pass
    questions = [surveys.Question(key, key if key in surveys.METRIC_KINDS else "text", {"en": key}, required=False)
                 for key in answers]
    if not any(q.kind in surveys.METRIC_KINDS for q in questions):
        raise surveys.AnswerError("answers", f"survey {survey_id!r} is not configured and the answers carry none of "
                                             f"{', '.join(surveys.METRIC_KINDS)}")
    questions.sort(key=lambda q: q.kind not in surveys.METRIC_KINDS)
    return surveys.Survey(survey_id, 0, {"en": survey_id}, tuple(questions))


def _checked_answers(cfg: Any, m: fc.ResponseSubmittedV1) -> tuple[surveys.Survey, dict[str, Any]]:
    """The survey of an upstream response and its accepted answers; raises ``surveys.AnswerError``."""
    survey = _survey_or_adhoc(cfg, m.survey_id, m.answers)
    return survey, surveys.validate_answers(survey, m.answers)


def _response_row(response_id: str, invitation_id: uuid.UUID | None, customer_id: str, survey: Any, source: str,
                  submitted_at: datetime, answers: dict[str, Any], attribution: Mapping[str, Any]) -> dict[str, Any]:
    primary = survey.primary()
    score = answers.get(primary.id) if primary else None
    return {"response_id": response_id, "invitation_id": invitation_id, "customer_id": customer_id,
            "survey_id": survey.id, "source": source, "submitted_at": submitted_at,
            "metric": primary.kind if primary and score is not None else None, "score": score,
            "answers": answers, "public": {q.id: answers[q.id] for q in survey.questions
                                           if q.kind != "text" and q.id in answers},
            **{k: attribution.get(k) for k in ("channel", "conversation_id", "case_id", "agent_id", "team", "product")}}
