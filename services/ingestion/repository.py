"""SQL of the ingestion service. Functions take a connection; they never commit."""

from __future__ import annotations

import asyncpg

from shared.db import columns as _columns

Key = tuple[str, str, str]  # tenant, source, event id


async def already_seen(conn: asyncpg.Connection, keys: list[Key]) -> set[Key]:
    if not keys:
        return set()
    rows = await conn.fetch(
        # One primary-key probe per key (OFFSET 0 keeps the subquery from being planned as a join, which the
        # planner ran as a scan of the whole table, row-level security filter included, per batch).
        "SELECT k.tenant, k.source, k.event_id FROM unnest($1::text[], $2::text[], $3::text[]) AS k(tenant, source, event_id)"
        " WHERE EXISTS (SELECT 1 FROM ingestion.seen_events s"
        "               WHERE s.tenant = k.tenant AND s.source = k.source AND s.event_id = k.event_id OFFSET 0)",
        *_columns(keys),
    )
    return {(r["tenant"], r["source"], r["event_id"]) for r in rows}


async def mark_seen(conn: asyncpg.Connection, keys: list[Key]) -> None:
    if keys:
        await conn.execute(
            "INSERT INTO ingestion.seen_events (tenant, source, event_id)"
            " SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) ON CONFLICT DO NOTHING",
            *_columns(keys),
        )
