"""Operator actions on the identity graph: show, merge, split, erase. Framework-free use cases.

Each action runs in one transaction with the same locks as stream resolution (identifier advisory locks, then
customer rows), records its event in an outbox (``identity.merges`` or ``identity.changes``) in that
transaction, and is published by the caller afterwards. Errors: :class:`AdminError` with an HTTP-like status.
"""

from __future__ import annotations

import uuid
from typing import Any
from datetime import datetime, timezone

import asyncpg
import orjson

from services.identity import repository as repo
from services.identity.resolver import Merge
from shared.contracts import types
from shared import vault
from shared.db import UnitOfWork

NAMESPACE = uuid.UUID("5e7a9c1b-3d2f-4e6a-8b0c-9d1e2f3a4b5c")
ADMIN_SOURCE = "touchpoint/admin"


class AdminError(Exception):
    def __init__(self, status: int, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.status, self.reason, self.detail = status, reason, detail


async def show(pool: asyncpg.Pool, tenant: str, customer_id: str) -> dict:
    """The customer's identifiers (with when and by which event each was linked), aliases and merges."""
    async with pool.acquire() as conn:
        canonical = await _canonical(conn, tenant, customer_id)
        identifiers = await conn.fetch(
            "SELECT id_type, value, first_seen, last_seen, linked_by_source, linked_by_event FROM identity.identifiers"
            " WHERE tenant = $1 AND customer_id = $2 ORDER BY id_type, value", tenant, canonical)
        aliases = await conn.fetch("SELECT customer_id FROM identity.customers WHERE tenant = $1 AND merged_into = $2"
                                   " ORDER BY customer_id", tenant, canonical)
        merges = await conn.fetch(
            "SELECT merge_id, merged_ids, rule, linking, evidence, trigger_source, trigger_event, merged_at"
            " FROM identity.merges"
            " WHERE tenant = $1 AND survivor_id = $2 ORDER BY merged_at", tenant, canonical)
    return {
        "customer_id": canonical,
        "identifiers": [{"type": r["id_type"], "value": r["value"], "first_seen": r["first_seen"],
                         "last_seen": r["last_seen"], "linked_by": {"source": r["linked_by_source"],
                                                                    "event_id": r["linked_by_event"]}}
                        for r in identifiers],
        "merged_ids": [r["customer_id"] for r in aliases],
        "merges": [{"merge_id": r["merge_id"], "merged_ids": list(r["merged_ids"]), "rule": r["rule"],
                    "linking_identifiers": orjson.loads(r["linking"]),
                    "match": orjson.loads(r["evidence"]) if r["evidence"] else None,
                    "trigger": {"source": r["trigger_source"], "event_id": r["trigger_event"]},
                    "merged_at": r["merged_at"]} for r in merges],
    }


async def request_split(pool: asyncpg.Pool, tenant: str, customer_id: str, identifiers: list[tuple[str, str]],
                        reason: str, request_id: str, requested_by: str) -> dict:
    """Record an agent's request to split identifiers off the customer, for an administrator to review.
    Idempotent per ``request_id``; the identifiers must belong to the customer."""
    async with UnitOfWork(pool) as uow:
        canonical = await _canonical(uow.conn, tenant, customer_id)
        held = {(r["id_type"], r["value"]) for r in await uow.conn.fetch(
            "SELECT id_type, value FROM identity.identifiers WHERE tenant = $1 AND customer_id = $2", tenant, canonical)}
        foreign = sorted(set(identifiers) - held)
        if foreign:
            raise AdminError(409, "not_held", f"{len(foreign)} of the identifiers do not belong to this customer")
        await uow.conn.execute(
            "INSERT INTO identity.split_requests (tenant, request_id, customer_id, identifiers, reason, requested_by)"
            " VALUES ($1, $2, $3, $4::jsonb, $5, $6) ON CONFLICT DO NOTHING", tenant, request_id, canonical,
            orjson.dumps([{"type": t, "value": v} for t, v in identifiers]).decode(), reason, requested_by)
        await uow.commit()
    return {"request_id": request_id, "customer_id": canonical, "status": "requested"}


async def split_requests(pool: asyncpg.Pool, tenant: str, limit: int = 100) -> list[dict]:
    """The tenant's split requests, oldest first."""
    rows = await pool.fetch(
        "SELECT request_id, customer_id, identifiers, reason, requested_by, requested_at FROM identity.split_requests"
        " WHERE tenant = $1 ORDER BY requested_at LIMIT $2", tenant, limit)
    return [{**dict(r), "identifiers": orjson.loads(r["identifiers"])} for r in rows]


async def _canonical(conn: asyncpg.Connection, tenant: str, customer_id: str) -> str:
    row = await conn.fetchrow("SELECT COALESCE(merged_into, customer_id) AS id, erased_at FROM identity.customers"
                              " WHERE tenant = $1 AND customer_id = $2", tenant, customer_id)
    if row is None or row["erased_at"] is not None:
        raise AdminError(404, "not_found", "no such customer")
    return row["id"]


async def merge(pool: asyncpg.Pool, tenant: str, customer_ids: list[str], request_id: str) -> dict:
    """Merge customers into the oldest of them (rule ``manual``). Idempotent per ``request_id``."""
    async with UnitOfWork(pool) as uow:
        result = await _merge_in(uow.conn, tenant, customer_ids, request_id, "manual", [])
        await uow.commit()
    return result


async def _merge_in(conn: asyncpg.Connection, tenant: str, customer_ids: list[str], request_id: str, rule: str,
                    linking: list[tuple[str, str, str]]) -> dict:
    canon = {await _canonical(conn, tenant, c) for c in customer_ids}
    locked = await repo.lock_customers(conn, {(tenant, c) for c in canon})
    if any(merged_into for _, merged_into in locked.values()):
        raise AdminError(409, "conflict", "a customer changed concurrently; retry")
    if len(canon) < 2:
        raise AdminError(409, "nothing_to_merge", "these ids are one customer already")
    survivor = min(canon, key=lambda c: (locked[(tenant, c)][0], c))
    merged = sorted(canon - {survivor})
    merge_id = str(uuid.uuid5(NAMESPACE, f"merge\x00{tenant}\x00{request_id}"))
    held = {m: sorted(f"{i[1]}:{i[2]}" for i in p.identifiers)
            for (_, m), p in (await repo.profiles(conn, {(tenant, m) for m in merged})).items()}
    await repo.apply_aliases(conn, {(tenant, m): survivor for m in merged})
    await repo.insert_merges(conn, [Merge(merge_id, tenant, survivor, merged, linking, (tenant, ADMIN_SOURCE, request_id),
                                          held)], rule)
    return {"merge_id": merge_id, "survivor_id": survivor, "merged_ids": merged}


async def explain(pool: asyncpg.Pool, tenant: str, customer_id: str) -> dict:
    """The graph (``show``) with what the rules refused for the customer's events and the merges of it waiting
    for review or decided."""
    graph = await show(pool, tenant, customer_id)
    ids = [graph["customer_id"], *graph["merged_ids"]]
    async with pool.acquire() as conn:
        refused = await conn.fetch(
            "SELECT source, event_id, id_type, value, rule, refused_at FROM identity.refusals"
            " WHERE tenant = $1 AND customer_id = ANY($2::text[]) ORDER BY refused_at, id_type, value LIMIT 1000",
            tenant, ids)
        reviews = await conn.fetch(
            "SELECT review_id, customers, linking, rule, evidence, trigger_source, trigger_event, status, created_at,"
            " decided_at, merge_id FROM identity.reviews WHERE tenant = $1 AND customers && $2::text[]"
            " ORDER BY created_at",
            tenant, ids)
    return {**graph,
            "refused": [{"identifier": {"type": r["id_type"], "value": r["value"]}, "rule": r["rule"],
                         "event": {"source": r["source"], "event_id": r["event_id"]}, "at": r["refused_at"]}
                        for r in refused],
            "reviews": [_review(r) for r in reviews]}


def _review(r: Any) -> dict:
    return {"review_id": r["review_id"], "customers": list(r["customers"]), "rule": r["rule"],
            "match": orjson.loads(r["evidence"]) if r["evidence"] else None,
            "linking_identifiers": orjson.loads(r["linking"]),
            "trigger": {"source": r["trigger_source"], "event_id": r["trigger_event"]}, "status": r["status"],
            "created_at": r["created_at"], "decided_at": r["decided_at"], "merge_id": r["merge_id"]}


async def reviews(pool: asyncpg.Pool, tenant: str, status: str, limit: int = 100) -> list[dict]:
    """Merges held for review, oldest first, each with the evidence: the linking identifiers, the triggering
    event and every identifier each customer holds."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT review_id, customers, linking, rule, evidence, trigger_source, trigger_event, status, created_at,"
            " decided_at, merge_id FROM identity.reviews WHERE tenant = $1 AND status = $2 ORDER BY created_at"
            " LIMIT $3",
            tenant, status, limit)
        held = await conn.fetch(
            "SELECT customer_id, id_type, value, first_seen FROM identity.identifiers"
            " WHERE tenant = $1 AND customer_id = ANY($2::text[]) ORDER BY customer_id, id_type, value",
            tenant, sorted({c for r in rows for c in r["customers"]}))
    by_customer: dict[str, list[dict]] = {}
    for h in held:
        by_customer.setdefault(h["customer_id"], []).append(
            {"type": h["id_type"], "value": h["value"], "first_seen": h["first_seen"]})
    return [{**_review(r), "evidence": {c: by_customer.get(c, []) for c in r["customers"]}} for r in rows]


async def decide_review(pool: asyncpg.Pool, tenant: str, review_id: str, approve: bool, decided_by: str) -> dict:
    """Approve (the customers are merged, rule ``review_approved``) or reject (they stay apart, and the same
    merge is not proposed again). Deciding a decided review again answers as before if it is the same decision."""
    async with UnitOfWork(pool) as uow:
        row = await uow.conn.fetchrow("SELECT customers, linking, status, merge_id FROM identity.reviews"
                                      " WHERE tenant = $1 AND review_id = $2 FOR UPDATE", tenant, review_id)
        if row is None:
            raise AdminError(404, "not_found", "no such review")
        wanted = "approved" if approve else "rejected"
        if row["status"] != "pending":
            if row["status"] != wanted:
                raise AdminError(409, "already_decided", f"the review was {row['status']}")
            return {"review_id": review_id, "status": row["status"], "merge_id": row["merge_id"]}
        merge_id = None
        if approve:
            linking = [(tenant, i["type"], i["value"]) for i in orjson.loads(row["linking"])]
            merge_id = (await _merge_in(uow.conn, tenant, list(row["customers"]), f"review:{review_id}",
                                        "review_approved", linking))["merge_id"]
        await uow.conn.execute(
            "UPDATE identity.reviews SET status = $3, decided_at = now(), decided_by = $4, merge_id = $5"
            " WHERE tenant = $1 AND review_id = $2", tenant, review_id, wanted, decided_by, merge_id)
        await uow.commit()
    return {"review_id": review_id, "status": wanted, "merge_id": merge_id}


async def split(pool: asyncpg.Pool, tenant: str, customer_id: str, identifiers: list[tuple[str, str]],
                reason: str, request_id: str) -> dict:
    """Detach identifiers into a new customer; later events with them resolve to it."""
    if not identifiers:
        raise AdminError(400, "invalid_request", "name at least one identifier")
    keys = [(tenant, t, v) for t, v in identifiers]
    async with UnitOfWork(pool) as uow:
        await repo.lock_identifiers(uow.conn, keys)
        canonical = await _canonical(uow.conn, tenant, customer_id)
        await repo.lock_customers(uow.conn, {(tenant, canonical)})
        owners = await repo.owners(uow.conn, keys)
        if any(owners.get(k) != canonical for k in keys):
            raise AdminError(409, "not_linked", "an identifier does not belong to this customer")
        remaining = await uow.conn.fetchval("SELECT count(*) FROM identity.identifiers WHERE tenant = $1 AND customer_id = $2",
                                            tenant, canonical)
        if remaining <= len(keys):
            raise AdminError(409, "nothing_left", "a split must leave the customer at least one identifier")
        split_id = str(uuid.uuid5(NAMESPACE, f"split\x00{tenant}\x00{request_id}"))
        new_id = str(uuid.uuid5(NAMESPACE, f"customer\x00{tenant}\x00{split_id}"))
        await repo.insert_customers(uow.conn, [(tenant, new_id, (tenant, ADMIN_SOURCE, split_id))])
        await uow.conn.execute(
            "UPDATE identity.identifiers i SET customer_id = $2 FROM unnest($3::text[], $4::text[]) AS k(id_type, value)"
            " WHERE i.tenant = $1 AND i.id_type = k.id_type AND i.value = k.value",
            tenant, new_id, [t for t, _ in identifiers], [v for _, v in identifiers])
        payload = {"split_id": split_id, "customer_id": canonical, "new_customer_id": new_id, "reason": reason,
                   "identifiers": [{"type": t, "value": v} for t, v in identifiers],
                   "split_at": datetime.now(timezone.utc).isoformat()}
        await _record_change(uow.conn, split_id, tenant, types.CUSTOMER_SPLIT, canonical, payload)
        await uow.commit()
    return payload


async def undo_merge(pool: asyncpg.Pool, tenant: str, merge_id: str) -> dict:
    """Undo a merge: each merged-away customer gets its id back with the identifiers it held at the merge that
    the survivor still holds, and a ``customer_split`` event per customer tells the projections to move back the
    entries those identifiers link to. Idempotent: undoing an undone merge answers as the first time."""
    async with UnitOfWork(pool) as uow:
        row = await uow.conn.fetchrow("SELECT survivor_id, merged_ids, held, undone_at FROM identity.merges"
                                      " WHERE tenant = $1 AND merge_id = $2 FOR UPDATE", tenant, merge_id)
        if row is None:
            raise AdminError(404, "not_found", "no such merge")
        if row["held"] is None:
            raise AdminError(409, "not_reversible", "the merge was recorded before merges kept what they joined")
        held = orjson.loads(row["held"])
        splits = [_undo_split_id(tenant, merge_id, m) for m in row["merged_ids"]]
        if row["undone_at"] is not None:
            return {"merge_id": merge_id, "undone_at": row["undone_at"], "split_ids": splits}
        survivor = await _canonical(uow.conn, tenant, row["survivor_id"])
        keys = [(tenant, *pair.split(":", 1)) for m in row["merged_ids"] for pair in held.get(m, [])]
        await repo.lock_identifiers(uow.conn, keys)
        await repo.lock_customers(uow.conn, {(tenant, survivor), *((tenant, m) for m in row["merged_ids"])})
        owners = await repo.owners(uow.conn, keys)
        now = datetime.now(timezone.utc)
        for merged, split_id in zip(row["merged_ids"], splits):
            back = [k for k in keys if k in owners and owners[k] == survivor and f"{k[1]}:{k[2]}" in held.get(merged, [])]
            await uow.conn.execute("UPDATE identity.customers SET merged_into = NULL, merged_at = NULL"
                                   " WHERE tenant = $1 AND customer_id = $2", tenant, merged)
            if not back:
                continue
            await uow.conn.execute(
                "UPDATE identity.identifiers i SET customer_id = $2 FROM unnest($3::text[], $4::text[]) AS k(id_type, value)"
                " WHERE i.tenant = $1 AND i.id_type = k.id_type AND i.value = k.value",
                tenant, merged, [k[1] for k in back], [k[2] for k in back])
            payload = {"split_id": split_id, "customer_id": survivor, "new_customer_id": merged,
                       "reason": f"undo of merge {merge_id}", "split_at": now.isoformat(),
                       "identifiers": [{"type": k[1], "value": k[2]} for k in back]}
            await _record_change(uow.conn, split_id, tenant, types.CUSTOMER_SPLIT, survivor, payload)
        await uow.conn.execute("UPDATE identity.merges SET undone_at = $3 WHERE tenant = $1 AND merge_id = $2",
                               tenant, merge_id, now)
        await uow.commit()
    return {"merge_id": merge_id, "undone_at": now, "split_ids": splits}


def _undo_split_id(tenant: str, merge_id: str, merged: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"undo\x00{tenant}\x00{merge_id}\x00{merged}"))


async def erase(pool: asyncpg.Pool, tenant: str, customer_id: str, request_id: str) -> dict:
    """Forget the customer's identifiers (and its aliases'), shred the data keys of every event attributed to
    them (``shared.vault``), and record the erasure event; projections erase on the event."""
    async with UnitOfWork(pool) as uow:
        canonical = await _canonical(uow.conn, tenant, customer_id)
        await repo.lock_customers(uow.conn, {(tenant, canonical)})
        aliases = [r["customer_id"] for r in await uow.conn.fetch(
            "SELECT customer_id FROM identity.customers WHERE tenant = $1 AND merged_into = $2", tenant, canonical)]
        everyone = [canonical, *aliases]
        await uow.conn.execute("DELETE FROM identity.identifiers WHERE tenant = $1 AND customer_id = ANY($2::text[])",
                               tenant, everyone)
        await uow.conn.execute("UPDATE identity.customers SET erased_at = now() WHERE tenant = $1 AND customer_id = ANY($2::text[])",
                               tenant, everyone)
        await _forget_evidence(uow.conn, tenant, everyone)
        shredded = await vault.shred(uow.conn, tenant, everyone)
        erasure_id = str(uuid.uuid5(NAMESPACE, f"erase\x00{tenant}\x00{request_id}"))
        payload = {"erasure_id": erasure_id, "customer_id": canonical, "merged_ids": aliases,
                   "requested_at": datetime.now(timezone.utc).isoformat()}
        await _record_change(uow.conn, erasure_id, tenant, types.CUSTOMER_ERASED, canonical, payload)
        erased_at = await uow.conn.fetchval("SELECT now()")
        await uow.commit()
    # Done here once committed: the keys are gone, so every sealed copy anywhere is unreadable from now on;
    # projections delete their rows when the event reaches them.
    return {**payload, "keys_shredded": shredded, "erased_at": erased_at.isoformat()}


async def _forget_evidence(conn: asyncpg.Connection, tenant: str, customers: list[str]) -> None:
    """Remove the identifier values the graph's history keeps about ``customers``: what merges linked and held
    (a merge that held them can no longer be undone), refused identifiers, pending reviews' evidence (the review
    is rejected), split requests, the identifiers of recorded splits, and their profiles with blocking keys."""
    await conn.execute("DELETE FROM identity.profile_blocks b USING identity.profiles p WHERE p.tenant = $1"
                       " AND p.customer_id = ANY($2::text[]) AND b.tenant = p.tenant AND b.source = p.source"
                       " AND b.event_id = p.event_id", tenant, customers)
    await conn.execute("DELETE FROM identity.profiles WHERE tenant = $1 AND customer_id = ANY($2::text[])",
                       tenant, customers)
    await conn.execute("UPDATE identity.merges SET linking = '[]', held = NULL, evidence = NULL WHERE tenant = $1"
                       " AND (survivor_id = ANY($2::text[]) OR merged_ids && $2::text[])", tenant, customers)
    await conn.execute("DELETE FROM identity.refusals WHERE tenant = $1 AND customer_id = ANY($2::text[])",
                       tenant, customers)
    await conn.execute("UPDATE identity.reviews SET linking = '[]', evidence = NULL, status = CASE WHEN status = 'pending'"
                       " THEN 'rejected' ELSE status END, decided_at = COALESCE(decided_at, now()),"
                       " decided_by = COALESCE(decided_by, 'erasure') WHERE tenant = $1 AND customers && $2::text[]",
                       tenant, customers)
    await conn.execute("DELETE FROM identity.split_requests WHERE tenant = $1 AND customer_id = ANY($2::text[])",
                       tenant, customers)
    await conn.execute("UPDATE identity.changes SET payload = jsonb_set(payload, '{identifiers}', '[]')"
                       " WHERE tenant = $1 AND event_type = $3 AND (subject = ANY($2::text[])"
                       " OR payload->>'new_customer_id' = ANY($2::text[]))", tenant, customers, types.CUSTOMER_SPLIT)


async def _record_change(conn: asyncpg.Connection, change_id: str, tenant: str, event_type: str, subject: str,
                         payload: dict) -> None:
    await conn.execute(
        "INSERT INTO identity.changes (change_id, tenant, event_type, subject, payload) VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT DO NOTHING", change_id, tenant, event_type, subject, orjson.dumps(payload).decode())
