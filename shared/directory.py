"""A service's own copy of "which customer does this identifier belong to", kept from ``touchpoint.customers.v1``.

Upstream systems (helpdesks, shops, survey tools) rarely know Touchpoint's customer id; their events name the
customer by identifiers (``shared.contracts.business.CustomerRef``). A service that consumes such events keeps a
directory (identifier → customer id) from the customer snapshots, and parks an event whose identifiers are not
known yet until a snapshot names one of them, so an upstream event that overtakes the customer's first
interaction is applied late instead of lost.

Tables (created by the service's migration in its own schema; see services/notification/migrations):
``directory (tenant, id_type, id_value, customer_id)`` and ``unresolved (seq, tenant, id_type, id_value, event)``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Sequence

import asyncpg
import orjson

from shared.cloudevents import CloudEvent, InvalidEvent
from shared.contracts.business import CustomerRef
from shared.db import ALL_TENANTS, UnitOfWork, tenant_scope
from shared.identifiers import normalise_identifier

Identifier = tuple[str, str]  # (type, normalised value)
# Directory identifier type of a customer id merged into another: upstream systems may still name it.
MERGED_ID = "customer_id"


async def resolve(conn: asyncpg.Connection, schema: str, tenant: str, ref: CustomerRef, event: CloudEvent,
                  phone_region: str) -> str | None:
    """Touchpoint's customer id for ``ref`` (the survivor when it names a merged id); None when not known yet:
    then ``event`` is parked and comes back from :func:`take_parked` when a snapshot names one of its
    identifiers."""
    if ref.customer_id:
        return await survivor_of(conn, schema, tenant, ref.customer_id)
    identifiers = [normalised(i, phone_region) for i in ref.identifiers]
    found = await lookup(conn, schema, tenant, identifiers)
    if found is None:
        await park(conn, schema, tenant, identifiers, {
            "id": event.id, "source": event.source, "type": event.type,
            "time": event.time.isoformat() if event.time else None, "data": event.data})
    return found


def normalised(identifier: Any, phone_region: str) -> Identifier:
    """(type, value) as identity writes it into customer snapshots (upstream systems write "Anna@X.de" or a
    national phone number); a value that is no valid identifier of its type is kept as given."""
    try:
        identifier = normalise_identifier(identifier, phone_region)
    except InvalidEvent:
        pass
    return identifier.type, identifier.value


def unparked(parked: dict, tenant: str) -> CloudEvent:
    """A parked event as the CloudEvent it was."""
    return CloudEvent(id=parked["id"], source=parked["source"], type=parked["type"],
                      time=datetime.fromisoformat(parked["time"]) if parked.get("time") else None,
                      data=parked["data"], extensions={"tenant": tenant})


async def survivor_of(conn: asyncpg.Connection, schema: str, tenant: str, customer_id: str) -> str:
    """The customer ``customer_id`` was merged into (through any number of merges), else ``customer_id``."""
    return await lookup(conn, schema, tenant, [(MERGED_ID, customer_id)]) or customer_id


async def record_merge(conn: asyncpg.Connection, schema: str, tenant: str, merged_ids: Sequence[str],
                       survivor: str) -> None:
    """Identifiers of ``merged_ids`` now resolve to ``survivor``, and so do the merged ids themselves."""
    ids = list(merged_ids)
    await conn.execute(f"UPDATE {schema}.directory SET customer_id = $3 WHERE tenant = $1 AND customer_id = ANY($2::text[])",
                       tenant, ids, survivor)
    await upsert(conn, schema, tenant, survivor, [(MERGED_ID, i) for i in ids])


async def upsert(conn: asyncpg.Connection, schema: str, tenant: str, customer_id: str,
                 identifiers: Sequence[Identifier]) -> None:
    if not identifiers:
        return
    await conn.execute(
        f"""INSERT INTO {schema}.directory (tenant, id_type, id_value, customer_id)
            SELECT $1, t, v, $4 FROM unnest($2::text[], $3::text[]) AS x(t, v)
            ON CONFLICT (tenant, id_type, id_value) DO UPDATE SET customer_id = EXCLUDED.customer_id""",
        tenant, [i[0] for i in identifiers], [i[1] for i in identifiers], customer_id)


async def lookup(conn: asyncpg.Connection, schema: str, tenant: str, identifiers: Sequence[Identifier]) -> str | None:
    """The customer of the first identifier (in the given order) that the directory knows."""
    rows = await conn.fetch(
        f"""SELECT d.customer_id FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS x(t, v, n)
            JOIN {schema}.directory d ON d.tenant = $1 AND d.id_type = x.t AND d.id_value = x.v
            ORDER BY x.n LIMIT 1""",
        tenant, [i[0] for i in identifiers], [i[1] for i in identifiers])
    return rows[0]["customer_id"] if rows else None


async def park(conn: asyncpg.Connection, schema: str, tenant: str, identifiers: Sequence[Identifier],
               event: dict) -> None:
    """Keep ``event`` (JSON-able) until a snapshot names one of ``identifiers``."""
    await conn.execute(
        f"""INSERT INTO {schema}.unresolved (tenant, id_type, id_value, event)
            SELECT $1, t, v, $4::jsonb FROM unnest($2::text[], $3::text[]) AS x(t, v)""",
        tenant, [i[0] for i in identifiers], [i[1] for i in identifiers], orjson.dumps(event).decode())


async def take_parked(conn: asyncpg.Connection, schema: str, tenant: str,
                      identifiers: Sequence[Identifier]) -> list[dict]:
    """Parked events naming any of ``identifiers`` (each once, oldest first), removed from the parking table
    together with the rows of their other identifiers."""
    rows = await conn.fetch(
        f"""WITH hit AS (
                SELECT DISTINCT u.event FROM {schema}.unresolved u
                JOIN unnest($2::text[], $3::text[]) AS x(t, v) ON u.id_type = x.t AND u.id_value = x.v
                WHERE u.tenant = $1)
            DELETE FROM {schema}.unresolved u USING hit WHERE u.tenant = $1 AND u.event = hit.event
            RETURNING u.seq, u.event""",
        tenant, [i[0] for i in identifiers], [i[1] for i in identifiers])
    seen: dict[str, tuple[int, dict]] = {}
    for r in rows:
        seen.setdefault(r["event"], (r["seq"], orjson.loads(r["event"])))
    return [event for _, event in sorted(seen.values(), key=lambda pair: pair[0])]


async def forget(conn: asyncpg.Connection, schema: str, customer_id: str) -> None:
    """A customer id that stopped existing (tombstone): its identifiers no longer resolve to it."""
    await conn.execute(f"DELETE FROM {schema}.directory WHERE customer_id = $1", customer_id)


async def forget_tombstoned(pool: asyncpg.Pool, schema: str, records: Sequence[Any]) -> None:
    """Forget the customer ids of a batch's tombstones, in one transaction. Across tenants: customer ids are
    unique across tenants, and tombstones written before they named their tenant (``ce_tenant``) have none."""
    gone = [r.key.decode() for r in records if r.value is None and r.key]
    if not gone:
        return
    with tenant_scope(ALL_TENANTS):
        async with UnitOfWork(pool) as uow:
            for customer_id in gone:
                await forget(uow.conn, schema, customer_id)
            await uow.commit()
