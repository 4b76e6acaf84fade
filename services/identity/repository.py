"""SQL of the identity service. Functions take a connection inside the caller's transaction; never commit.

Concurrency (several identity instances in one consumer group): a batch first takes transaction-scoped
advisory locks on every identifier it carries (sorted, so two batches cannot deadlock on them), which
serialises "is this identifier new?" decisions; then it locks the rows of every customer those identifiers
resolve to (``FOR UPDATE``, sorted), so no other batch can merge them away underneath it. Rare deadlocks
between customer locks are detected by PostgreSQL and retried by the caller.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Iterable

import asyncpg
import orjson

from services.identity.fuzzy import StoredProfile, block_keys
from services.identity.resolver import Age, EventKey, IdKey, Merge, Profile, Refusal, Review
from shared.db import columns as _columns

OUTBOX_PAGE = 1000  # merges (or changes) published per read of an outbox


# Look-ups of a batch's keys go row by row through the primary keys: each LATERAL subquery carries ``OFFSET 0``,
# which keeps PostgreSQL from pulling it up into a join it is free to plan. Pulled up, the planner trusted
# estimates that lag far behind a fast-growing table (no statistics yet, and the row-level security filter then
# estimated at 1 % of the rows) and joined customers by tenant alone: a scan of every customer per key, 0.2-2 s per
# batch. As a parameterised subquery, each key is one index probe whatever the statistics say.
_BY_KEY = (" CROSS JOIN LATERAL (SELECT i.customer_id FROM {table} i WHERE i.tenant = k.tenant AND {key} OFFSET 0) AS i"
           " CROSS JOIN LATERAL (SELECT c.merged_into, c.customer_id FROM identity.customers c"
           "   WHERE c.tenant = k.tenant AND c.customer_id = i.customer_id OFFSET 0) AS c")


def lock_key(ident: IdKey) -> int:
    digest = hashlib.blake2b("\x00".join(ident).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


async def lock_identifiers(conn: asyncpg.Connection, idents: Iterable[IdKey]) -> None:
    keys = sorted({lock_key(i) for i in idents})
    if keys:
        await conn.execute("SELECT count(pg_advisory_xact_lock(k)) FROM unnest($1::bigint[]) AS k", keys)


async def processed(conn: asyncpg.Connection, events: list[EventKey]) -> dict[EventKey, str]:
    """Events already applied → their customer's current canonical id."""
    if not events:
        return {}
    rows = await conn.fetch(
        "SELECT k.tenant, k.source, k.event_id, COALESCE(c.merged_into, c.customer_id) AS customer_id"
        " FROM unnest($1::text[], $2::text[], $3::text[]) AS k(tenant, source, event_id)"
        + _BY_KEY.format(table="identity.processed_events", key="i.source = k.source AND i.event_id = k.event_id"),
        *_columns(events),
    )
    return {(r["tenant"], r["source"], r["event_id"]): r["customer_id"] for r in rows}


async def owners(conn: asyncpg.Connection, idents: list[IdKey]) -> dict[IdKey, str]:
    """Known identifiers → canonical customer id."""
    if not idents:
        return {}
    rows = await conn.fetch(
        "SELECT k.tenant, k.id_type, k.value, COALESCE(c.merged_into, c.customer_id) AS customer_id"
        " FROM unnest($1::text[], $2::text[], $3::text[]) AS k(tenant, id_type, value)"
        + _BY_KEY.format(table="identity.identifiers", key="i.id_type = k.id_type AND i.value = k.value"),
        *_columns(idents),
    )
    return {(r["tenant"], r["id_type"], r["value"]): r["customer_id"] for r in rows}


async def lock_customers(conn: asyncpg.Connection, customers: set[tuple[str, str]]) -> dict[tuple[str, str], tuple[Age, str | None]]:
    """Lock customer rows; returns (tenant, id) → (age, merged_into as seen under the lock). The age is the time of
    the creating event, then its source and id (customers from before ``born_at`` existed: their row's time)."""
    if not customers:
        return {}
    tenants, ids = zip(*sorted(customers))
    rows = await conn.fetch(
        "SELECT c.tenant, c.customer_id, COALESCE(c.born_at, c.created_at) AS born, c.created_by_source,"
        " c.created_by_event, c.merged_into FROM identity.customers c"
        " JOIN unnest($1::text[], $2::text[]) AS k(tenant, customer_id) USING (tenant, customer_id)"
        " ORDER BY c.tenant, c.customer_id FOR UPDATE OF c",
        list(tenants), list(ids),
    )
    return {(r["tenant"], r["customer_id"]): ((r["born"], r["created_by_source"], r["created_by_event"]),
                                              r["merged_into"]) for r in rows}


async def insert_customers(conn: asyncpg.Connection, rows: list[tuple[str, str, EventKey]],
                           born: dict[EventKey, datetime] | None = None) -> None:
    """Insert customers (tenant, id, creating event); ``born`` maps creating events to their time (else now)."""
    if rows:
        born = born or {}
        await conn.execute(
            "INSERT INTO identity.customers (tenant, customer_id, created_by_source, created_by_event, born_at)"
            " SELECT t, c, s, e, COALESCE(b, now())"
            " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[]) AS k(t, c, s, e, b)"
            " ON CONFLICT DO NOTHING",
            *_columns([(t, c, by[1], by[2], born.get(by)) for t, c, by in rows]),
        )


