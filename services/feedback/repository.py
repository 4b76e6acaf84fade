"""SQL of the feedback service. Functions take a connection inside the caller's unit of work and never commit."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Sequence

import asyncpg
import orjson

from shared import directory

SCHEMA = "feedback"
DIMENSIONS = {"channel": "channel", "team": "team", "agent": "agent_id", "product": "product", "survey": "survey_id"}
PERIODS = ("day", "week", "month", "quarter", "year")


def invitation_id(tenant: str, trigger: str, instance: str) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"touchpoint/feedback/{tenant}/{trigger}/{instance}")


async def insert_invitation(conn: asyncpg.Connection, tenant: str, row: dict[str, Any]) -> bool:
    """A new invitation; False when its trigger instance already has one (a redelivery or a repeat)."""
    return bool(await conn.fetchval(
        """INSERT INTO feedback.invitations (tenant, invitation_id, customer_id, survey_id, survey_version, trigger,
               trigger_instance, conversation_key, conversation_id, case_id, agent_id, team, channel, product,
               language, status, reason, due_at, resurvey_of, created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)
           ON CONFLICT DO NOTHING RETURNING true""",
        tenant, row["invitation_id"], row["customer_id"], row["survey_id"], row["survey_version"], row["trigger"],
        row["trigger_instance"], row.get("conversation_key"), row.get("conversation_id"), row.get("case_id"),
        row.get("agent_id"), row.get("team"), row.get("channel"), row.get("product"), row.get("language"),
        row["status"], row.get("reason"), row["due_at"], row.get("resurvey_of"), row["created_at"]))


async def past_invitations(conn: asyncpg.Connection, tenant: str, customer_id: str, since: datetime,
                           exclude: uuid.UUID | None = None) -> list[Any]:
    """The customer's invitations that went out or are about to (scheduled or invited) since ``since``."""
    return await conn.fetch(
        """SELECT invitation_id, survey_id, conversation_key, coalesce(invited_at, created_at) AS at, status
           FROM feedback.invitations WHERE tenant = $1 AND customer_id = $2 AND created_at >= $3
             AND status IN ('scheduled', 'invited', 'responded') AND invitation_id IS DISTINCT FROM $4""",
        tenant, customer_id, since, exclude)


async def claim_due(conn: asyncpg.Connection, now: datetime, limit: int) -> list[Any]:
    return await conn.fetch(
        """SELECT * FROM feedback.invitations WHERE status = 'scheduled' AND due_at <= $1
           ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED""", now, limit)


async def set_invitation(conn: asyncpg.Connection, tenant: str, invitation: uuid.UUID, status: str,
                         reason: str | None = None, invited_at: datetime | None = None,
                         expires_at: datetime | None = None) -> None:
    await conn.execute(
        """UPDATE feedback.invitations SET status = $3, reason = coalesce($4, reason),
               invited_at = coalesce($5, invited_at), expires_at = coalesce($6, expires_at)
           WHERE tenant = $1 AND invitation_id = $2""", tenant, invitation, status, reason, invited_at, expires_at)


async def invitation(conn: asyncpg.Connection, tenant: str, invitation: uuid.UUID, lock: bool = False) -> Any:
    return await conn.fetchrow(
        "SELECT * FROM feedback.invitations WHERE tenant = $1 AND invitation_id = $2" + (" FOR UPDATE" if lock else ""),
        tenant, invitation)


async def insert_responses(conn: asyncpg.Connection, tenant: str, rows: Sequence[dict[str, Any]]) -> set[str]:
    """Store responses; returns the ids that were new (a response id counts once)."""
    if not rows:
        return set()
    keys = ("response_id", "invitation_id", "customer_id", "survey_id", "source", "submitted_at", "metric", "score",
            "channel", "conversation_id", "case_id", "agent_id", "team", "product")
    inserted = await conn.fetch(
        """INSERT INTO feedback.responses (tenant, response_id, invitation_id, customer_id, survey_id, source,
               submitted_at, metric, score, channel, conversation_id, case_id, agent_id, team, product, answers)
           SELECT $1, * FROM unnest($2::text[], $3::uuid[], $4::text[], $5::text[], $6::text[], $7::timestamptz[],
                                    $8::text[], $9::int[], $10::text[], $11::text[], $12::text[], $13::text[],
                                    $14::text[], $15::text[], $16::jsonb[])
           ON CONFLICT DO NOTHING RETURNING response_id""",
        tenant, *[[r.get(k) for r in rows] for k in keys], [orjson.dumps(r["answers"]).decode() for r in rows])
    return {r["response_id"] for r in inserted}


async def insert_ratings(conn: asyncpg.Connection, tenant: str, rows: Sequence[tuple]) -> list[str]:
    """(rating id, product id, rating, customer id, occurred at); returns the products with new ratings."""
    if not rows:
        return []
    inserted = await conn.fetch(
        """INSERT INTO feedback.product_ratings (tenant, rating_id, product_id, rating, customer_id, occurred_at)
           SELECT $1, * FROM unnest($2::text[], $3::text[], $4::int[], $5::text[], $6::timestamptz[])
           ON CONFLICT DO NOTHING RETURNING product_id""",
        tenant, *[[r[i] for r in rows] for i in range(5)])
    return sorted({r["product_id"] for r in inserted})


