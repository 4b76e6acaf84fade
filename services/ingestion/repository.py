"""SQL of the ingestion service. Functions take a connection; they never commit."""

from __future__ import annotations

import asyncpg

from shared.db import columns as _columns

Key = tuple[str, str, str]  # tenant, source, event id


async def claim(conn: asyncpg.Connection, keys: list[Key]) -> set[Key]:
    """Record these events as seen; returns those not seen before. Run in the transaction that commits once the
    claimed events are acknowledged by Kafka: a concurrent claim of the same event waits for that transaction,
    and a failed relay rolls the claim back."""
    if not keys:
        return set()
    rows = await conn.fetch(
        "INSERT INTO ingestion.seen_events (tenant, source, event_id)"
        " SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) ON CONFLICT DO NOTHING"
        " RETURNING tenant, source, event_id",
        *_columns(keys),
    )
    return {(r["tenant"], r["source"], r["event_id"]) for r in rows}