async def apply_aliases(conn: asyncpg.Connection, aliases: dict[tuple[str, str], str]) -> None:
    """Point merged customers and all their identifiers (and older aliases) at the survivor."""
    if not aliases:
        return
    tenants = [t for t, _ in aliases]
    merged = [m for _, m in aliases]
    survivors = list(aliases.values())
    # Two statements rather than one with ``OR``: each then uses an index (the key, resp. merged_into).
    await conn.execute(
        "UPDATE identity.customers c SET merged_into = a.survivor, merged_at = now()"
        " FROM unnest($1::text[], $2::text[], $3::text[]) AS a(tenant, merged, survivor)"
        " WHERE c.tenant = a.tenant AND c.customer_id = a.merged",
        tenants, merged, survivors,
    )
    await conn.execute(
        "UPDATE identity.customers c SET merged_into = a.survivor, merged_at = now()"
        " FROM unnest($1::text[], $2::text[], $3::text[]) AS a(tenant, merged, survivor)"
        " WHERE c.tenant = a.tenant AND c.merged_into = a.merged",
        tenants, merged, survivors,
    )
    await conn.execute(
        "UPDATE identity.identifiers i SET customer_id = a.survivor"
        " FROM unnest($1::text[], $2::text[], $3::text[]) AS a(tenant, merged, survivor)"
        " WHERE i.tenant = a.tenant AND i.customer_id = a.merged",
        tenants, merged, survivors,
    )


async def insert_identifiers(conn: asyncpg.Connection, rows: list[tuple[IdKey, str, EventKey]],
                             first_seen: dict[EventKey, datetime], last_seen: dict[IdKey, datetime]) -> None:
    if rows:
        await conn.execute(
            "INSERT INTO identity.identifiers (tenant, id_type, value, customer_id, first_seen, last_seen,"
            " linked_by_source, linked_by_event)"
            " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[],"
            "                      $6::timestamptz[], $7::text[], $8::text[]) ON CONFLICT DO NOTHING",
            *_columns([(i[0], i[1], i[2], c, first_seen[by], max(first_seen[by], last_seen[i]), by[1], by[2])
                       for i, c, by in rows]),
        )


async def touch_identifiers(conn: asyncpg.Connection, seen_at: dict[IdKey, datetime]) -> None:
    if seen_at:
        idents = list(seen_at)
        await conn.execute(
            "UPDATE identity.identifiers i SET last_seen = k.seen"
            " FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[]) AS k(tenant, id_type, value, seen)"
            " WHERE i.tenant = k.tenant AND i.id_type = k.id_type AND i.value = k.value AND i.last_seen < k.seen",
            *_columns(idents), [seen_at[i] for i in idents],
        )


async def insert_processed(conn: asyncpg.Connection, assignments: dict[EventKey, str]) -> None:
    if assignments:
        events = list(assignments)
        await conn.execute(
            "INSERT INTO identity.processed_events (tenant, source, event_id, customer_id)"
            " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) ON CONFLICT DO NOTHING",
            *_columns(events), [assignments[e] for e in events],
        )


async def insert_merges(conn: asyncpg.Connection, merges: list[Merge], rule: str | None = None) -> None:
    """Record merges (the outbox of their events); ``rule`` overrides each merge's own."""
    if merges:
        await conn.executemany(
            "INSERT INTO identity.merges (merge_id, tenant, survivor_id, merged_ids, rule, linking, trigger_source,"
            " trigger_event, held, evidence) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10::jsonb)"
            " ON CONFLICT DO NOTHING",
            [(m.merge_id, m.tenant, m.survivor_id, m.merged_ids, rule or m.rule,
              orjson.dumps([{"type": t, "value": v} for _, t, v in m.linking]).decode(), m.trigger[1], m.trigger[2],
              orjson.dumps(m.held).decode(), orjson.dumps(m.evidence).decode() if m.evidence else None)
             for m in merges],
        )


async def unpublished_merges(conn: asyncpg.Connection, limit: int = OUTBOX_PAGE) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT merge_id, tenant, survivor_id, merged_ids, rule, linking, trigger_source, trigger_event, merged_at"
        " FROM identity.merges WHERE NOT published ORDER BY merged_at LIMIT $1", limit,
    )


async def mark_merges_published(conn: asyncpg.Connection, merge_ids: list[str]) -> None:
    if merge_ids:
        await conn.execute("UPDATE identity.merges SET published = true WHERE merge_id = ANY($1::text[])", merge_ids)




async def unpublished_changes(conn: asyncpg.Connection, limit: int = OUTBOX_PAGE) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT change_id, tenant, event_type, subject, payload, created_at FROM identity.changes"
        " WHERE NOT published ORDER BY created_at LIMIT $1", limit,
    )


