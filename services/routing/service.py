"""Routing use cases: apply what happened to a tenant's routing desk in one transaction, then publish.

Guarantees
- One writer per tenant: every change runs in a transaction holding the tenant's advisory lock (see
  ``repository.lock_tenant``), so two routing instances never offer one conversation twice or fill an agent
  beyond capacity.
- Each consumed upstream event changes the state once (``routing.processed_events`` is written in the same
  transaction as its effects); offsets are committed only after that transaction committed.
- Events are written to ``routing.outbox`` in the same transaction and published afterwards until acknowledged
  (at-least-once on the topic, each with a stable CloudEvents id, so consumers apply them once).
- Timers are marked fired in the transaction that applies their effect: a timer fires exactly once, also across
  restarts and ``kill -9``.

Of the notification topic only ``follow_up_answered`` with ``solved: false`` matters here: it reopens the
conversation it names, offering it first to the agent who resolved it; every other notification event is
acknowledged without effect.

Of the feedback topic only ``detractor_detected`` matters here: it opens the follow-up conversation it names
(``follow_up_conversation_id``) for the customer, tagged ``detractor_follow_up`` and ``team:<team>`` so that
workflows and SLA rules can match it (``task.team`` names the team in expressions), its priority raised by the
event's. A follow-up routing already has (open or resolved) is not opened again. Every other feedback event is
acknowledged without effect.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Awaitable, Callable, Sequence

import asyncpg
from pydantic import ValidationError

from services.routing import repository as repo
from services.routing.domain.clock import Clock
from services.routing.domain.desk import Desk
from services.routing.domain.model import CONVERSATIONAL
from services.routing.domain.queueing import HandlingRate
from shared.cloudevents import CloudEvent, InvalidEvent, from_kafka
from shared.contracts import routing as rc
from shared.contracts import types
from shared.contracts.feedback import FEEDBACK_MODELS, DetractorDetectedV1
from shared.contracts.identity import CustomersMergedV1
from shared.contracts.interaction import InteractionResolvedV1
from shared.contracts.notification import NOTIFICATION_MODELS, FollowUpAnsweredV1
from shared import outbox
from shared.db import UnitOfWork
from shared.loops import run_every
from shared.vault import Shredded, Vault
from shared.kafka import EventProducer, OutboundRecord, dead_letter

log = logging.getLogger(__name__)
SOURCE = "touchpoint/routing"
RATE_WINDOW_S = 900.0
FOLLOW_UP_TAG = "detractor_follow_up"
FOLLOW_UP_FALLBACK_CHANNEL = "email"  # a follow-up asked for on a channel without conversations

Apply = Callable[[Desk, asyncpg.Connection], Awaitable[Any]]


@dataclass
class Op:
    """One thing that happened, for one tenant; ``key`` (tenant, source, id) makes a consumed event idempotent."""

    key: tuple[str, str, str] | None
    apply: Apply
    merge: tuple[list[str], str] | None = None  # (merged ids, survivor) applied before the desk loads


class RoutingService:
    def __init__(self, pool: asyncpg.Pool, producer: EventProducer, config_source: Any, clock: Clock,
                 routing_topic: str, on_event: Callable[[str], None] = lambda kind: None) -> None:
        self.pool = pool
        self.vault = Vault(pool)
        self.producer = producer
        self.config_source = config_source
        self.clock = clock
        self.routing_topic = routing_topic
        self.on_event = on_event

    # ---- consumers -----------------------------------------------------------------------------------------

    async def process_identity(self, records: Sequence[Any]) -> None:
        """Resolved interactions open or continue conversations; merges re-key them."""
        await self._consume(records, self._identity_op)

    async def process_agents(self, records: Sequence[Any]) -> None:
        await self._consume(records, self._agent_op)

    async def process_conversations(self, records: Sequence[Any]) -> None:
        await self._consume(records, self._conversation_op)

    async def process_notifications(self, records: Sequence[Any]) -> None:
        """A customer's "not solved" answer to a follow-up reopens the conversation; the rest is acknowledged."""
        await self._consume(records, notification_op)

    async def process_feedback(self, records: Sequence[Any]) -> None:
        """A detractor's feedback opens a follow-up conversation for the team; the rest is acknowledged."""
        await self._consume(records, feedback_op)

    async def _consume(self, records: Sequence[Any], to_op: Callable[[CloudEvent], Op | None]) -> None:
        dead: list[OutboundRecord] = []
        per_tenant: dict[str, list[Op]] = {}
        await self.vault.prefetch(records)
        for record in records:
            try:
                event = self.vault.open(from_kafka(record.value, record.headers))
                if not event.tenant:
                    raise InvalidEvent("missing_attribute", "the tenant extension attribute is required")
                op = to_op(event)
            except Shredded:
                continue  # its customer was erased
            except (InvalidEvent, ValidationError) as exc:
                dead.append(dead_letter(record, getattr(exc, "reason", "invalid_data"), exc))
                continue
            if op is not None:
                per_tenant.setdefault(event.tenant, []).append(op)
        for tenant, ops in per_tenant.items():
            await self.apply(tenant, ops)
        await self.producer.send_all(dead)
        await self.publish_pending()

    def _identity_op(self, event: CloudEvent) -> Op | None:
        if event.type == types.INTERACTION_RESOLVED:
            it = InteractionResolvedV1.model_validate(event.data)
            if it.channel not in CONVERSATIONAL:
                return None
            key = (event.tenant, it.source, it.event_id)
            if it.direction == "outbound":
                return Op(key, _outbound(it))
            return Op(key, _inbound(it))
        if event.type == types.CUSTOMERS_MERGED:
            merged = CustomersMergedV1.model_validate(event.data)
            return Op((event.tenant, event.source, event.id), _nothing, (merged.merged_ids, merged.survivor_id))
        if event.type in (types.CUSTOMER_SPLIT, types.CUSTOMER_ERASED):
            return None
        raise InvalidEvent("unsupported_type", f"event type {event.type!r} is not accepted here")

    def _agent_op(self, event: CloudEvent) -> Op:
        key = (event.tenant, event.source, event.id)
        if event.type == types.AGENT_PROFILE_UPDATED:
            p = rc.AgentProfileUpdatedV1.model_validate(event.data)
            attributes = {**p.attributes, "skills": dict(p.skills), "languages": list(p.languages),
                          "teams": list(p.teams)}
            return Op(key, lambda desk, conn: _sync(desk.profile(p.agent_id, p.name, attributes, p.capacity_total)))
        if event.type == types.AGENT_PRESENCE_CHANGED:
            p = rc.AgentPresenceChangedV1.model_validate(event.data)
            return Op(key, lambda desk, conn: _sync(desk.presence(p.agent_id, p.presence, p.changed_at)))
        raise InvalidEvent("unsupported_type", f"event type {event.type!r} is not accepted here")

    def _conversation_op(self, event: CloudEvent) -> Op:
        model = rc.CONVERSATION_MODELS.get(event.type)
        if model is None:
            raise InvalidEvent("unsupported_type", f"event type {event.type!r} is not accepted here")
        activity = model.model_validate(event.data)
        return Op((event.tenant, event.source, event.id), conversation_activity(event.type, activity))

    # ---- the one way state changes ------------------------------------------------------------------------

    async def apply(self, tenant: str, ops: Sequence[Op], fire_timers: bool = False) -> list[Any]:
        """Apply ``ops`` (and due timers) to the tenant's desk, route, and persist everything in one transaction.
        Returns each applied op's result; ops already applied before (redeliveries) are skipped."""
        async with UnitOfWork(self.pool) as uow:
            conn = uow.conn
            await repo.lock_tenant(conn, tenant)
            keys = [op.key for op in ops if op.key is not None]
            fresh = await outbox.first_seen(conn, repo.SCHEMA, keys)
            ops = [op for op in ops if op.key is None or op.key in fresh]
            for op in ops:
                if op.merge:
                    await repo.rename_customer(conn, tenant, *op.merge)
            now = self.clock.now()
            desk = await self._desk(conn, tenant, now)
            results = [await op.apply(desk, conn) for op in ops]
            if fire_timers:
                for timer in await repo.take_due_timers(conn, tenant, now):
                    desk.fire(timer)
            desk.dispatch()
            desk.finish()
            await self._save(conn, tenant, desk, now)
            await uow.commit()
        for event in desk.events:
            self.on_event(event.kind)
        return results

    async def _desk(self, conn: asyncpg.Connection, tenant: str, now: datetime) -> Desk:
        config = self.config_source.current().tenant(tenant)
        conversations = await repo.open_conversations(conn, tenant)
        agents = await repo.agents(conn, tenant)
        last = await repo.last_agents(conn, tenant, {c.customer_id for c in conversations.values()})
        rate = HandlingRate(RATE_WINDOW_S, getattr(config, "default_handle_s", 300.0))
        for queue, at in await repo.recent_departures(conn, tenant, now - timedelta(seconds=RATE_WINDOW_S)):
            rate.departed(queue, at)
        desk = Desk(tenant, config, now, conversations, agents, last, rate)
        return desk

    async def _save(self, conn: asyncpg.Connection, tenant: str, desk: Desk, now: datetime) -> None:
        await repo.save_conversations(conn, tenant, [desk.conversations[c] for c in sorted(desk.changed)], now)
        await repo.save_agents(conn, tenant, [desk.agents[a] for a in sorted(desk.changed_agents)], now)
        await repo.save_last_agents(conn, tenant, {c: desk.last_agents[c] for c in desk.changed_last})
        await repo.record_assignments(conn, tenant, desk.assigned, desk.released, now)
        await repo.add_timers(conn, tenant, desk.timers)
        rows = []
        for e in desk.events:
            event_type = f"touchpoint.routing.{e.kind}.v1"
            data = rc.ROUTING_MODELS[event_type].model_validate(e.data).model_dump(mode="json", exclude_none=True)
            rows.append((str(uuid.uuid4()), event_type, e.customer_id, data))
        await outbox.add(conn, repo.SCHEMA, tenant, rows)

    # ---- timers and publishing -----------------------------------------------------------------------------

    async def tick(self) -> int:
        """Fire due timers and re-route waiting conversations of every tenant that has any. Returns tenants seen."""
        async with self.pool.acquire() as conn:
            tenants = await repo.due_tenants(conn, self.clock.now())
        for tenant in tenants:
            await self.apply(tenant, [], fire_timers=True)
        await self.publish_pending()
        return len(tenants)

    async def run_timers(self, interval_s: float, stop: asyncio.Event | None = None) -> None:
        """The timer loop: ``tick`` every ``interval_s``; failures back off, never a hot loop."""
        await run_every(self.tick, interval_s, "timer tick", stop)

    async def publish_pending(self) -> int:
        """Publish outbox events not yet acknowledged (this instance's and any a crash left behind)."""
        return await outbox.publish_pending(self.pool, self.producer, repo.SCHEMA, self.routing_topic, SOURCE)


