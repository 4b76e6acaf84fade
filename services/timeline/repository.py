"""SQL of the timeline service. Functions take a connection inside the caller's transaction; never commit."""

from __future__ import annotations

from datetime import datetime

import asyncpg
import orjson

from shared.db import columns

EntryRow = tuple[str, str, str, datetime, str, str, str, str, str, list[str]]
# tenant, entry_id, customer_id, occurred_at, kind, channel, source, event_id, payload, identifiers[, sealkey]


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


Whereabouts = tuple[str, bool, list[tuple[set[str], str]]]  # survivor, erased, splits (detached, new customer)


async def whereabouts(conn: asyncpg.Connection, ids: set[tuple[str, str]]) -> dict[tuple[str, str], Whereabouts]:
    """In one round trip, (tenant, customer id) → (its survivor: itself unless merged away; whether the survivor
    was erased; the survivor's splits as (detached identifiers, new customer), the latest first). Each key is an
    index probe of each table (fenced subqueries, as in identity's look-ups)."""
    if not ids:
        return {}
    rows = await conn.fetch(
        "SELECT k.tenant, k.customer_id, s.survivor,"
        " EXISTS (SELECT 1 FROM timeline.erased e WHERE e.tenant = k.tenant AND e.customer_id = s.survivor) AS erased,"
        " (SELECT jsonb_agg(jsonb_build_array(p.identifiers, p.new_customer_id) ORDER BY p.seq DESC)"
        "   FROM timeline.splits p WHERE p.tenant = k.tenant AND p.customer_id = s.survivor) AS splits"
        " FROM unnest($1::text[], $2::text[]) AS k(tenant, customer_id)"
        " CROSS JOIN LATERAL (SELECT COALESCE((SELECT a.survivor_id FROM timeline.aliases a"
        "   WHERE a.tenant = k.tenant AND a.merged_id = k.customer_id), k.customer_id) AS survivor OFFSET 0) AS s",
        *columns(sorted(ids)),
    )
    return {(r["tenant"], r["customer_id"]): (r["survivor"], r["erased"],
                                              [(set(i), c) for i, c in orjson.loads(r["splits"] or "[]")])
            for r in rows}


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
    """Move to ``new_customer`` the entries that only ``detached`` identifiers ("type:value") link to. When the
    new customer is a merged-away id coming back (an undone merge), it stops being an alias."""
    await conn.execute("DELETE FROM timeline.aliases WHERE tenant = $1 AND merged_id = $2", tenant, new_customer)
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
    """Delete everything held for these customer ids, with the consent and preferences kept under their ids and
    identifiers."""
    subjects = [f"id:{c}" for c in ids] + [f"{r['id_type']}:{r['value']}" for r in await conn.fetch(
        "SELECT id_type, value FROM timeline.identifiers WHERE tenant = $1 AND customer_id = ANY($2::text[])", tenant, ids)]
    for table in ("consents", "preferences"):
        await conn.execute(f"DELETE FROM timeline.{table} WHERE tenant = $1 AND subject = ANY($2::text[])", tenant, subjects)
    for table in ("entries", "customers", "identifiers"):
        await conn.execute(f"DELETE FROM timeline.{table} WHERE tenant = $1 AND customer_id = ANY($2::text[])", tenant, ids)
    await conn.execute("DELETE FROM timeline.aliases WHERE tenant = $1 AND (merged_id = ANY($2::text[])"
                       " OR survivor_id = ANY($2::text[]))", tenant, ids)
    await conn.execute("INSERT INTO timeline.erased (tenant, customer_id) SELECT $1, unnest($2::text[])"
                       " ON CONFLICT DO NOTHING", tenant, ids)


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
    """Insert entries not stored yet, each with its row in the outbox (until :func:`mark_published`); returns
    the ones inserted now (tenant, entry_id, customer_id, occurred_at, channel, kind)."""
    if not rows:
        return []
    return await conn.fetch(
        "WITH inserted AS (INSERT INTO timeline.entries (tenant, entry_id, customer_id, occurred_at, kind, channel,"
        " source, event_id, payload, identifiers, sealkey)"
        " SELECT t, e, c, o, k, ch, s, ev, p, string_to_array(i, chr(31)), sk FROM unnest($1::text[], $2::text[],"
        " $3::text[], $4::timestamptz[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[],"
        " $11::text[]) AS u(t, e, c, o, k, ch, s, ev, p, i, sk)"
        " ON CONFLICT DO NOTHING RETURNING tenant, entry_id, customer_id, occurred_at, channel, kind),"
        " boxed AS (INSERT INTO timeline.outbox (tenant, entry_id) SELECT tenant, entry_id FROM inserted)"
        " SELECT tenant, entry_id, customer_id, occurred_at, channel, kind FROM inserted",
        *columns([(*r[:9], "\x1f".join(r[9]), r[10] if len(r) > 10 else None) for r in rows]),
    )