async def product_averages(conn: asyncpg.Connection, tenant: str, products: Sequence[str]) -> list[Any]:
    return await conn.fetch(
        """SELECT r.product_id, avg(r.rating)::float AS average, count(*) AS n, a.below
           FROM feedback.product_ratings r
           LEFT JOIN feedback.product_alerts a ON a.tenant = r.tenant AND a.product_id = r.product_id
           WHERE r.tenant = $1 AND r.product_id = ANY($2::text[]) GROUP BY r.product_id, a.below""",
        tenant, list(products))


async def set_product_alert(conn: asyncpg.Connection, tenant: str, product: str, below: bool, average: float,
                            at: datetime) -> None:
    await conn.execute(
        """INSERT INTO feedback.product_alerts (tenant, product_id, below, average, at) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (tenant, product_id) DO UPDATE SET below = $3, average = $4, at = $5""",
        tenant, product, below, average, at)


async def open_loop(conn: asyncpg.Connection, tenant: str, response_id: str, conversation: str, customer_id: str,
                    survey_id: str, team: str | None, opened_at: datetime, due_at: datetime) -> bool:
    return bool(await conn.fetchval(
        """INSERT INTO feedback.loops (tenant, response_id, follow_up_conversation_id, customer_id, survey_id, team,
               opened_at, due_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING RETURNING true""",
        tenant, response_id, conversation, customer_id, survey_id, team, opened_at, due_at))


async def close_loop(conn: asyncpg.Connection, tenant: str, conversation: str, at: datetime) -> Any:
    """The loop of this follow-up conversation, closed now; None when there is none or it was closed before."""
    return await conn.fetchrow(
        """UPDATE feedback.loops SET closed_at = $3 WHERE tenant = $1 AND follow_up_conversation_id = $2
             AND closed_at IS NULL RETURNING *""", tenant, conversation, at)


async def set_agent_team(conn: asyncpg.Connection, tenant: str, agent_id: str, team: str | None) -> None:
    await conn.execute(
        """INSERT INTO feedback.agents (tenant, agent_id, team) VALUES ($1, $2, $3)
           ON CONFLICT (tenant, agent_id) DO UPDATE SET team = EXCLUDED.team""", tenant, agent_id, team)


async def team_of(conn: asyncpg.Connection, tenant: str, agent_id: str | None) -> str | None:
    if not agent_id:
        return None
    return await conn.fetchval("SELECT team FROM feedback.agents WHERE tenant = $1 AND agent_id = $2", tenant, agent_id)


async def rename_customer(conn: asyncpg.Connection, tenant: str, merged_ids: Sequence[str], survivor: str) -> None:
    await directory.record_merge(conn, SCHEMA, tenant, merged_ids, survivor)
    for table in ("invitations", "responses", "loops", "product_ratings"):
        await conn.execute(f"UPDATE feedback.{table} SET customer_id = $3 WHERE tenant = $1 AND customer_id = ANY($2::text[])",
                           tenant, list(merged_ids), survivor)


async def score_counts(conn: asyncpg.Connection, tenant: str, metric: str, by: str | None, period: str | None,
                       since: datetime | None, until: datetime | None) -> list[Any]:
    """(key, period start, score, count) over the responses whose primary metric is ``metric``: the exact
    aggregate every estimate is computed from (the score scales are small, so this is one row per score)."""
    key = f"coalesce({DIMENSIONS[by]}, '(none)')" if by else "''"
    # Periods are UTC days, weeks (from Monday) and months, whatever the database's TimeZone setting.
    bucket = f"date_trunc('{period}', submitted_at, 'UTC')" if period else "NULL::timestamptz"
    return await conn.fetch(
        f"""SELECT {key} AS key, {bucket} AS period, score, count(*) AS n FROM feedback.responses
            WHERE tenant = $1 AND metric = $2 AND ($3::timestamptz IS NULL OR submitted_at >= $3)
              AND ($4::timestamptz IS NULL OR submitted_at < $4)
            GROUP BY 1, 2, 3 ORDER BY 1, 2, 3""", tenant, metric, since, until)


async def tenants_with_responses(conn: asyncpg.Connection) -> list[str]:
    return [r["tenant"] for r in await conn.fetch("SELECT DISTINCT tenant FROM feedback.responses")]


async def loops_summary(conn: asyncpg.Connection, tenant: str, now: datetime) -> Any:
    """Follow-ups opened, closed and overdue at ``now`` (open past their due time), mean and median time to close."""
    return await conn.fetchrow(
        """SELECT count(*) AS opened, count(closed_at) AS closed,
                  count(*) FILTER (WHERE closed_at IS NULL AND due_at < $2) AS overdue,
                  avg(extract(epoch FROM closed_at - opened_at)) AS mean_close_s,
                  percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM closed_at - opened_at)) AS median_close_s
           FROM feedback.loops WHERE tenant = $1""", tenant, now)