def notification_op(event: CloudEvent) -> Op | None:
    """The desk change a notification event asks for: a reopen for a follow-up answered "not solved" on a known
    conversation, None for every other notification event. Raises ``InvalidEvent`` for a type the notification
    topic does not carry and ``ValidationError`` for a follow-up answer that breaks its contract."""
    if event.type not in NOTIFICATION_MODELS:
        raise InvalidEvent("unsupported_type", f"event type {event.type!r} is not accepted here")
    if event.type != types.NOTIFICATION_FOLLOW_UP_ANSWERED:
        return None
    reopen = reopen_request(FollowUpAnsweredV1.model_validate(event.data))
    if reopen is None:
        return None
    return Op((event.tenant, event.source, event.id), conversation_activity(types.CONVERSATION_REOPENED, reopen))


def feedback_op(event: CloudEvent) -> Op | None:
    """The desk change a feedback event asks for: a follow-up conversation for ``detractor_detected``, None for
    every other feedback event. Raises ``InvalidEvent`` for a type the feedback topic does not carry and
    ``ValidationError`` for a detractor event that breaks its contract."""
    if event.type not in FEEDBACK_MODELS:
        raise InvalidEvent("unsupported_type", f"event type {event.type!r} is not accepted here")
    if event.type != types.FEEDBACK_DETRACTOR_DETECTED:
        return None
    request = follow_up_request(DetractorDetectedV1.model_validate(event.data))
    return Op((event.tenant, event.source, event.id), _follow_up(request))