async def fold_into_profiles(conn: asyncpg.Connection,
                             contacts: list[tuple[str, str, datetime, datetime, int, list[str]]],
                             identifiers: list[tuple[str, str, str, str]]) -> None:
    """In one statement (one round trip): fold per-customer aggregates of new contact entries into the profiles
    (one row per customer per call: a statement may not update a row twice), and point each identifier
    (tenant, type, value, customer) at its customer. The two write different tables, so neither needs to see the
    other's rows."""
    if not contacts and not identifiers:
        return
    await conn.execute(
        "WITH profiles AS (INSERT INTO timeline.customers (tenant, customer_id, first_contact_at, last_contact_at,"
        " entry_count, channels)"
        " SELECT t, c, f, l, n, string_to_array(ch, chr(31)) FROM unnest($1::text[], $2::text[], $3::timestamptz[],"
        " $4::timestamptz[], $5::bigint[], $6::text[]) AS u(t, c, f, l, n, ch)"
        " ON CONFLICT (tenant, customer_id) DO UPDATE SET"
        " first_contact_at = least(timeline.customers.first_contact_at, excluded.first_contact_at),"
        " last_contact_at = greatest(timeline.customers.last_contact_at, excluded.last_contact_at),"
        " entry_count = timeline.customers.entry_count + excluded.entry_count,"
        " channels = ARRAY(SELECT DISTINCT unnest(timeline.customers.channels || excluded.channels) ORDER BY 1)),"
        " identifiers AS (INSERT INTO timeline.identifiers (tenant, id_type, value, customer_id)"
        " SELECT * FROM unnest($7::text[], $8::text[], $9::text[], $10::text[])"
        " ON CONFLICT (tenant, id_type, value) DO UPDATE SET customer_id = excluded.customer_id"
        " WHERE timeline.identifiers.customer_id <> excluded.customer_id)"
        " SELECT 1",
        *columns([(*r[:5], "\x1f".join(r[5])) for r in sorted(contacts)], width=6),  # one lock order across batches
        *columns(sorted(identifiers), width=4),
    )


async def unpublished_entries(conn: asyncpg.Connection, keys: list[tuple[str, str]]) -> list[asyncpg.Record]:
    """Those of these entries still in the outbox, in timeline order."""
    if not keys:
        return []
    return await conn.fetch(
        "SELECT e.tenant, e.entry_id, e.customer_id, e.payload, e.sealkey"
        " FROM unnest($1::text[], $2::text[]) AS k(tenant, entry_id)"
        " JOIN timeline.outbox o USING (tenant, entry_id) JOIN timeline.entries e USING (tenant, entry_id)"
        " ORDER BY e.occurred_at, e.seq",
        *columns(keys),
    )