async def mark_changes_published(conn: asyncpg.Connection, change_ids: list[str]) -> None:
    if change_ids:
        await conn.execute("UPDATE identity.changes SET published = true WHERE change_id = ANY($1::text[])", change_ids)


async def profiles(conn: asyncpg.Connection, customers: set[tuple[str, str]]) -> dict[tuple[str, str], Profile]:
    """What each (canonical) customer holds: identifiers with their last-seen instants, and its alias count."""
    if not customers:
        return {}
    keys = sorted(customers)
    result = {k: Profile() for k in keys}
    rows = await conn.fetch(
        "SELECT i.tenant, i.customer_id, i.id_type, i.value, i.last_seen FROM identity.identifiers i"
        " JOIN unnest($1::text[], $2::text[]) AS k(tenant, customer_id) USING (tenant, customer_id)",
        *_columns(keys))
    for r in rows:
        result[(r["tenant"], r["customer_id"])].identifiers[(r["tenant"], r["id_type"], r["value"])] = r["last_seen"]
    counts = await conn.fetch(
        "SELECT c.tenant, c.merged_into, count(*) AS n FROM identity.customers c"
        " JOIN unnest($1::text[], $2::text[]) AS k(tenant, merged_into) USING (tenant, merged_into)"
        " GROUP BY c.tenant, c.merged_into", *_columns(keys))
    for r in counts:
        result[(r["tenant"], r["merged_into"])].merges = r["n"]
    return result


async def insert_refusals(conn: asyncpg.Connection, refusals: list[Refusal]) -> None:
    if refusals:
        await conn.execute(
            "INSERT INTO identity.refusals (tenant, source, event_id, id_type, value, rule, customer_id)"
            " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])"
            " ON CONFLICT DO NOTHING",
            *_columns([(r.trigger[0], r.trigger[1], r.trigger[2], r.identifier[1], r.identifier[2], r.rule, r.customer)
                       for r in refusals]))


async def insert_reviews(conn: asyncpg.Connection, reviews: list[Review]) -> None:
    if reviews:
        await conn.executemany(
            "INSERT INTO identity.reviews (tenant, review_id, customers, linking, trigger_source, trigger_event, rule,"
            " evidence) VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, $8::jsonb) ON CONFLICT DO NOTHING",
            [(r.tenant, r.review_id, r.customers, orjson.dumps([{"type": t, "value": v} for _, t, v in r.linking]).decode(),
              r.trigger[1], r.trigger[2], r.rule, orjson.dumps(r.evidence).decode() if r.evidence else None)
             for r in reviews])


BLOCK = "\x00profile_block"  # the "identifier type" of a blocking key's advisory lock
PER_BLOCK = 500


async def profile_candidates(conn: asyncpg.Connection, blocks: list[tuple[str, str]]) -> list[StoredProfile]:
    """Stored profiles sharing one of ``blocks`` ((tenant, blocking key)), with their customer's current id; at
    most ``PER_BLOCK`` per block (a key that common tells little)."""
    if not blocks:
        return []
    rows = await conn.fetch(
        "SELECT DISTINCT p.tenant, p.source, p.event_id, COALESCE(c.merged_into, c.customer_id) AS customer_id,"
        " p.attrs FROM unnest($1::text[], $2::text[]) AS k(tenant, block)"
        " CROSS JOIN LATERAL (SELECT b.source, b.event_id FROM identity.profile_blocks b"
        "   WHERE b.tenant = k.tenant AND b.block = k.block ORDER BY b.source, b.event_id LIMIT $3) AS b"
        " JOIN identity.profiles p ON p.tenant = k.tenant AND p.source = b.source AND p.event_id = b.event_id"
        " JOIN identity.customers c ON c.tenant = p.tenant AND c.customer_id = p.customer_id"
        " WHERE c.erased_at IS NULL",
        *_columns(sorted(blocks)), PER_BLOCK)
    return [StoredProfile((r["tenant"], r["source"], r["event_id"]), r["customer_id"], orjson.loads(r["attrs"]))
            for r in rows]


async def insert_profiles(conn: asyncpg.Connection, rows: list[tuple[EventKey, str, dict, datetime]]) -> None:
    """Store profiles (event, customer, attributes, occurred at) and their blocking keys."""
    if not rows:
        return
    await conn.execute(
        "INSERT INTO identity.profiles (tenant, source, event_id, customer_id, attrs, occurred_at)"
        " SELECT t, s, e, c, a::jsonb, o FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],"
        " $6::timestamptz[]) AS r(t, s, e, c, a, o) ON CONFLICT DO NOTHING",
        [k[0] for k, *_ in rows], [k[1] for k, *_ in rows], [k[2] for k, *_ in rows], [c for _, c, _, _ in rows],
        [orjson.dumps(a).decode() for _, _, a, _ in rows], [o for *_, o in rows])
    blocks = [(k[0], b, k[1], k[2]) for k, _, a, _ in rows for b in sorted(block_keys(a))]
    if blocks:
        await conn.execute(
            "INSERT INTO identity.profile_blocks (tenant, block, source, event_id)"
            " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) ON CONFLICT DO NOTHING",
            *_columns(blocks))
