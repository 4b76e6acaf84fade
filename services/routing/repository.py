"""SQL of the routing service. Functions take a connection inside the caller's transaction and never commit.

Every write of a tenant's routing state happens under :func:`lock_tenant`, a transaction-scoped advisory lock:
one writer per tenant at a time across all routing instances, which is what makes assignment race-free (no
conversation offered twice, no agent above capacity) without optimistic retries.
"""

from __future__ import annotations

from datetime import datetime
from typing import Iterable, Sequence

import asyncpg
import orjson

from services.routing.domain.desk import LastAgent
from services.routing.domain.model import Agent, Conversation, Timer

SCHEMA = "routing"  # owns the outbox and processed_events tables (shared.outbox)


async def lock_tenant(conn: asyncpg.Connection, tenant: str) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('touchpoint.routing/' || $1, 0))", tenant)


async def open_conversations(conn: asyncpg.Connection, tenant: str) -> dict[str, Conversation]:
    rows = await conn.fetch(
        "SELECT state FROM routing.conversations WHERE tenant = $1 AND status <> 'resolved'", tenant)
    return {c.conversation_id: c for c in (Conversation.from_state(orjson.loads(r["state"])) for r in rows)}


async def conversation(conn: asyncpg.Connection, tenant: str, conversation_id: str) -> Conversation | None:
    state = await conn.fetchval(
        "SELECT state FROM routing.conversations WHERE tenant = $1 AND conversation_id = $2", tenant, conversation_id)
    return Conversation.from_state(orjson.loads(state)) if state else None


async def agents(conn: asyncpg.Connection, tenant: str) -> dict[str, Agent]:
    rows = await conn.fetch(
        """SELECT agent_id, name, attributes, capacity_total, presence, last_assigned_at
           FROM routing.agents WHERE tenant = $1""", tenant)
    return {r["agent_id"]: Agent(r["agent_id"], r["presence"], r["name"], orjson.loads(r["attributes"]),
                                 r["capacity_total"], 0, r["last_assigned_at"]) for r in rows}


async def last_agents(conn: asyncpg.Connection, tenant: str, customers: Iterable[str]) -> dict[str, LastAgent]:
    rows = await conn.fetch(
        "SELECT customer_id, agent_id, at FROM routing.last_agents WHERE tenant = $1 AND customer_id = ANY($2::text[])",
        tenant, list(set(customers)))
    return {r["customer_id"]: LastAgent(r["agent_id"], r["at"]) for r in rows}


async def recent_departures(conn: asyncpg.Connection, tenant: str, since: datetime) -> list[tuple[str, datetime]]:
    rows = await conn.fetch(
        "SELECT queue, assigned_at FROM routing.assignments WHERE tenant = $1 AND assigned_at >= $2 ORDER BY assigned_at",
        tenant, since)
    return [(r["queue"], r["assigned_at"]) for r in rows]


async def save_conversations(conn: asyncpg.Connection, tenant: str, items: Sequence[Conversation], now: datetime) -> None:
    if not items:
        return
    await conn.execute(
        """INSERT INTO routing.conversations (tenant, conversation_id, customer_id, channel, status, state, queued_at, updated_at)
           SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::jsonb[], $7::timestamptz[],
                                    $8::timestamptz[])
           ON CONFLICT (tenant, conversation_id) DO UPDATE SET customer_id = EXCLUDED.customer_id,
               status = EXCLUDED.status, state = EXCLUDED.state, queued_at = EXCLUDED.queued_at,
               updated_at = EXCLUDED.updated_at""",
        tenant, [c.conversation_id for c in items], [c.customer_id for c in items], [c.channel for c in items],
        [c.status for c in items], [orjson.dumps(c.to_state()).decode() for c in items],
        [c.queued_at for c in items], [now] * len(items))


async def save_agents(conn: asyncpg.Connection, tenant: str, items: Sequence[Agent], now: datetime) -> None:
    if not items:
        return
    await conn.execute(
        """INSERT INTO routing.agents (tenant, agent_id, name, attributes, capacity_total, presence, presence_at,
                                       last_assigned_at)
           SELECT $1, * FROM unnest($2::text[], $3::text[], $4::jsonb[], $5::int[], $6::text[], $7::timestamptz[],
                                    $8::timestamptz[])
           ON CONFLICT (tenant, agent_id) DO UPDATE SET name = EXCLUDED.name, attributes = EXCLUDED.attributes,
               capacity_total = EXCLUDED.capacity_total, presence = EXCLUDED.presence,
               presence_at = EXCLUDED.presence_at, last_assigned_at = EXCLUDED.last_assigned_at""",
        tenant, [a.agent_id for a in items], [a.name for a in items],
        [orjson.dumps(a.attributes).decode() for a in items], [a.capacity_total for a in items],
        [a.presence for a in items], [now] * len(items), [a.last_assigned_at for a in items])


async def save_last_agents(conn: asyncpg.Connection, tenant: str, items: dict[str, LastAgent]) -> None:
    if not items:
        return
    await conn.execute(
        """INSERT INTO routing.last_agents (tenant, customer_id, agent_id, at)
           SELECT $1, * FROM unnest($2::text[], $3::text[], $4::timestamptz[])
           ON CONFLICT (tenant, customer_id) DO UPDATE SET agent_id = EXCLUDED.agent_id, at = EXCLUDED.at""",
        tenant, list(items), [v.agent_id for v in items.values()], [v.at for v in items.values()])