async def mark_published(conn: asyncpg.Connection, keys: list[tuple[str, str]]) -> None:
    """Take these entries out of the outbox (Kafka acknowledged them, or they are not published at all)."""
    if keys:
        await conn.execute(
            "DELETE FROM timeline.outbox o USING unnest($1::text[], $2::text[]) AS k(tenant, entry_id)"
            " WHERE o.tenant = k.tenant AND o.entry_id = k.entry_id",
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


# A page of one customer's entries; ``{customer}`` is $2 or an expression naming the customer. Parameters:
# $1 tenant, $2 customer id, $3/$4 cursor (occurred_at, seq), $5 channels, $6/$7 since/until, $8 limit, $9 kinds.
_PAGE = (
    "SELECT entry_id, occurred_at, seq, payload, customer_id FROM timeline.entries"
    " WHERE tenant = $1 AND customer_id = {customer}"
    " AND ($3::timestamptz IS NULL OR (occurred_at, seq) < ($3, $4::bigint))"
    " AND ($5::text[] IS NULL OR channel = ANY($5))"
    " AND ($6::timestamptz IS NULL OR occurred_at >= $6) AND ($7::timestamptz IS NULL OR occurred_at < $7)"
    " AND ($9::text[] IS NULL OR split_part(kind, '.', 1) = ANY($9))"
    " ORDER BY occurred_at DESC, seq DESC LIMIT $8"
)
_PAGE_OF_CUSTOMER = _PAGE.format(customer="$2")
_PAGE_OF_SURVIVOR = _PAGE.format(
    customer="(SELECT COALESCE(min(survivor_id), $2) FROM timeline.aliases WHERE tenant = $1 AND merged_id = $2)")


def _page_args(tenant: str, customer_id: str, limit: int, before: tuple[datetime, int] | None,
               channels: list[str] | None, since: datetime | None, until: datetime | None,
               kinds: list[str] | None) -> tuple:
    return (tenant, customer_id, before[0] if before else None, before[1] if before else None,
            channels, since, until, limit, kinds)


async def page(conn: asyncpg.Connection, tenant: str, customer_id: str, limit: int, before: tuple[datetime, int] | None,
               channels: list[str] | None, since: datetime | None, until: datetime | None,
               kinds: list[str] | None = None) -> list[asyncpg.Record]:
    """Newest first, keyset-paginated on (occurred_at, seq). ``kinds`` are kind groups: ``routing`` matches
    every ``routing.<event>`` kind."""
    return await conn.fetch(_PAGE_OF_CUSTOMER, *_page_args(tenant, customer_id, limit, before, channels, since, until,
                                                          kinds))


async def timeline_page(conn: asyncpg.Connection, tenant: str, customer_id: str, limit: int,
                        before: tuple[datetime, int] | None, channels: list[str] | None, since: datetime | None,
                        until: datetime | None, kinds: list[str] | None = None) -> tuple[str, list[asyncpg.Record]]:
    """The survivor of ``customer_id`` and its :func:`page`, in one statement when the page is not empty (the
    HTTP API's hot path: one round trip). The survivor is looked up in a scalar subquery, whose result
    PostgreSQL passes to the index scan as a parameter; a ``COALESCE`` around it in the outer query is not
    leakproof, so under row-level security the planner would scan the table instead."""
    rows = await conn.fetch(_PAGE_OF_SURVIVOR, *_page_args(tenant, customer_id, limit, before, channels, since, until,
                                                          kinds))
    if rows:
        return rows[0]["customer_id"], rows
    survivor = (await canonical_ids(conn, {(tenant, customer_id)})).get((tenant, customer_id), customer_id)
    return survivor, rows


NOTIFY_CHANNEL = "touchpoint_timeline"


async def notify_changed(conn: asyncpg.Connection, customers: set[tuple[str, str]]) -> None:
    """Tell listening consoles (``LISTEN touchpoint_timeline``) that these customers changed; delivered at commit,
    not at all on rollback. Payload: ``<tenant> <customer id>``."""
    if customers:
        await conn.execute(f"SELECT pg_notify('{NOTIFY_CHANNEL}', x) FROM unnest($1::text[]) x",
                           sorted(f"{t} {c}" for t, c in customers))


async def customers_of_subjects(conn: asyncpg.Connection, subjects: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """The customers (canonical ids) that consent subjects (``id:<customer>`` or ``type:value``) belong to."""
    if not subjects:
        return set()
    ids = {(t, s[3:]) for t, s in subjects if s.startswith("id:")}
    idents = sorted((t, *s.split(":", 1)) for t, s in subjects if not s.startswith("id:"))
    if idents:
        rows = await conn.fetch(
            "SELECT i.tenant, i.customer_id FROM timeline.identifiers i"
            " JOIN unnest($1::text[], $2::text[], $3::text[]) AS k(tenant, id_type, value) USING (tenant, id_type, value)",
            *columns(idents))
        ids |= {(r["tenant"], r["customer_id"]) for r in rows}
    aliases = await canonical_ids(conn, ids)
    return {(t, aliases.get((t, c), c)) for t, c in ids}


async def upsert_consents(conn: asyncpg.Connection, rows: list[tuple]) -> None:
    """Rows (tenant, subject, purpose, channel, granted, consent_id, wording_version, source, occurred_at,
    expires_at); a stored record is replaced only by a newer one (a withdrawal wins a tie)."""
    if not rows:
        return
    await conn.execute(
        "INSERT INTO timeline.consents AS c (tenant, subject, purpose, channel, granted, consent_id, wording_version,"
        " source, occurred_at, expires_at)"
        " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::boolean[], $6::text[], $7::text[],"
        " $8::text[], $9::timestamptz[], $10::timestamptz[])"
        " ON CONFLICT (tenant, subject, purpose, channel) DO UPDATE SET granted = excluded.granted,"
        " consent_id = excluded.consent_id, wording_version = excluded.wording_version, source = excluded.source,"
        " occurred_at = excluded.occurred_at, expires_at = excluded.expires_at"
        " WHERE (excluded.occurred_at, NOT excluded.granted) > (c.occurred_at, NOT c.granted)",
        *columns(sorted(rows, key=lambda r: r[:4])),
    )


async def preferences_for_update(conn: asyncpg.Connection, keys: list[tuple[str, str]]) -> dict[tuple[str, str], dict]:
    rows = await conn.fetch(
        "SELECT p.tenant, p.subject, p.fields FROM timeline.preferences p"
        " JOIN unnest($1::text[], $2::text[]) AS k(tenant, subject) USING (tenant, subject) FOR UPDATE OF p",
        *columns(keys))
    return {(r["tenant"], r["subject"]): orjson.loads(r["fields"]) for r in rows}


async def upsert_preferences(conn: asyncpg.Connection, prefs: dict[tuple[str, str], dict]) -> None:
    rows = [(t, s, orjson.dumps(f).decode(), (f.get("display_name") or {}).get("value"))
            for (t, s), f in sorted(prefs.items())]
    await conn.execute(
        "INSERT INTO timeline.preferences (tenant, subject, fields, display_name)"
        " SELECT t, s, f::jsonb, n FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS k(t, s, f, n)"
        " ON CONFLICT (tenant, subject) DO UPDATE SET fields = excluded.fields, display_name = excluded.display_name",
        *columns(rows))


async def consents_of(conn: asyncpg.Connection, tenant: str, subjects: list[str]) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT subject, purpose, channel, granted, consent_id, wording_version, source, occurred_at, expires_at"
        " FROM timeline.consents WHERE tenant = $1 AND subject = ANY($2::text[])", tenant, subjects)


async def preferences_of(conn: asyncpg.Connection, tenant: str, subjects: list[str]) -> list[dict]:
    rows = await conn.fetch("SELECT fields FROM timeline.preferences WHERE tenant = $1 AND subject = ANY($2::text[])",
                            tenant, subjects)
    return [orjson.loads(r["fields"]) for r in rows]


async def identifier_channels(conn: asyncpg.Connection, tenant: str, customer_id: str) -> dict[str, list[str]]:
    """Each identifier (``type:value``) of the customer's interactions → the channels it was used on."""
    rows = await conn.fetch(
        "SELECT i, array_agg(DISTINCT channel ORDER BY channel) AS channels"
        " FROM timeline.entries, unnest(identifiers) i WHERE tenant = $1 AND customer_id = $2 GROUP BY i",
        tenant, customer_id)
    return {r["i"]: list(r["channels"]) for r in rows}


async def entries_of_kind(conn: asyncpg.Connection, tenant: str, customer_id: str, kind_prefix: str,
                          limit: int) -> list[asyncpg.Record]:
    """The customer's newest entries whose kind starts with ``kind_prefix``, newest first."""
    return await conn.fetch(
        "SELECT kind, occurred_at, payload FROM timeline.entries WHERE tenant = $1 AND customer_id = $2"
        " AND kind LIKE $3 || '%' ORDER BY occurred_at DESC, seq DESC LIMIT $4",
        tenant, customer_id, kind_prefix, limit)


async def search(conn: asyncpg.Connection, tenant: str, values: list[str], name_prefix: str | None,
                 limit: int) -> list[asyncpg.Record]:
    """Customers holding an identifier with one of ``values`` (any type), or whose name starts with
    ``name_prefix`` (case-insensitive); canonical ids, with the matching identifier or name."""
    return await conn.fetch(
        "SELECT DISTINCT ON (customer_id) customer_id, matched FROM ("
        "  SELECT COALESCE(a.survivor_id, i.customer_id) AS customer_id, i.id_type || ':' || i.value AS matched"
        "  FROM timeline.identifiers i LEFT JOIN timeline.aliases a ON a.tenant = i.tenant AND a.merged_id = i.customer_id"
        "  WHERE i.tenant = $1 AND i.value = ANY($2::text[])"
        "  UNION ALL"
        "  SELECT COALESCE(a.survivor_id, x.customer_id), 'name:' || p.display_name"
        "  FROM timeline.preferences p"
        "  JOIN LATERAL (SELECT substr(p.subject, 4) AS customer_id WHERE p.subject LIKE 'id:%'"
        "    UNION SELECT i.customer_id FROM timeline.identifiers i"
        "    WHERE i.tenant = p.tenant AND i.id_type || ':' || i.value = p.subject) x ON true"
        "  LEFT JOIN timeline.aliases a ON a.tenant = p.tenant AND a.merged_id = x.customer_id"
        "  WHERE $3::text IS NOT NULL AND p.tenant = $1 AND p.display_name IS NOT NULL"
        "  AND lower(p.display_name) LIKE $3 || '%'"
        ") m ORDER BY customer_id, matched LIMIT $4",
        tenant, values, name_prefix.lower().replace("%", "").replace("_", "") if name_prefix else None, limit)


async def entry_ids_after(conn: asyncpg.Connection, tenant: str, customer_id: str, seq: int) -> list[str]:
    """Ids of the customer's entries with ``seq`` above the given one (ids only: cheap to read again)."""
    rows = await conn.fetch("SELECT entry_id FROM timeline.entries WHERE tenant = $1 AND customer_id = $2 AND seq > $3",
                            tenant, customer_id, seq)
    return [r["entry_id"] for r in rows]


async def entries_by_id(conn: asyncpg.Connection, tenant: str, entry_ids: list[str]) -> list[asyncpg.Record]:
    """These entries, in ``seq`` order."""
    return await conn.fetch("SELECT entry_id, payload FROM timeline.entries WHERE tenant = $1"
                            " AND entry_id = ANY($2::text[]) ORDER BY seq", tenant, entry_ids)


async def last_seq(conn: asyncpg.Connection) -> int:
    """The last ``seq`` handed out (possibly to a transaction still running)."""
    return await conn.fetchval("SELECT last_value FROM timeline.entries_seq_seq")