@dataclass(frozen=True)
class FollowUp:
    """The conversation a detractor's feedback asks routing to open (see :meth:`Desk.follow_up`)."""

    conversation_id: str
    customer_id: str
    channel: str
    at: datetime
    language: str | None
    tags: list[str]
    priority: int


def follow_up_request(detractor: DetractorDetectedV1) -> FollowUp:
    """The follow-up of a detractor: on the event's channel when conversations happen there, else by e-mail;
    tagged ``detractor_follow_up`` and, when the event names the team, ``team:<team>``."""
    channel = detractor.channel if detractor.channel in CONVERSATIONAL else FOLLOW_UP_FALLBACK_CHANNEL
    tags = [FOLLOW_UP_TAG] + ([f"team:{detractor.team}"] if detractor.team else [])
    return FollowUp(detractor.follow_up_conversation_id, detractor.customer_id, channel, detractor.at,
                    detractor.language, tags, detractor.priority)


def _follow_up(request: FollowUp) -> Apply:
    async def apply(desk: Desk, conn: asyncpg.Connection) -> Any:
        cid = request.conversation_id
        known = desk.conversations.get(cid) or await repo.conversation(conn, desk.tenant, cid)
        if known is not None:  # asked for before (open or resolved): one follow-up per detractor
            return known
        return desk.follow_up(cid, request.customer_id, request.channel, request.at, request.language,
                              list(request.tags), request.priority)

    return apply


