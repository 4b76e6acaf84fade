"""Timeline projection: store each resolved interaction once, apply merges, publish entries and snapshots.

Guarantees
- Exactly one row per upstream event (tenant, source, id), whatever the redeliveries: the primary key is
  derived from that identity and rows are inserted with ``ON CONFLICT DO NOTHING`` in the batch's one
  transaction, together with the profile counters and merge bookkeeping.
- Merge-aware in any arrival order: a merge re-keys stored rows and records an alias; an interaction that
  arrives later under a merged-away id is stored under the survivor.
- Entries are published to ``touchpoint.timeline.v1`` after the commit and flagged as published once Kafka
  acknowledged them; a crash in between republishes them with the same CloudEvents id (consumers de-duplicate
  on it). Snapshots of every touched customer go to the compacted ``touchpoint.customers.v1``, with a
  tombstone for each merged-away id.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from datetime import datetime, timezone
from typing import Any, Callable, Sequence

import asyncpg
import orjson
from pydantic import ValidationError

from services.timeline import repository as repo
from shared.cloudevents import CloudEvent, InvalidEvent, from_kafka
from shared.contracts import types
from shared.contracts.identity import CustomerErasedV1, CustomersMergedV1, CustomerSplitV1
from shared.contracts.interaction import InteractionResolvedV1
from shared.db import UnitOfWork
from shared.kafka import EventProducer, OutboundRecord, dead_letter, tombstone
from shared.telemetry import Step, Steps, end_all

log = logging.getLogger(__name__)
SOURCE = "touchpoint/timeline"
NAMESPACE = uuid.UUID("d2c9b7a1-4e3f-4a6b-8c5d-1f2e3a4b5c6d")
CHANGES = {types.CUSTOMERS_MERGED: CustomersMergedV1, types.CUSTOMER_SPLIT: CustomerSplitV1,
           types.CUSTOMER_ERASED: CustomerErasedV1}
ENTRY_FIELDS = ("channel", "direction", "source", "event_id", "conversation_id", "case_id", "subject", "text",
                "language", "agent_id", "tags")


def entry_id_for(tenant: str, source: str, event_id: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"entry\x00{tenant}\x00{source}\x00{event_id}"))


class TimelineProjection:
    def __init__(self, pool: asyncpg.Pool, producer: EventProducer, timeline_topic: str, customers_topic: str,
                 steps: Steps | None = None, on_stored: Callable[[int], None] = lambda n: None) -> None:
        self.pool = pool
        self.producer = producer
        self.timeline_topic = timeline_topic
        self.customers_topic = customers_topic
        self.steps = steps or Steps(None, "timeline")
        self.on_stored = on_stored

    async def process(self, records: Sequence[Any]) -> None:
        """Handle one batch from the identity topic. Idempotent; raises only transient errors."""
        dead, items, headers = self._decode(records)
        steps = {}
        if self.steps.enabled:
            for (tenant, item), h in zip(items, headers):
                if isinstance(item, InteractionResolvedV1):
                    steps[entry_id_for(tenant, item.source, item.event_id)] = self.steps.start("timeline.append", h)
        try:
            async with UnitOfWork(self.pool) as uow:
                touched, gone = await self._apply(uow.conn, items)
                await uow.commit()
            await self._publish(dead, items, touched, gone, steps)
        finally:
            end_all(steps.values())

    def _decode(self, records: Sequence[Any]) -> tuple[list[OutboundRecord], list[tuple[str, Any]], list]:
        """(dead letters, decoded items, the headers each item came with)."""
        dead: list[OutboundRecord] = []
        items: list[tuple[str, Any]] = []
        headers: list = []
        for record in records:
            try:
                event = from_kafka(record.value, record.headers)
                if not event.tenant:
                    raise InvalidEvent("missing_attribute", "the tenant extension is required")
                if event.type == types.INTERACTION_RESOLVED:
                    items.append((event.tenant, InteractionResolvedV1.model_validate(event.data)))
                elif event.type in CHANGES:
                    items.append((event.tenant, CHANGES[event.type].model_validate(event.data)))
                else:
                    raise InvalidEvent("unsupported_type", f"event type {event.type!r} is not accepted here")
            except (InvalidEvent, ValidationError) as exc:
                dead.append(dead_letter(record, getattr(exc, "reason", "invalid_data"), exc))
                continue
            headers.append(record.headers)
        return dead, items, headers

    async def _apply(self, conn: asyncpg.Connection, items: list[tuple[str, Any]]) -> tuple[set, set]:
        """Apply items in the order they were consumed (a run of interactions is stored together, an identity
        change applies between runs); returns (customers touched, customer ids gone)."""
        touched: set[tuple[str, str]] = set()
        gone: set[tuple[str, str]] = set()
        run: list[tuple[str, InteractionResolvedV1]] = []
        for tenant, item in items:
            if isinstance(item, InteractionResolvedV1):
                run.append((tenant, item))
                continue
            if run:
                touched |= await self._store(conn, run)
                run = []
            await self._apply_change(conn, tenant, item, touched, gone)
        if run:
            touched |= await self._store(conn, run)
        return touched - gone, gone

    async def _apply_change(self, conn: asyncpg.Connection, tenant: str, item: Any, touched: set, gone: set) -> None:
        if isinstance(item, CustomersMergedV1) and await repo.claim_merge(conn, tenant, item.merge_id):
            survivor = (await repo.canonical_ids(conn, {(tenant, item.survivor_id)})).get(
                (tenant, item.survivor_id), item.survivor_id)
            await repo.apply_merge(conn, tenant, survivor, item.merged_ids)
            touched.add((tenant, survivor))
            gone.update((tenant, m) for m in item.merged_ids)
        elif isinstance(item, CustomerSplitV1) and await repo.claim_merge(conn, tenant, item.split_id):
            detached = [f"{i.type}:{i.value}" for i in item.identifiers]
            await repo.apply_split(conn, tenant, item.split_id, item.customer_id, item.new_customer_id, detached)
            touched.update({(tenant, item.customer_id), (tenant, item.new_customer_id)})
        elif isinstance(item, CustomerErasedV1) and await repo.claim_merge(conn, tenant, item.erasure_id):
            ids = [item.customer_id, *item.merged_ids]
            await repo.erase(conn, tenant, ids)
            gone.update((tenant, c) for c in ids)

    async def _owners(self, conn: asyncpg.Connection, interactions: list[tuple[str, InteractionResolvedV1]]) -> dict:
        """Each interaction's customer now: through aliases (merges), then splits its identifiers fall under."""
        aliases = await repo.canonical_ids(conn, {(t, i.customer_id) for t, i in interactions})
        canonical = {(t, i.customer_id): aliases.get((t, i.customer_id), i.customer_id) for t, i in interactions}
        splits = await repo.splits_of(conn, {(t, c) for (t, _), c in canonical.items()})
        owners = {}
        for tenant, it in interactions:
            customer = canonical[(tenant, it.customer_id)]
            idents = {f"{i.type}:{i.value}" for i in it.identifiers}
            for detached, new_customer in splits.get((tenant, customer), ()):
                if idents <= detached:
                    customer = new_customer
                    break
            owners[(tenant, it.source, it.event_id)] = customer
        return owners

    async def _store(self, conn: asyncpg.Connection, interactions: list[tuple[str, InteractionResolvedV1]]) -> set:
        owners = await self._owners(conn, interactions)
        forgotten = await repo.erased(conn, {(k[0], c) for k, c in owners.items()})
        rows, idents = [], {}
        for tenant, it in interactions:
            customer = owners[(tenant, it.source, it.event_id)]
            if (tenant, customer) in forgotten:
                continue
            entry_id = entry_id_for(tenant, it.source, it.event_id)
            rows.append((tenant, entry_id, customer, it.occurred_at, "interaction", it.channel, it.source,
                         it.event_id, _payload(entry_id, it), [f"{i.type}:{i.value}" for i in it.identifiers]))
            for ident in it.identifiers:
                idents[(tenant, ident.type, ident.value)] = customer
        inserted = await repo.insert_entries(conn, rows)
        self.on_stored(len(inserted))
        await repo.add_to_profiles(conn, _aggregate(inserted))
        await repo.upsert_identifiers(conn, [(t, ty, v, c) for (t, ty, v), c in sorted(idents.items())])
        return {(r["tenant"], r["customer_id"]) for r in inserted} | {(t, c) for (t, _, _), c in idents.items()}

    async def _publish(self, dead: list[OutboundRecord], items: list[tuple[str, Any]], touched: set, gone: set,
                       steps: dict) -> None:
        keys = [(t, entry_id_for(t, i.source, i.event_id)) for t, i in items if isinstance(i, InteractionResolvedV1)]
        async with UnitOfWork(self.pool) as uow:
            pending = await repo.unpublished_entries(uow.conn, keys)
            snapshots = await repo.profiles(uow.conn, sorted(touched))
        outbound = list(dead)
        outbound.extend(self._entry_record(r, steps.get(r["entry_id"])) for r in pending)
        outbound.extend(self._snapshot_record(r) for r in snapshots)
        outbound.extend(tombstone(self.customers_topic, m) for _, m in sorted(gone))
        await self.producer.send_all(outbound)
        if pending:
            async with UnitOfWork(self.pool) as uow:
                await repo.mark_published(uow.conn, [(r["tenant"], r["entry_id"]) for r in pending])
                await uow.commit()

    def _entry_record(self, row: Any, step: Step | None = None) -> OutboundRecord:
        data = orjson.loads(row["payload"])
        data["customer_id"] = row["customer_id"]
        headers = [
            ("ce_specversion", b"1.0"), ("ce_id", row["entry_id"].encode()), ("ce_source", SOURCE.encode()),
            ("ce_type", types.TIMELINE_ENTRY_ADDED.encode()), ("content-type", b"application/json"),
            ("ce_time", data["occurred_at"].encode()), ("ce_tenant", row["tenant"].encode()),
        ]
        if step is not None:
            headers.extend(step.headers())
        return OutboundRecord(self.timeline_topic, row["customer_id"].encode(), orjson.dumps(data), headers)

    def _snapshot_record(self, row: Any) -> OutboundRecord:
        data = {
            "customer_id": row["customer_id"],
            "identifiers": [dict(zip(("type", "value"), i.split(":", 1))) for i in row["identifiers"]],
            "channels": list(row["channels"]),
            "first_contact_at": row["first_contact_at"].isoformat(),
            "last_contact_at": row["last_contact_at"].isoformat(),
            "entry_count": row["entry_count"],
            "merged_ids": list(row["merged_ids"]),
        }
        headers = [
            ("ce_specversion", b"1.0"), ("ce_id", str(uuid.uuid4()).encode()), ("ce_source", SOURCE.encode()),
            ("ce_type", types.CUSTOMER_SNAPSHOT.encode()), ("content-type", b"application/json"),
            ("ce_time", datetime.now(timezone.utc).isoformat().encode()), ("ce_tenant", row["tenant"].encode()),
        ]
        return OutboundRecord(self.customers_topic, row["customer_id"].encode(), orjson.dumps(data), headers)


def _payload(entry_id: str, it: InteractionResolvedV1) -> str:
    """The entry as stored and published; ``customer_id`` is added when read, since merges change it."""
    data = {name: getattr(it, name) for name in ENTRY_FIELDS}
    data["entry_id"] = entry_id
    data["kind"] = "interaction"
    data["occurred_at"] = it.occurred_at.isoformat()
    return orjson.dumps(data).decode()


def _aggregate(inserted: list[Any]) -> list[tuple[str, str, datetime, datetime, int, list[str]]]:
    acc: dict[tuple[str, str], list] = defaultdict(lambda: [None, None, 0, set()])
    for r in inserted:
        a = acc[(r["tenant"], r["customer_id"])]
        a[0] = r["occurred_at"] if a[0] is None else min(a[0], r["occurred_at"])
        a[1] = r["occurred_at"] if a[1] is None else max(a[1], r["occurred_at"])
        a[2] += 1
        a[3].add(r["channel"])
    return [(t, c, a[0], a[1], a[2], sorted(a[3])) for (t, c), a in acc.items()]
