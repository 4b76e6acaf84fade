"""The transactional outbox and the tracking table of consumed events, for services that own a schema.

A service writes the events it emits into ``<schema>.outbox`` in the same transaction as the state change
they describe, and publishes them afterwards until Kafka acknowledged them: nothing is emitted for a change
that rolled back, nothing is lost when the process dies after the commit (at-least-once on the topic, each
event with a stable CloudEvents id so consumers apply it once). ``<schema>.processed_events`` records consumed
upstream events in the transaction of their effects, so a redelivery changes nothing.

Both tables are created by the service's own migration (see ``services/notification/migrations``).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Awaitable, Callable, Mapping, Sequence

import asyncpg
import orjson
from pydantic import BaseModel

from shared.cloudevents import CloudEvent
from shared.db import UnitOfWork
from shared.kafka import EventProducer, event_record

EventKey = tuple[str, str, str]  # (tenant, CloudEvents source, CloudEvents id)


async def first_seen(conn: asyncpg.Connection, schema: str, keys: Sequence[EventKey]) -> set[EventKey]:
    """Record consumed events; returns the keys not recorded before (the ones to apply)."""
    if not keys:
        return set()
    rows = await conn.fetch(
        f"""INSERT INTO {schema}.processed_events (tenant, source, event_id)
            SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) ON CONFLICT DO NOTHING
            RETURNING tenant, source, event_id""",
        [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys])
    return {(r["tenant"], r["source"], r["event_id"]) for r in rows}


async def add(conn: asyncpg.Connection, schema: str, tenant: str,
              rows: Sequence[tuple[str, str, str, dict[str, Any]]]) -> None:
    """(event id, event type, partition key, data) rows to publish once the transaction committed."""
    if not rows:
        return
    await conn.execute(
        f"""INSERT INTO {schema}.outbox (tenant, event_id, event_type, subject, payload)
            SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[])""",
        tenant, [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
        [orjson.dumps(r[3]).decode() for r in rows])


async def publish_pending(pool: asyncpg.Pool, producer: EventProducer, schema: str, topic: str, source: str,
                          limit: int = 5000) -> int:
    """Publish outbox events not yet acknowledged (this instance's and any a crash left behind), oldest first.
    Rows are claimed with ``SKIP LOCKED`` so several instances publish side by side. Returns how many."""
    total = 0
    while True:
        async with UnitOfWork(pool) as uow:
            rows = await uow.conn.fetch(
                f"""SELECT seq, tenant, event_id, event_type, subject, payload, created_at FROM {schema}.outbox
                    WHERE NOT published ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED""", limit)
            if not rows:
                return total
            await producer.send_all([_record(topic, source, r) for r in rows])
            await uow.conn.execute(f"UPDATE {schema}.outbox SET published = true WHERE seq = ANY($1::bigint[])",
                                   [r["seq"] for r in rows])
            await uow.commit()
        total += len(rows)


def _record(topic: str, source: str, row: Any):
    created: datetime = row["created_at"]
    event = CloudEvent(id=row["event_id"], source=source, type=row["event_type"], time=created,
                       data=orjson.loads(row["payload"]), extensions={"tenant": row["tenant"]})
    return event_record(topic, row["subject"], event)


class Emitted:
    """Events a use case emits, collected until its transaction writes them to the outbox (:func:`add_all`)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, str, dict]] = []  # (tenant, type, partition key, data)

    def emit(self, tenant: str, event_type: str, key: str, data: BaseModel) -> None:
        self.events.append((tenant, event_type, key, data.model_dump(mode="json", exclude_none=True)))

    def kinds(self) -> list[str]:
        """The short kind of each event (``touchpoint.feedback.responded.v1`` → ``responded``), for metrics."""
        return [event_type.split(".")[2] for _, event_type, _, _ in self.events]


async def add_all(conn: asyncpg.Connection, schema: str, emitted: Emitted,
                  models: Mapping[str, type[BaseModel]]) -> None:
    """Write the emitted events to the outbox, each checked against its contract first (a bug that breaks a
    contract fails the transaction instead of reaching consumers)."""
    per_tenant: dict[str, list] = {}
    for tenant, event_type, key, data in emitted.events:
        models[event_type].model_validate(data)
        per_tenant.setdefault(tenant, []).append((str(uuid.uuid4()), event_type, key, data))
    for tenant, rows in per_tenant.items():
        await add(conn, schema, tenant, rows)


async def apply_once(pool: asyncpg.Pool, schema: str, items: Sequence[Any],
                     apply: Callable[[asyncpg.Connection, Any, Emitted], Awaitable[None]],
                     models: Mapping[str, type[BaseModel]], idempotent: bool = True) -> Emitted:
    """Apply consumed events (``shared.intake.Decoded``) in one transaction: those applied before are skipped
    (``idempotent``: recorded in ``<schema>.processed_events``), the events they emit go to the outbox, and the
    transaction commits once. Returns what was emitted (published later by :func:`publish_pending`)."""
    emitted = Emitted()
    if not items:
        return emitted
    async with UnitOfWork(pool) as uow:
        if idempotent:
            fresh = await first_seen(uow.conn, schema, [i.key for i in items])
            items = [i for i in items if i.key in fresh]
        for item in items:
            await apply(uow.conn, item, emitted)
        await add_all(uow.conn, schema, emitted, models)
        await uow.commit()
    return emitted