def reopen_request(answer: FollowUpAnsweredV1) -> rc.ConversationReopenedV1 | None:
    """The reopen a follow-up answer amounts to: "not solved" on a conversation reopens it for the agent the
    answer names (the one who resolved it); a "solved" answer, or one without a conversation, changes nothing."""
    if answer.solved or answer.conversation_id is None:
        return None
    return rc.ConversationReopenedV1(conversation_id=answer.conversation_id, occurred_at=answer.at,
                                     reason="the customer answered the follow-up: not solved",
                                     prefer_agent_id=answer.agent_id)


def conversation_activity(event_type: str, activity: Any) -> Apply:
    """The desk change for an upstream conversation event (also used by the HTTP API)."""

    async def apply(desk: Desk, conn: asyncpg.Connection) -> Any:
        c = desk.conversations.get(activity.conversation_id)
        if c is None:
            c = await repo.conversation(conn, desk.tenant, activity.conversation_id)
            if c is None:
                return None
            desk.conversations[c.conversation_id] = c
        at = activity.occurred_at
        if event_type == types.CONVERSATION_AGENT_REPLIED:
            desk.agent_replied(c, at, activity.agent_id)
        elif event_type == types.CONVERSATION_CUSTOMER_REPLIED:
            desk.customer_replied(c, at)
        elif event_type == types.CONVERSATION_WAITING_ON_CUSTOMER:
            desk.waiting_on_customer(c, at)
        elif event_type == types.CONVERSATION_RESOLVED:
            desk.resolved(c, at, getattr(activity, "resolution", None))
        elif event_type == types.CONVERSATION_REOPENED:
            desk.reopened(c, at, getattr(activity, "prefer_agent_id", None))
        return c

    return apply


def _inbound(it: InteractionResolvedV1) -> Apply:
    async def apply(desk: Desk, conn: asyncpg.Connection) -> Any:
        resolved = None
        if it.conversation_id and it.conversation_id not in desk.conversations:
            resolved = await repo.conversation(conn, desk.tenant, it.conversation_id)
        return desk.inbound(it.conversation_id, it.customer_id, it.channel, it.occurred_at, it.language,
                            list(it.tags), resolved)

    return apply


def _outbound(it: InteractionResolvedV1) -> Apply:
    """An agent's outbound message on a conversation counts as the agent's reply."""

    async def apply(desk: Desk, conn: asyncpg.Connection) -> Any:
        c = desk.conversations.get(it.conversation_id) if it.conversation_id else desk.open_for(it.customer_id, it.channel)
        if c is not None:
            desk.agent_replied(c, it.occurred_at, it.agent_id)
        return c

    return apply


async def _nothing(desk: Desk, conn: asyncpg.Connection) -> None:
    return None


async def _sync(value: Any) -> Any:
    return value
