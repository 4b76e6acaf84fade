"""Notification use cases: learn about customers from the event streams, turn business events into scheduled
notifications, decide and send them when due, and follow what the providers report back.

Guarantees
- One notification per trigger instance: the instance (e.g. ``case:C-1:resolved``) is a unique key, so
  redeliveries and repeats of an upstream event never schedule a second message.
- Each consumed event changes the state once (``notification.processed_events`` is written in the batch's
  transaction); offsets move only after that transaction committed.
- Every notification is decided again when it is due, on the state of that moment: a consent withdrawn after
  scheduling stops the send. Every decision is recorded with its step, reason and the consent it relied on.
- Sending: a due notification is claimed (``FOR UPDATE SKIP LOCKED``), decided and marked ``sending`` with a
  lease in one transaction; the provider is called outside any transaction; the outcome is recorded in the
  next. A process that dies in between leaves the notification ``sending``; when the lease ends another
  instance (or the restarted one) sends it again with the *same* idempotency key (``<notification>:<channel>``:
  the Twilio idempotency token, the webhook id, the e-mail ``Message-ID``), so the provider keeps one message.
  This is at-least-once towards providers and exactly-once for the customer wherever the provider honours
  the key; a provider that does not (WhatsApp Cloud) may deliver twice after such a crash, never zero times.
- Events are written to the outbox in the same transaction and published afterwards until acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, time, timedelta, timezone
from typing import Any, Callable, Mapping, Sequence
from zoneinfo import ZoneInfo

import asyncpg
import orjson
from pydantic import BaseModel, SecretStr

from services.notification import repository as repo
from services.notification.adapters import (
    ChannelSender,
    OutboundMessage,
    SendError,
    SendResult,
)
from services.notification.domain.model import (
    CHANNELS,
    Consent,
    Decision,
    PastSend,
    Recipient,
)
from services.notification.domain.pipeline import decide
from services.notification.domain.schedule import follow_up_due
from services.notification.templates import (
    KNOWN_PLACEHOLDERS,
    RenderError,
    choose_language,
    render,
)
from shared import directory, outbox, tokens
from shared.cloudevents import CloudEvent
from shared.contracts import business as bc
from shared.contracts import consent as cc
from shared.contracts import feedback as fc
from shared.contracts import notification as nc
from shared.contracts import routing as rc
from shared.contracts import types
from shared.contracts.identity import CustomersMergedV1
from shared.contracts.interaction import InteractionResolvedV1
from shared.db import UnitOfWork
from shared.vault import Vault
from shared.intake import Decoded, decode
from shared.kafka import EventProducer
from shared.outbox import Emitted
from shared.retry import is_transient

log = logging.getLogger(__name__)
SOURCE = "touchpoint/notification"
TRANSIENT_BACKOFF_S = (5.0, 30.0, 120.0)
STALE = "case_stale"
# Template parameters may not be empty (WhatsApp refuses them): how a customer without a display name is greeted.
NAMELESS = {"de": "Kundin, Kunde", "en": "customer"}

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class NotificationService:
    def __init__(self, pool: asyncpg.Pool, producer: EventProducer, config_source: Any,
                 senders: Mapping[str, ChannelSender], topic: str, answer_secret: SecretStr, *,
                 clock: Clock = utcnow, lease_s: float = 30.0, batch_size: int = 200, concurrency: int = 16,
                 send_attempts: int = 3, phone_region: str = "DE",
                 on_event: Callable[[str], None] = lambda kind: None) -> None:
        self.pool = pool
        self.vault = Vault(pool)
        self.producer = producer
        self.config_source = config_source
        self.senders = dict(senders)
        self.topic = topic
        self.answer_secret = answer_secret
        self.clock = clock
        self.lease = timedelta(seconds=lease_s)
        self.batch_size = batch_size
        self.concurrency = concurrency
        self.send_attempts = send_attempts
        self.phone_region = phone_region
        self.on_event = on_event

    def tenant_config(self, tenant: str) -> Any:
        return self.config_source.current().tenant(tenant)

    # ---- consumers ----------------------------------------------------------------------------------------

    async def process_business(self, records: Sequence[Any]) -> None:
        await self._consume(records, bc.BUSINESS_MODELS)

    async def process_consent(self, records: Sequence[Any]) -> None:
        await self._consume(records, cc.CONSENT_MODELS)

    async def process_routing(self, records: Sequence[Any]) -> None:
        await self._consume(records, {types.ROUTING_SLA_BREACHED: rc.SlaBreachedV1,
                                      types.ROUTING_CONVERSATION_RESOLVED: rc.RoutingConversationResolvedV1},
                            ignore_others=True)

    async def process_identity(self, records: Sequence[Any]) -> None:
        await self._consume(records, {types.INTERACTION_RESOLVED: InteractionResolvedV1,
                                      types.CUSTOMERS_MERGED: CustomersMergedV1,
                                      types.CUSTOMER_ERASED: None, types.CUSTOMER_SPLIT: None})

    async def process_feedback(self, records: Sequence[Any]) -> None:
        """Survey invitations of the feedback service go out like any other notification (purpose surveys)."""
        await self._consume(records, {types.FEEDBACK_INVITED: fc.FeedbackInvitedV1}, ignore_others=True)

    async def process_customers(self, records: Sequence[Any]) -> None:
        """Customer snapshots keep the directory (identifier → customer, contact points); a tombstone removes
        a customer id that stopped existing."""
        live = [r for r in records if r.value is not None]
        await directory.forget_tombstoned(self.pool, repo.SCHEMA, records)
        await self._consume(live, {types.CUSTOMER_SNAPSHOT: None}, idempotent=False)

    async def _consume(self, records: Sequence[Any], models: Mapping[str, type[BaseModel] | None],
                       ignore_others: bool = False, idempotent: bool = True) -> None:
        await self.vault.prefetch(records)
        incoming, dead = decode(records, models, ignore_others, self.vault)
        self._count(await outbox.apply_once(self.pool, repo.SCHEMA, incoming, self._apply, nc.NOTIFICATION_MODELS,
                                            idempotent))
        await self.producer.send_all(dead)
        await self.publish_pending()

    async def _apply(self, conn: asyncpg.Connection, item: Decoded, batch: Emitted) -> None:
        e, m = item.event, item.data
        tenant = e.tenant
        if e.type == types.CUSTOMER_SNAPSHOT:
            await self._snapshot(conn, tenant, e.data or {}, batch)
        elif e.type == types.INTERACTION_RESOLVED:
            if m.direction == "inbound":
                await repo.saw_inbound(conn, tenant, [(m.customer_id, m.channel, m.occurred_at)])
        elif e.type == types.CUSTOMERS_MERGED:
            await repo.rename_customer(conn, tenant, m.merged_ids, m.survivor_id)
        elif e.type == types.CUSTOMER_SPLIT:
            return  # the detached identifiers arrive with the new customer's snapshot
        elif e.type == types.CUSTOMER_ERASED:
            if (e.data or {}).get("customer_id"):
                await repo.erase_customer(conn, tenant, e.data["customer_id"])
        elif e.type == types.ROUTING_SLA_BREACHED:
            await repo.set_breach(conn, tenant, m.conversation_id, m.customer_id, e.time or self.clock())
            await self._trigger(conn, tenant, e, m.customer_id, {"conversation_id": m.conversation_id},
                                f"conversation:{m.conversation_id}:sla_breached:{m.metric}", None, batch)
        elif e.type == types.ROUTING_CONVERSATION_RESOLVED:
            await repo.clear_breach(conn, tenant, m.conversation_id)
        elif e.type == types.FEEDBACK_INVITED:
            values = {"survey_link": m.link, "survey_title": m.survey_title or "", "channel": m.channel,
                      "conversation_id": m.conversation_id, "case_id": m.case_id, "agent_id": m.agent_id}
            await self._trigger(conn, tenant, e, m.customer_id, values, f"invitation:{m.invitation_id}", None, batch)
        else:
            customer_id = await self._customer(conn, tenant, m.customer, e)
            if customer_id is not None:
                await self._upstream(conn, tenant, e, m, customer_id, batch)

    async def _customer(self, conn: asyncpg.Connection, tenant: str, ref: bc.CustomerRef, e: CloudEvent) -> str | None:
        """Touchpoint's customer id for ``ref``; None when not known yet (the event is parked until a snapshot
        names one of its identifiers, see ``shared.directory``)."""
        return await directory.resolve(conn, repo.SCHEMA, tenant, ref, e, self.phone_region)

    async def _snapshot(self, conn: asyncpg.Connection, tenant: str, data: dict, batch: Emitted) -> None:
        customer_id = data.get("customer_id")
        if not customer_id:
            return
        identifiers = [(i["type"], i["value"]) for i in data.get("identifiers", []) if i.get("type") and i.get("value")]
        await directory.upsert(conn, repo.SCHEMA, tenant, customer_id, identifiers)
        if data.get("merged_ids"):
            await repo.rename_customer(conn, tenant, data["merged_ids"], customer_id)
        for parked in await directory.take_parked(conn, repo.SCHEMA, tenant, identifiers):
            event = directory.unparked(parked, tenant)
            model = {**bc.BUSINESS_MODELS, **cc.CONSENT_MODELS}[event.type].model_validate(event.data)
            await self._upstream(conn, tenant, event, model, customer_id, batch)

    # ---- upstream business and consent events -------------------------------------------------------------

    async def _upstream(self, conn: asyncpg.Connection, tenant: str, e: CloudEvent, m: Any, customer_id: str,
                        batch: Emitted) -> None:
        if e.type in (types.CONSENT_GRANTED, types.CONSENT_WITHDRAWN):
            status = "granted" if e.type == types.CONSENT_GRANTED else "withdrawn"
            consent = _consent(m, status)
            await repo.record_consent(conn, tenant, customer_id, e.id, consent)
            if status == "withdrawn":
                log.info("consent withdrawn", extra={"tenant": tenant, "purpose": m.purpose, "channel": m.channel})
            return
        if e.type == types.PREFERENCES_CHANGED:
            changes = m.model_dump(mode="json", include=m.model_fields_set - {"customer", "occurred_at"})
            await repo.merge_preferences(conn, tenant, customer_id, changes, m.occurred_at)
            return
        if e.type in (types.CASE_OPENED, types.CASE_UPDATED, types.CASE_RESOLVED, types.CASE_REOPENED):
            await self._case(conn, tenant, e, m, customer_id, batch)
            return
        values: dict[str, Any] = {"order_id": m.order_id}
        if isinstance(m, bc.ShipmentEvent):
            values.update(shipment_id=m.shipment_id, eta=_iso(m.eta), carrier=m.carrier or "")
        if isinstance(m, bc.ShipmentDelayedV1):
            values.update(new_eta=_iso(m.new_eta), reason=m.reason or "")
        # What happened, not the event's id: an upstream system re-sending the same fact under a new id (a
        # retried export, a second integration) does not notify twice.
        instance = f"{e.type}:{getattr(m, 'shipment_id', m.order_id)}:{getattr(m, 'new_eta', None) or m.occurred_at.isoformat()}"
        await self._trigger(conn, tenant, e, customer_id, values, instance, f"order:{m.order_id}", batch)

    async def _case(self, conn: asyncpg.Connection, tenant: str, e: CloudEvent, m: bc.CaseEvent, customer_id: str,
                    batch: Emitted) -> None:
        status = "resolved" if e.type == types.CASE_RESOLVED else "open"
        fields = {"complaint": m.complaint if e.type == types.CASE_OPENED or m.complaint else None,
                  "channel": m.channel, "conversation_id": m.conversation_id, "agent_id": m.agent_id,
                  "subject": m.subject}
        await repo.upsert_case(conn, tenant, m.case_id, customer_id, status, fields, m.occurred_at)
        if e.type == types.CASE_REOPENED:
            await self._cancel_for_case(conn, tenant, m.case_id, batch)
        known = await repo.case(conn, tenant, m.case_id)
        values = {"case_id": m.case_id, "subject": m.subject or known["subject"] or "",
                  "conversation_id": m.conversation_id or known["conversation_id"],
                  "agent_id": m.agent_id or known["agent_id"], "channel": m.channel or known["channel"]}
        event_kind = e.type.split(".")[2]
        instance = f"case:{m.case_id}:{event_kind}:{m.occurred_at.isoformat()}"
        await self._trigger(conn, tenant, e, customer_id, values, instance, f"case:{m.case_id}", batch)

    async def _cancel_for_case(self, conn: asyncpg.Connection, tenant: str, case_id: str, batch: Emitted) -> None:
        """A reopened case makes its pending follow-ups pointless."""
        now = self.clock()
        rows = await repo.pending_for_case(conn, tenant, case_id)
        updates, decisions = [], []
        for r in rows:
            payload = _payload(r)
            updates.append(_row(r, "suppressed", now, payload))
            decisions.append((tenant, r["notification_id"], now, "trigger", "suppress", "case_reopened",
                              "the case was reopened before the message was due", None, None))
            batch.emit(tenant, types.NOTIFICATION_SUPPRESSED, r["customer_id"], nc.NotificationSuppressedV1(
                **_base(r, now), step="trigger", reason="case_reopened",
                detail="the case was reopened before the message was due"))
        await repo.update_notifications(conn, updates)
        await repo.add_decisions(conn, decisions)

    async def _trigger(self, conn: asyncpg.Connection, tenant: str, e: CloudEvent, customer_id: str,
                       values: dict[str, Any], instance: str, digest_key: str | None, batch: Emitted) -> None:
        """Schedule a notification for every trigger of the tenant's configuration that reacts to ``e``."""
        cfg = self.tenant_config(tenant)
        now = self.clock()
        occurred = getattr(e, "time", None) or now
        for name, trig in cfg.triggers_for(e.type):
            payload = {**values, "first_channel": values.get("channel"), "transactional": trig.transactional,
                       "items": [_item(e.type, values)], "failed_channels": []}
            await self._schedule(conn, tenant, cfg, name, trig, customer_id, payload, f"{name}:{instance}",
                                 digest_key if trig.digest_s else None, occurred, now, batch)

    async def _schedule(self, conn: asyncpg.Connection, tenant: str, cfg: Any, name: str, trig: Any,
                        customer_id: str, payload: dict, instance: str, digest_key: str | None, occurred: datetime,
                        now: datetime, batch: Emitted) -> None:
        if digest_key:
            open_one = await repo.open_digest(conn, tenant, name, digest_key, now)
            if open_one is not None:
                joined = _payload(open_one)
                joined["items"] = joined.get("items", []) + payload["items"]
                joined.update({k: v for k, v in payload.items() if k not in ("items", "failed_channels") and v})
                await repo.set_payload(conn, tenant, open_one["notification_id"], joined, now)
                await repo.add_decisions(conn, [(tenant, open_one["notification_id"], now, "digest", "join", "digest",
                                                 f"joined the open digest ({len(joined['items'])} updates)", None, None)])
                return
        status, reason = "scheduled", None
        if trig.throttle is not None:
            recent = await repo.count_recent(conn, tenant, customer_id, name,
                                             now - timedelta(seconds=trig.throttle.window_s))
            if recent >= trig.throttle.max:
                status, reason = "suppressed", f"throttled: {recent} of at most {trig.throttle.max} in {trig.throttle.window_s} s"
        due = self._due(cfg, trig, customer_id, occurred, now, await self._zone(conn, tenant, cfg, customer_id))
        if digest_key:
            due = max(due, now + timedelta(seconds=trig.digest_s))
        nid = await repo.insert_notification(conn, tenant, customer_id, name, instance, trig.purpose, status, due,
                                             payload, now, digest_key)
        if nid is None:
            return
        head = {"notification_id": str(nid), "customer_id": customer_id, "trigger": name,
                "trigger_instance": instance, "purpose": trig.purpose, "at": now}
        if status == "suppressed":
            await repo.add_decisions(conn, [(tenant, nid, now, "throttle", "suppress", "throttled", reason, None, None)])
            batch.emit(tenant, types.NOTIFICATION_SUPPRESSED, customer_id, nc.NotificationSuppressedV1(
                **head, step="throttle", reason="throttled", detail=reason))
            return
        await repo.add_decisions(conn, [(tenant, nid, now, "schedule", "schedule", "scheduled",
                                         f"due at {due.isoformat()}", payload.get("first_channel"), None)])
        batch.emit(tenant, types.NOTIFICATION_SCHEDULED, customer_id, nc.NotificationScheduledV1(
            **head, due_at=due, channel=_contact_channel(payload.get("first_channel"))))

    def _due(self, cfg: Any, trig: Any, customer_id: str, occurred: datetime, now: datetime, zone: str) -> datetime:
        base = max(occurred, now - timedelta(days=1))  # a replayed old event is not sent in the past's order
        weekend_to = time.fromisoformat(trig.weekend_to) if isinstance(trig.weekend_to, str) else trig.weekend_to
        return follow_up_due(base, timedelta(seconds=trig.delay_s), ZoneInfo(zone), weekend_to)

    async def _zone(self, conn: asyncpg.Connection, tenant: str, cfg: Any, customer_id: str) -> str:
        prefs = await conn.fetchval(
            "SELECT data->>'time_zone' FROM notification.preferences WHERE tenant = $1 AND customer_id = $2",
            tenant, customer_id)
        return prefs or cfg.default_time_zone

    # ---- the scheduler ------------------------------------------------------------------------------------

    async def tick(self) -> int:
        """Release in-doubt sends, schedule status updates for stale cases, send what is due. Returns sends."""
        now = self.clock()
        async with UnitOfWork(self.pool) as uow:
            released = await repo.release_in_doubt(uow.conn, now)
            await uow.commit()
        if released:
            log.warning("sends in doubt after a lost lease are repeated with their idempotency keys",
                        extra={"count": len(released)})
        await self._stale_cases(now)
        sent = 0
        while True:
            n, claimed = await self.send_due()
            sent += n
            if claimed < self.batch_size:
                break
        await self.publish_pending()
        return sent

    async def run(self, interval_s: float, stop: asyncio.Event | None = None) -> None:
        """The scheduler loop: ``tick`` every ``interval_s``; failures back off, never a hot loop."""
        delay = interval_s
        while stop is None or not stop.is_set():
            try:
                await self.tick()
                delay = interval_s
            except Exception as exc:  # noqa: BLE001 - the loop must survive; non-transient errors are logged loudly
                delay = min(max(delay, 0.1) * 2, 10.0)
                log.log(logging.WARNING if is_transient(exc) else logging.ERROR, "notification tick failed",
                        extra={"error": type(exc).__name__, "retry_in_s": delay}, exc_info=not is_transient(exc))
            await asyncio.sleep(delay)

    async def _stale_cases(self, now: datetime) -> None:
        async with self.pool.acquire() as conn:
            tenants = await repo.tenants_with_open_cases(conn)
        for tenant in tenants:
            cfg = self.tenant_config(tenant)
            for name, trig in cfg.triggers_for(STALE):
                batch = Emitted()
                async with UnitOfWork(self.pool) as uow:
                    cases = await repo.stale_cases(uow.conn, tenant, now - timedelta(days=trig.stale_after_days))
                    for c in cases:
                        values = {"case_id": c["case_id"], "subject": c["subject"] or "", "channel": c["channel"],
                                  "conversation_id": c["conversation_id"], "agent_id": c["agent_id"]}
                        payload = {**values, "first_channel": c["channel"], "transactional": trig.transactional,
                                   "items": [], "failed_channels": []}
                        await self._schedule(uow.conn, tenant, cfg, name, trig, c["customer_id"], payload,
                                             f"{name}:case:{c['case_id']}:{c['updated_at'].isoformat()}", None,
                                             now, now, batch)
                    await repo.mark_stale_notified(uow.conn, tenant, [c["case_id"] for c in cases])
                    await self._outbox(uow.conn, batch)
                    await uow.commit()
                self._count(batch)

    async def send_due(self) -> tuple[int, int]:
        """Claim up to one batch of due notifications, decide each, send the ones to send. Returns (sent,
        claimed)."""
        now = self.clock()
        batch = Emitted()
        async with UnitOfWork(self.pool) as uow:
            rows = await repo.claim_due(uow.conn, now, self.batch_size)
            if not rows:
                return 0, 0
            plans = await self._decide(uow.conn, rows, now, batch)
            await self._outbox(uow.conn, batch)
            await uow.commit()
        self._count(batch)
        semaphore = asyncio.Semaphore(self.concurrency)

        async def one(plan: Plan) -> tuple[Plan, SendResult | SendError]:
            async with semaphore:
                return plan, await self._send(plan.message)

        # Outcomes are recorded as they come in (every transaction takes whatever finished meanwhile), so a
        # crash leaves as few sends in doubt as possible.
        sent = 0
        running = {asyncio.create_task(one(p)) for p in plans}
        try:
            while running:
                done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                sent += await self._record(list(t.result() for t in done))
        finally:
            for task in running:
                task.cancel()
        return sent, len(rows)

    async def _record(self, results: list[tuple["Plan", Any]]) -> int:
        batch = Emitted()
        async with UnitOfWork(self.pool) as uow:
            sent = await self._record_results(uow.conn, results, batch)
            await self._outbox(uow.conn, batch)
            await uow.commit()
        self._count(batch)
        return sent

    async def _send(self, message: OutboundMessage) -> SendResult | SendError:
        sender = self.senders.get(message.channel)
        if sender is None:
            return SendError("channel_not_configured", True, f"the {message.channel} channel is not configured")
        try:
            return await sender.send(message)
        except SendError as exc:
            return exc
        except Exception as exc:  # noqa: BLE001 - an adapter bug must not lose the notification: retried later
            log.error("channel adapter failed", extra={"channel": message.channel, "error": type(exc).__name__})
            return SendError("adapter_error", False, f"{type(exc).__name__} in the {message.channel} adapter")

    async def _decide(self, conn: asyncpg.Connection, rows: Sequence[Any], now: datetime, batch: Emitted) -> list["Plan"]:
        plans: list[Plan] = []
        updates, decisions, attempts = [], [], []
        by_tenant: dict[str, list[Any]] = {}
        for r in rows:
            by_tenant.setdefault(r["tenant"], []).append(r)
        for tenant, trows in by_tenant.items():
            cfg = self.tenant_config(tenant)
            people = await repo.recipients(conn, tenant, [r["customer_id"] for r in trows], now, cfg.default_time_zone)
            for r in trows:
                recipient, raw = people[r["customer_id"]]
                if recipient.preferences.quiet_hours is None and "quiet_hours" not in raw:
                    recipient.preferences.quiet_hours = cfg.quiet_hours()
                payload = _payload(r)
                trig = cfg.triggers.get(r["trigger"])
                if trig is None or not trig.enabled:
                    decision = Decision("suppress", "trigger", "trigger_disabled",
                                        "the trigger is no longer enabled in the configuration")
                else:
                    candidate = trig.candidate(r["trigger"], payload.get("first_channel"), tuple(cfg.channels))
                    failed = set(payload.get("failed_channels", []))
                    candidate = _without(candidate, failed)
                    decision = decide(candidate, recipient, now, cfg.cap_rules())
                decisions.append((tenant, r["notification_id"], now, decision.step, decision.outcome, decision.reason,
                                  decision.detail, decision.channel, decision.consent_id))
                if decision.outcome == "suppress":
                    updates.append(_row(r, "suppressed", now, payload))
                    batch.emit(tenant, types.NOTIFICATION_SUPPRESSED, r["customer_id"], nc.NotificationSuppressedV1(
                        **_base(r, now), step=decision.step, reason=decision.reason, detail=decision.detail))
                elif decision.outcome == "hold":
                    updates.append(_row(r, "held", now, payload, due_at=decision.release_at))
                    if r["status"] != "held" or r["due_at"] != decision.release_at:
                        batch.emit(tenant, types.NOTIFICATION_HELD, r["customer_id"], nc.NotificationHeldV1(
                            **_base(r, now), reason=decision.reason, release_at=decision.release_at))
                else:
                    # Kept for delivery reports: a failure the provider reports later falls back to these.
                    payload = {**payload, "fallback": list(decision.fallback)}
                    plan = self._plan(cfg, r, payload, recipient, decision, trig, now)
                    if isinstance(plan, str):
                        decisions.append((tenant, r["notification_id"], now, "render", "suppress", "template_error",
                                          plan, decision.channel, None))
                        updates.append(_row(r, "suppressed", now, payload))
                        batch.emit(tenant, types.NOTIFICATION_SUPPRESSED, r["customer_id"], nc.NotificationSuppressedV1(
                            **_base(r, now), step="render", reason="template_error", detail=plan))
                        continue
                    plans.append(plan)
                    recipient.past_sends.append(PastSend(now, r["trigger"], bool(payload.get("transactional"))))
                    updates.append(_row(r, "sending", now, payload, lease_until=now + self.lease,
                                        channel=decision.channel, consent_id=decision.consent_id,
                                        language=plan.language, sent_at=now, attempt_inc=1))
                    attempts.append((tenant, r["notification_id"], decision.channel, now))
        await repo.update_notifications(conn, updates)
        await repo.add_decisions(conn, decisions)
        await repo.start_attempts(conn, attempts)
        return plans

    def _plan(self, cfg: Any, r: Any, payload: dict, recipient: Recipient, decision: Decision, trig: Any,
              now: datetime) -> "Plan | str":
        """The message for the decided channel, or why it cannot be rendered."""
        channel = decision.channel
        templates = cfg.templates.get(r["trigger"], {})
        language = choose_language(recipient.preferences.language, set(templates), cfg.default_language)
        values = self._values(cfg, r, payload, recipient, trig, now, language)
        try:
            rendered = render(templates[language], values, channel)
        except (RenderError, KeyError) as exc:
            return f"template of {r['trigger']!r} in {language!r} cannot be rendered: {exc}"
        template_only = decision.template_only.get(channel, False)
        message = OutboundMessage(
            notification_id=str(r["notification_id"]), idempotency_key=f"{r['notification_id']}:{channel}",
            channel=channel, to=recipient.addresses[channel], subject=rendered.subject, text=rendered.text,
            html=rendered.html, template=trig.whatsapp_template if template_only else None,
            template_language=language if template_only else None,
            template_params=(values["name"] or NAMELESS.get(language, NAMELESS["en"]),
                             values["case_id"] or values["order_id"] or "-") if template_only else ())
        return Plan(r["tenant"], r, channel, decision.consent_id, decision.fallback, language, message, payload)

    def _values(self, cfg: Any, r: Any, payload: dict, recipient: Recipient, trig: Any, now: datetime,
                language: str) -> dict[str, str]:
        values = {k: "" for k in KNOWN_PLACEHOLDERS}
        values.update({k: str(v) for k, v in payload.items() if k in values and v is not None})
        values["name"] = recipient.preferences.display_name or ""
        values["company"] = getattr(cfg, "company", "") or ""
        values["items"] = "\n".join(f"- {i}" for i in payload.get("items", []) if i)
        if trig.answer:
            expires = r["created_at"] + timedelta(seconds=cfg.answer_ttl_s)
            for answer, key in (("yes", "yes_link"), ("no", "no_link")):
                token = tokens.issue({"t": r["tenant"], "n": str(r["notification_id"]), "a": answer}, expires,
                                     self.answer_secret)
                values[key] = f"{cfg.answer_link_base.rstrip('/')}/{token}"
        return values

    async def _record_results(self, conn: asyncpg.Connection, results: Sequence[tuple["Plan", Any]],
                              batch: Emitted) -> int:
        now = self.clock()
        updates, decisions, finished = [], [], []
        sent = 0
        for plan, result in results:
            r, tenant, payload = plan.row, plan.tenant, plan.payload
            if isinstance(result, SendResult):
                sent += 1
                updates.append(_row(r, "sent", now, payload, channel=plan.channel, consent_id=plan.consent_id,
                                    language=plan.language, provider_message_id=result.provider_message_id,
                                    sent_at=now))
                finished.append((tenant, r["notification_id"], plan.channel, "sent", result.provider_message_id, None, now))
                decisions.append((tenant, r["notification_id"], now, "send", "sent", "ok",
                                  f"accepted by the {plan.channel} provider", plan.channel, plan.consent_id))
                batch.emit(tenant, types.NOTIFICATION_SENT, r["customer_id"], nc.NotificationSentV1(
                    **_base(r, now), channel=plan.channel, provider_message_id=result.provider_message_id,
                    consent_id=plan.consent_id, language=plan.language, template=plan.message.template,
                    attempt=r["attempt"] + 1, fallback_from=(payload.get("failed_channels") or [None])[-1]))
                continue
            tries = await repo.attempt_tries(conn, tenant, r["notification_id"], plan.channel)
            retry = not result.permanent and tries < self.send_attempts
            finished.append((tenant, r["notification_id"], plan.channel, "failed", None, result.reason, now))
            if retry:
                due = now + timedelta(seconds=TRANSIENT_BACKOFF_S[min(tries, len(TRANSIENT_BACKOFF_S)) - 1])
                updates.append(_row(r, "scheduled", now, payload, due_at=due, clear_sent=True))
                decisions.append((tenant, r["notification_id"], now, "send", "retry", result.reason,
                                  f"{result}; retried at {due.isoformat()}", plan.channel, plan.consent_id))
                continue
            payload = {**payload, "failed_channels": payload.get("failed_channels", []) + [plan.channel]}
            next_channel = plan.fallback[0] if plan.fallback else None
            decisions.append((tenant, r["notification_id"], now, "send", "failed", result.reason, str(result),
                              plan.channel, plan.consent_id))
            batch.emit(tenant, types.NOTIFICATION_FAILED, r["customer_id"], nc.NotificationFailedV1(
                **_base(r, now), channel=plan.channel, reason=result.reason, permanent=result.permanent,
                next_channel=next_channel))
            if next_channel:
                updates.append(_row(r, "scheduled", now, payload, due_at=now, clear_sent=True))
            else:
                updates.append(_row(r, "failed", now, payload, clear_sent=True))
        await repo.update_notifications(conn, updates)
        await repo.finish_attempts(conn, finished)
        await repo.add_decisions(conn, decisions)
        if any(u.get("clear_sent") for u in updates):
            await conn.execute(
                """UPDATE notification.notifications SET sent_at = NULL
                   WHERE notification_id = ANY($1::uuid[]) AND status IN ('scheduled', 'failed')""",
                [u["notification_id"] for u in updates if u.get("clear_sent")])
        return sent

    # ---- provider callbacks and answers -------------------------------------------------------------------

    async def delivery_status(self, statuses: Sequence[Any]) -> int:
        """Apply provider delivery reports (``DeliveryStatus``); reports about unknown or already final
        messages change nothing. A failure or bounce falls back to the next consented channel."""
        now = self.clock()
        batch = Emitted()
        changed = 0
        async with UnitOfWork(self.pool) as uow:
            rows = {r["provider_message_id"]: r for r in await repo.by_provider_id(
                uow.conn, [s.provider_message_id for s in statuses])}
            updates, decisions = [], []
            for s in statuses:
                r = rows.get(s.provider_message_id)
                if r is None or r["status"] not in ("sent",) or s.status == "sent":
                    continue
                changed += 1
                payload = _payload(r)
                tenant = r["tenant"]
                if s.status == "delivered":
                    updates.append(_row(r, "delivered", now, payload))
                    batch.emit(tenant, types.NOTIFICATION_DELIVERED, r["customer_id"], nc.NotificationDeliveredV1(
                        **_base(r, now), channel=r["channel"], provider_message_id=s.provider_message_id))
                    decisions.append((tenant, r["notification_id"], now, "delivery", "delivered", "delivered",
                                      "the provider reported delivery", r["channel"], r["consent_id"]))
                    continue
                payload["failed_channels"] = payload.get("failed_channels", []) + [r["channel"]]
                next_channel = next((c for c in payload.get("fallback", []) if c not in payload["failed_channels"]),
                                    None)
                reason = f"{s.status}: {s.reason}" if s.reason else s.status
                if next_channel:
                    updates.append({**_row(r, "scheduled", now, payload, due_at=now), "provider_message_id": None})
                else:
                    updates.append(_row(r, "failed", now, payload))
                decisions.append((tenant, r["notification_id"], now, "delivery", "failed", s.status, reason,
                                  r["channel"], r["consent_id"]))
                batch.emit(tenant, types.NOTIFICATION_FAILED, r["customer_id"], nc.NotificationFailedV1(
                    **_base(r, now), channel=r["channel"], reason=reason, permanent=True, next_channel=next_channel))
            await repo.update_notifications(uow.conn, updates)
            # A bounced message is no longer sent: it does not count towards caps and may fall back.
            await uow.conn.execute(
                """UPDATE notification.notifications SET sent_at = NULL,
                       provider_message_id = CASE WHEN status = 'scheduled' THEN NULL ELSE provider_message_id END
                   WHERE notification_id = ANY($1::uuid[]) AND status IN ('scheduled', 'failed')""",
                [u["notification_id"] for u in updates if u["status"] in ("scheduled", "failed")])
            await repo.add_decisions(uow.conn, decisions)
            await self._outbox(uow.conn, batch)
            await uow.commit()
        self._count(batch)
        await self.publish_pending()
        return changed

    async def answer(self, token: str) -> tuple[str, bool, dict]:
        """Record the answer a signed link carries. Returns (tenant, solved, notification summary); raises
        ``tokens.TokenError`` for a bad or expired link and :class:`AnswerError` for a reused one."""
        now = self.clock()
        claims = tokens.verify(token, self.answer_secret, now)
        tenant, solved = claims["t"], claims["a"] == "yes"
        nid = uuid.UUID(claims["n"])
        batch = Emitted()
        async with UnitOfWork(self.pool) as uow:
            r = await repo.notification(uow.conn, tenant, nid)
            if r is None:
                raise AnswerError(404, "unknown_notification", "the message this link belongs to does not exist")
            if not await repo.record_answer(uow.conn, tenant, nid, solved, now):
                raise AnswerError(409, "already_answered", "this question was already answered")
            payload = _payload(r)
            batch.emit(tenant, types.NOTIFICATION_FOLLOW_UP_ANSWERED, r["customer_id"], nc.FollowUpAnsweredV1(
                **_base(r, now), solved=solved, conversation_id=payload.get("conversation_id"),
                case_id=payload.get("case_id"), agent_id=payload.get("agent_id"), channel=r["channel"]))
            await repo.add_decisions(uow.conn, [(tenant, nid, now, "answer", "answered", "solved" if solved else "not_solved",
                                                 "the customer answered the follow-up", r["channel"], None)])
            await self._outbox(uow.conn, batch)
            await uow.commit()
        self._count(batch)
        await self.publish_pending()
        return tenant, solved, {"notification_id": str(nid), "case_id": payload.get("case_id")}

    # ---- publishing ---------------------------------------------------------------------------------------

    async def _outbox(self, conn: asyncpg.Connection, batch: Emitted) -> None:
        await outbox.add_all(conn, repo.SCHEMA, batch, nc.NOTIFICATION_MODELS)

    def _count(self, batch: Emitted) -> None:
        for kind in batch.kinds():
            self.on_event(kind)

    async def publish_pending(self) -> int:
        return await outbox.publish_pending(self.pool, self.producer, repo.SCHEMA, self.topic, SOURCE)


