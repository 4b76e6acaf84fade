"""SQL of the timeline service. Functions take a connection inside the caller's transaction; never commit."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from shared.db import columns

EntryRow = tuple[str, str, str, datetime, str, str, str, str, str, list[str]]
# tenant, entry_id, customer_id, occurred_at, kind, channel, source, event_id, payload, identifiers


async def lock_tenants(conn: asyncpg.Connection, tenants: set[str], exclusive: bool) -> None:
    """Hold each tenant's timeline lock until the transaction ends, in sorted order (no deadlock between batches).

    Storing entries takes it shared, applying an identity change exclusive: a merge then never runs alongside
    a transaction that is storing an entry under an id the merge is about to re-key."""
    lock = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
    for tenant in sorted(tenants):
        await conn.execute(f"SELECT {lock}(hashtextextended('touchpoint.timeline/' || $1, 0))", tenant)


async def canonical_ids(conn: asyncpg.Connection, ids: set[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """(tenant, customer id) → survivor, for those ids that were merged away."""
    if not ids:
        return {}
    rows = await conn.fetch(
        "SELECT a.tenant, a.merged_id, a.survivor_id FROM timeline.aliases a"
        " JOIN unnest($1::text[], $2::text[]) AS k(tenant, merged_id) USING (tenant, merged_id)",
        *columns(sorted(ids)),
    )
    return {(r["tenant"], r["merged_id"]): r["survivor_id"] for r in rows}


async def claim_merge(conn: asyncpg.Connection, tenant: str, merge_id: str) -> bool:
    """True the first time an identity change (merge, split, erasure) is applied; False for a redelivery."""
    row = await conn.fetchrow(
        "INSERT INTO timeline.applied_merges (tenant, merge_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING 1",
        tenant, merge_id,
    )
    return row is not None


async def apply_merge(conn: asyncpg.Connection, tenant: str, survivor: str, merged: list[str]) -> None:
    """Re-key everything held for ``merged`` to ``survivor`` (already canonical) and refold its profile."""
    await conn.execute(
        "INSERT INTO timeline.aliases (tenant, merged_id, survivor_id) SELECT $1, m, $2 FROM unnest($3::text[]) m"
        " ON CONFLICT (tenant, merged_id) DO UPDATE SET survivor_id = excluded.survivor_id",
        tenant, survivor, merged,
    )
    await conn.execute(
        "UPDATE timeline.aliases SET survivor_id = $2 WHERE tenant = $1 AND survivor_id = ANY($3::text[])",
        tenant, survivor, merged,
    )
    await conn.execute(
        "UPDATE timeline.entries SET customer_id = $2 WHERE tenant = $1 AND customer_id = ANY($3::text[])",
        tenant, survivor, merged,
    )
    await conn.execute(
        "UPDATE timeline.identifiers SET customer_id = $2 WHERE tenant = $1 AND customer_id = ANY($3::text[])",
        tenant, survivor, merged,
    )
    await conn.execute(
        "DELETE FROM timeline.customers WHERE tenant = $1 AND customer_id = ANY($2::text[])", tenant, merged
    )
    await refold_profile(conn, tenant, survivor)


async def apply_split(conn: asyncpg.Connection, tenant: str, split_id: str, customer: str, new_customer: str,
                      detached: list[str]) -> int:
    """Move to ``new_customer`` the entries that only ``detached`` identifiers ("type:value") link to."""
    await conn.execute(
        "INSERT INTO timeline.splits (tenant, split_id, customer_id, new_customer_id, identifiers)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING", tenant, split_id, customer, new_customer, detached)
    moved = await conn.execute(
        "UPDATE timeline.entries SET customer_id = $3 WHERE tenant = $1 AND customer_id = $2"
        " AND cardinality(identifiers) > 0 AND identifiers <@ $4::text[]",
        tenant, customer, new_customer, detached,
    )
    await conn.execute(
        "UPDATE timeline.identifiers i SET customer_id = $3 FROM unnest($4::text[]) AS d(pair)"
        " WHERE i.tenant = $1 AND i.customer_id = $2 AND i.id_type || ':' || i.value = d.pair",
        tenant, customer, new_customer, detached,
    )
    for who in (customer, new_customer):
        await conn.execute("DELETE FROM timeline.customers WHERE tenant = $1 AND customer_id = $2", tenant, who)
        await refold_profile(conn, tenant, who)
    return int(moved.split()[-1])


async def erase(conn: asyncpg.Connection, tenant: str, ids: list[str]) -> None:
    """Delete everything held for these customer ids."""
    for table in ("entries", "customers", "identifiers"):
        await conn.execute(f"DELETE FROM timeline.{table} WHERE tenant = $1 AND customer_id = ANY($2::text[])", tenant, ids)
    await conn.execute("DELETE FROM timeline.aliases WHERE tenant = $1 AND (merged_id = ANY($2::text[])"
                       " OR survivor_id = ANY($2::text[]))", tenant, ids)
    await conn.execute("INSERT INTO timeline.erased (tenant, customer_id) SELECT $1, unnest($2::text[])"
                       " ON CONFLICT DO NOTHING", tenant, ids)


async def splits_of(conn: asyncpg.Connection, ids: set[tuple[str, str]]) -> dict[tuple[str, str], list[tuple[set[str], str]]]:
    """(tenant, customer) → [(detached identifiers, new customer)] for customers that were split."""
    if not ids:
        return {}
    rows = await conn.fetch(
        "SELECT s.tenant, s.customer_id, s.identifiers, s.new_customer_id FROM timeline.splits s"
        " JOIN unnest($1::text[], $2::text[]) AS k(tenant, customer_id) USING (tenant, customer_id)",
        *columns(sorted(ids)),
    )
    out: dict[tuple[str, str], list[tuple[set[str], str]]] = {}
    for r in rows:
        out.setdefault((r["tenant"], r["customer_id"]), []).append((set(r["identifiers"]), r["new_customer_id"]))
    return out


async def erased(conn: asyncpg.Connection, ids: set[tuple[str, str]]) -> set[tuple[str, str]]:
    if not ids:
        return set()
    rows = await conn.fetch(
        "SELECT e.tenant, e.customer_id FROM timeline.erased e"
        " JOIN unnest($1::text[], $2::text[]) AS k(tenant, customer_id) USING (tenant, customer_id)",
        *columns(sorted(ids)),
    )
    return {(r["tenant"], r["customer_id"]) for r in rows}


async def refold_profile(conn: asyncpg.Connection, tenant: str, customer: str) -> None:
    """Recompute a profile from its interaction entries (after a merge or split); other kinds are not contacts."""
    await conn.execute(
        "INSERT INTO timeline.customers (tenant, customer_id, first_contact_at, last_contact_at, entry_count, channels)"
        " SELECT tenant, customer_id, min(occurred_at), max(occurred_at), count(*), array_agg(DISTINCT channel)"
        " FROM timeline.entries WHERE tenant = $1 AND customer_id = $2 AND kind = 'interaction'"
        " GROUP BY tenant, customer_id"
        " ON CONFLICT (tenant, customer_id) DO UPDATE SET first_contact_at = excluded.first_contact_at,"
        " last_contact_at = excluded.last_contact_at, entry_count = excluded.entry_count, channels = excluded.channels",
        tenant, customer,
    )


async def insert_entries(conn: asyncpg.Connection, rows: list[EntryRow]) -> list[asyncpg.Record]:
    """Insert entries not stored yet; returns the ones inserted now (tenant, customer_id, occurred_at, channel,
    kind)."""
    if not rows:
        return []
    return await conn.fetch(
        "INSERT INTO timeline.entries (tenant, entry_id, customer_id, occurred_at, kind, channel, source, event_id,"
        " payload, identifiers)"
        " SELECT t, e, c, o, k, ch, s, ev, p, string_to_array(i, chr(31)) FROM unnest($1::text[], $2::text[],"
        " $3::text[], $4::timestamptz[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[])"
        " AS u(t, e, c, o, k, ch, s, ev, p, i)"
        " ON CONFLICT DO NOTHING RETURNING tenant, customer_id, occurred_at, channel, kind",
        *columns([(*r[:9], "\x1f".join(r[9])) for r in rows]),
    )


async def add_to_profiles(conn: asyncpg.Connection, rows: list[tuple[str, str, datetime, datetime, int, list[str]]]) -> None:
    """Fold per-customer aggregates of new entries into the profiles (one row per customer per call)."""
    if rows:
        await conn.executemany(
            "INSERT INTO timeline.customers (tenant, customer_id, first_contact_at, last_contact_at, entry_count, channels)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant, customer_id) DO UPDATE SET"
            " first_contact_at = least(timeline.customers.first_contact_at, excluded.first_contact_at),"
            " last_contact_at = greatest(timeline.customers.last_contact_at, excluded.last_contact_at),"
            " entry_count = timeline.customers.entry_count + excluded.entry_count,"
            " channels = ARRAY(SELECT DISTINCT unnest(timeline.customers.channels || excluded.channels) ORDER BY 1)",
            rows,
        )


async def upsert_identifiers(conn: asyncpg.Connection, rows: list[tuple[str, str, str, str]]) -> None:
    if rows:
        await conn.execute(
            "INSERT INTO timeline.identifiers (tenant, id_type, value, customer_id)"
            " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])"
            " ON CONFLICT (tenant, id_type, value) DO UPDATE SET customer_id = excluded.customer_id"
            " WHERE timeline.identifiers.customer_id <> excluded.customer_id",
            *columns(rows),
        )


async def unpublished_entries(conn: asyncpg.Connection, keys: list[tuple[str, str]]) -> list[asyncpg.Record]:
    if not keys:
        return []
    return await conn.fetch(
        "SELECT e.tenant, e.entry_id, e.customer_id, e.payload FROM timeline.entries e"
        " JOIN unnest($1::text[], $2::text[]) AS k(tenant, entry_id) USING (tenant, entry_id)"
        " WHERE NOT e.published ORDER BY e.occurred_at, e.seq",
        *columns(keys),
    )


async def mark_published(conn: asyncpg.Connection, keys: list[tuple[str, str]]) -> None:
    if keys:
        await conn.execute(
            "UPDATE timeline.entries e SET published = true"
            " FROM unnest($1::text[], $2::text[]) AS k(tenant, entry_id)"
            " WHERE e.tenant = k.tenant AND e.entry_id = k.entry_id",
            *columns(keys),
        )


async def profiles(conn: asyncpg.Connection, ids: list[tuple[str, str]]) -> list[asyncpg.Record]:
    if not ids:
        return []
    return await conn.fetch(
        "SELECT c.tenant, c.customer_id, c.first_contact_at, c.last_contact_at, c.entry_count, c.channels,"
        " COALESCE((SELECT array_agg(i.id_type || ':' || i.value ORDER BY i.id_type, i.value) FROM timeline.identifiers i"
        "   WHERE i.tenant = c.tenant AND i.customer_id = c.customer_id), '{}') AS identifiers,"
        " COALESCE((SELECT array_agg(a.merged_id ORDER BY a.merged_id) FROM timeline.aliases a"
        "   WHERE a.tenant = c.tenant AND a.survivor_id = c.customer_id), '{}') AS merged_ids"
        " FROM timeline.customers c JOIN unnest($1::text[], $2::text[]) AS k(tenant, customer_id) USING (tenant, customer_id)",
        *columns(ids),
    )


async def lookup(conn: asyncpg.Connection, tenant: str, id_type: str, value: str) -> str | None:
    return await conn.fetchval(
        "SELECT COALESCE(a.survivor_id, i.customer_id) FROM timeline.identifiers i"
        " LEFT JOIN timeline.aliases a ON a.tenant = i.tenant AND a.merged_id = i.customer_id"
        " WHERE i.tenant = $1 AND i.id_type = $2 AND i.value = $3",
        tenant, id_type, value,
    )


async def page(conn: asyncpg.Connection, tenant: str, customer_id: str, limit: int, before: tuple[datetime, int] | None,
               channels: list[str] | None, since: datetime | None, until: datetime | None) -> list[asyncpg.Record]:
    """Newest first, keyset-paginated on (occurred_at, seq)."""
    return await conn.fetch(
        "SELECT entry_id, occurred_at, seq, payload FROM timeline.entries"
        " WHERE tenant = $1 AND customer_id = $2"
        " AND ($3::timestamptz IS NULL OR (occurred_at, seq) < ($3, $4::bigint))"
        " AND ($5::text[] IS NULL OR channel = ANY($5))"
        " AND ($6::timestamptz IS NULL OR occurred_at >= $6) AND ($7::timestamptz IS NULL OR occurred_at < $7)"
        " ORDER BY occurred_at DESC, seq DESC LIMIT $8",
        tenant, customer_id, before[0] if before else None, before[1] if before else None,
        channels, since, until, limit,
    )