async def record_assignments(conn: asyncpg.Connection, tenant: str, items: Sequence[tuple[Conversation, Agent]],
                             released: Sequence[str], now: datetime) -> None:
    if released:
        await conn.execute(
            """UPDATE routing.assignments SET released_at = $3
               WHERE tenant = $1 AND conversation_id = ANY($2::text[]) AND released_at IS NULL""",
            tenant, list(released), now)
    if items:
        await conn.execute(
            """INSERT INTO routing.assignments (tenant, conversation_id, queue, agent_id, queued_at, assigned_at)
               SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::timestamptz[])""",
            tenant, [c.conversation_id for c, _ in items], [c.queue or "general" for c, _ in items],
            [a.agent_id for _, a in items], [c.queued_at or c.opened_at for c, _ in items],
            [c.assigned_at for c, _ in items])


async def add_timers(conn: asyncpg.Connection, tenant: str, timers: Sequence[Timer]) -> None:
    """Schedule timers; a timer id already scheduled (or fired) is kept as it is."""
    if not timers:
        return
    await conn.execute(
        """INSERT INTO routing.timers (tenant, timer_id, conversation_id, kind, due_at, payload)
           SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::jsonb[])
           ON CONFLICT DO NOTHING""",
        tenant, [t.timer_id for t in timers], [t.conversation_id for t in timers], [t.kind for t in timers],
        [t.due_at for t in timers], [orjson.dumps(t.payload).decode() for t in timers])


async def due_tenants(conn: asyncpg.Connection, now: datetime) -> list[str]:
    """Tenants with a due timer or a waiting conversation (requirements relax and continuity waits end with time)."""
    rows = await conn.fetch(
        """SELECT tenant FROM routing.timers WHERE fired_at IS NULL AND due_at <= $1
           UNION SELECT tenant FROM routing.conversations WHERE status = 'queued'""", now)
    return sorted(r["tenant"] for r in rows)


async def take_due_timers(conn: asyncpg.Connection, tenant: str, now: datetime, limit: int = 5000) -> list[Timer]:
    """Due timers of ``tenant``, marked fired in the caller's transaction: they fire exactly once when it commits."""
    rows = await conn.fetch(
        """UPDATE routing.timers SET fired_at = $2
           WHERE (tenant, timer_id) IN (SELECT tenant, timer_id FROM routing.timers
                                        WHERE tenant = $1 AND fired_at IS NULL AND due_at <= $2
                                        ORDER BY due_at LIMIT $3 FOR UPDATE SKIP LOCKED)
           RETURNING timer_id, conversation_id, kind, due_at, payload""", tenant, now, limit)
    timers = [Timer(r["timer_id"], r["conversation_id"], r["kind"], r["due_at"], orjson.loads(r["payload"])) for r in rows]
    return sorted(timers, key=lambda t: (t.due_at, t.timer_id))


async def rename_customer(conn: asyncpg.Connection, tenant: str, merged_ids: Sequence[str], survivor: str) -> None:
    """Conversations and continuity follow a customer merge."""
    await conn.execute(
        """UPDATE routing.conversations SET customer_id = $3,
               state = jsonb_set(state, '{customer_id}', to_jsonb($3::text))
           WHERE tenant = $1 AND customer_id = ANY($2::text[])""", tenant, list(merged_ids), survivor)
    await conn.execute(
        """INSERT INTO routing.last_agents (tenant, customer_id, agent_id, at)
           SELECT tenant, $3, agent_id, at FROM routing.last_agents
           WHERE tenant = $1 AND customer_id = ANY($2::text[]) ORDER BY at DESC LIMIT 1
           ON CONFLICT (tenant, customer_id) DO UPDATE SET agent_id = EXCLUDED.agent_id, at = EXCLUDED.at
           WHERE routing.last_agents.at < EXCLUDED.at""", tenant, list(merged_ids), survivor)


# ---- reads for the HTTP API ------------------------------------------------------------------------------------

async def agent_conversations(conn: asyncpg.Connection, tenant: str, agent_id: str) -> list[Conversation]:
    rows = await conn.fetch(
        """SELECT state FROM routing.conversations WHERE tenant = $1 AND status IN ('offered', 'assigned', 'waiting')
           AND state->>'agent_id' = $2 ORDER BY updated_at""", tenant, agent_id)
    return [Conversation.from_state(orjson.loads(r["state"])) for r in rows]


async def open_overview(conn: asyncpg.Connection, tenant: str) -> list[Conversation]:
    rows = await conn.fetch(
        "SELECT state FROM routing.conversations WHERE tenant = $1 AND status <> 'resolved'", tenant)
    return [Conversation.from_state(orjson.loads(r["state"])) for r in rows]


async def agent_count(conn: asyncpg.Connection, tenant: str) -> dict[str, int]:
    rows = await conn.fetch("SELECT presence, count(*) AS n FROM routing.agents WHERE tenant = $1 GROUP BY presence",
                            tenant)
    return {r["presence"]: r["n"] for r in rows}