class AnswerError(Exception):
    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.reason, self.detail = status, reason, detail


@dataclass
class Plan:
    tenant: str
    row: Any
    channel: str
    consent_id: str | None
    fallback: tuple[str, ...]
    language: str
    message: OutboundMessage
    payload: dict


def _payload(r: Any) -> dict:
    value = r["payload"]
    return dict(orjson.loads(value)) if isinstance(value, (str, bytes)) else dict(value or {})


def _row(r: Any, status: str, now: datetime, payload: dict, *, due_at: datetime | None = None,
         lease_until: datetime | None = None, channel: str | None = None, consent_id: str | None = None,
         language: str | None = None, provider_message_id: str | None = None, sent_at: datetime | None = None,
         attempt_inc: int = 0, clear_sent: bool = False) -> dict[str, Any]:
    return {"tenant": r["tenant"], "notification_id": r["notification_id"], "status": status,
            "due_at": due_at or r["due_at"], "lease_until": lease_until, "channel": channel,
            "consent_id": consent_id, "language": language, "provider_message_id": provider_message_id,
            "sent_at": sent_at, "payload": payload, "updated_at": now, "attempt_inc": attempt_inc,
            "clear_sent": clear_sent}


def _base(r: Any, now: datetime) -> dict[str, Any]:
    return {"notification_id": str(r["notification_id"]), "customer_id": r["customer_id"], "trigger": r["trigger"],
            "trigger_instance": r["trigger_instance"], "purpose": r["purpose"], "at": now}


def _consent(m: Any, status: str) -> Consent:
    return Consent(m.consent_id, m.purpose, m.channel, status, m.occurred_at, getattr(m, "expires_at", None),
                   m.wording_version, m.source)


def _without(candidate: Any, failed: set[str]) -> Any:
    if not failed:
        return candidate
    return replace(candidate, channels=tuple(c for c in candidate.channels if c not in failed))


def _contact_channel(channel: str | None) -> str | None:
    """``channel`` when notifications can use it; a case that came in by phone or chat names none."""
    return channel if channel in CHANNELS else None


def _iso(at: datetime | None) -> str:
    return at.isoformat() if at else ""


def _item(event_type: str, values: Mapping[str, Any]) -> str:
    """One line of a digest."""
    if event_type == types.SHIPMENT_DELAYED:
        return f"{values.get('shipment_id')}: {values.get('new_eta')}"
    return ""
