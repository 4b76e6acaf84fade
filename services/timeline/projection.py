"""Timeline projection: store each resolved interaction, routing decision, notification and feedback event once,
apply merges, publish entries and snapshots.

It consumes the identity topic (interactions, merges, splits, erasures), the routing topic (routing decisions,
except ``queue_position_changed``, which is acknowledged and not recorded), the notification topic (every
notification event) and the feedback topic (every feedback event except ``product_alert``, which names no
customer and is acknowledged without being recorded); any other type is dead-lettered.

Guarantees
- Exactly one row per event (tenant, source, id), whatever the redeliveries: the primary key is derived from
  that identity and rows are inserted with ``ON CONFLICT DO NOTHING`` in the batch's one transaction, together
  with the profile counters and merge bookkeeping.
- Merge-aware in any arrival order: a merge re-keys stored rows and records an alias; an entry that arrives
  later under a merged-away id is stored under the survivor. The topics are consumed concurrently, so a
  batch holds its tenants' advisory locks: shared while it only stores entries, exclusive when it applies an
  identity change, so that a merge never misses an entry being stored under a merged-away id.
- Entries are published to ``touchpoint.timeline.v1`` after the commit, from an outbox row written with the entry
  and deleted once Kafka acknowledged them; a crash in between republishes them with the same CloudEvents id (consumers de-duplicate
  on it). Snapshots of every touched customer go to the compacted ``touchpoint.customers.v1``, with a
  tombstone for each merged-away id.
- An interaction's personal fields are published sealed under the data key its event was sealed under
  (``shared.vault``); an event whose key was shredded (an erased customer) is skipped, so a rebuild from the
  log cannot bring an erased customer back.
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
from services.timeline.entries import (
    INTERACTION,
    Entry,
    feedback_entry,
    interaction_entry,
    notification_entry,
    routing_entry,
)
from shared.cloudevents import CloudEvent, InvalidEvent, from_kafka
from shared.contracts import types
from shared.contracts.feedback import FEEDBACK_MODELS
from shared.contracts.identity import CustomerErasedV1, CustomersMergedV1, CustomerSplitV1
from shared.contracts.interaction import InteractionResolvedV1
from shared.contracts.notification import NOTIFICATION_MODELS
from shared.contracts.routing import ROUTING_MODELS
from shared.db import UnitOfWork
from shared.kafka import EventProducer, OutboundRecord, dead_letter, tombstone
from shared.vault import ENTRY_FIELDS as ENTRY_SEALED_FIELDS
from shared.vault import EXTENSION as SEAL_EXTENSION
from shared.vault import HEADER, Shredded, Vault, seal_data
from shared.telemetry import Step, Steps, end_all

log = logging.getLogger(__name__)
SOURCE = "touchpoint/timeline"
CHANGES = {types.CUSTOMERS_MERGED: CustomersMergedV1, types.CUSTOMER_SPLIT: CustomerSplitV1,
           types.CUSTOMER_ERASED: CustomerErasedV1}
# Events acknowledged without being recorded: live queue movements (not history) and product alerts (about a
# product, not a customer).
IGNORED = frozenset({types.ROUTING_QUEUE_POSITION_CHANGED, types.FEEDBACK_PRODUCT_ALERT})


class TimelineProjection:
    def __init__(self, pool: asyncpg.Pool, producer: EventProducer, timeline_topic: str, customers_topic: str,
                 steps: Steps | None = None, on_stored: Callable[[int], None] = lambda n: None,
                 vault: Vault | None = None) -> None:
        self.pool = pool
        self.vault = vault or Vault(pool)
        self.producer = producer
        self.timeline_topic = timeline_topic
        self.customers_topic = customers_topic
        self.steps = steps or Steps(None, "timeline")
        self.on_stored = on_stored

    async def process(self, records: Sequence[Any]) -> None:
        """Handle one batch from the identity, routing, notification or feedback topic. Idempotent; raises only
        transient errors."""
        await self.vault.prefetch(records)
        dead, items, headers = self._decode(records)
        steps = {}
        if self.steps.enabled:
            for (tenant, item), h in zip(items, headers):
                if isinstance(item, Entry):
                    steps[item.entry_id(tenant)] = self.steps.start("timeline.append", h)
        try:
            async with UnitOfWork(self.pool, probes=True) as uow:
                changes = any(not isinstance(item, Entry) for _, item in items)
                await repo.lock_tenants(uow.conn, {tenant for tenant, _ in items}, exclusive=changes)
                changed: set[tuple[str, str]] = set()
                stored: list[repo.EntryRow] = []
                touched, gone = await self._apply(uow.conn, items, changed, stored)
                await repo.notify_changed(uow.conn, (changed | touched) - gone)
                keys = list(dict.fromkeys((t, i.entry_id(t)) for t, i in items if isinstance(i, Entry)))
                if not changes and {(r[0], r[1]) for r in stored} == set(keys):
                    pending = _as_outbox(stored)  # all stored now, as inserted: no need to read them back
                else:  # some stored before (a redelivery), or re-keyed since by an identity change
                    pending = await repo.unpublished_entries(uow.conn, keys)
                snapshots = await repo.profiles(uow.conn, sorted(touched))
                await uow.commit()
            await self._publish(dead, keys, pending, snapshots, gone, steps)
        finally:
            end_all(steps.values())

    def _decode(self, records: Sequence[Any]) -> tuple[list[OutboundRecord], list[tuple[str, Any]], list]:
        """(dead letters, decoded items, the headers each item came with)."""
        dead: list[OutboundRecord] = []
        items: list[tuple[str, Any]] = []
        headers: list = []
        for record in records:
            try:
                item = _item(self.vault.open(from_kafka(record.value, record.headers)))
            except Shredded:
                continue  # its customer was erased (a late event, or a rebuild replaying the log)
            except (InvalidEvent, ValidationError) as exc:
                dead.append(dead_letter(record, getattr(exc, "reason", "invalid_data"), exc))
                continue
            if item is not None:
                items.append(item)
                headers.append(record.headers)
        return dead, items, headers

    async def _apply(self, conn: asyncpg.Connection, items: list[tuple[str, Any]], changed: set,
                     stored: list) -> tuple[set, set]:
        """Apply items in the order they were consumed (a run of entries is stored together, an identity
        change applies between runs); returns (customers whose profile changed, customer ids gone), adds
        every customer that got an entry to ``changed`` and every entry row inserted to ``stored``."""
        touched: set[tuple[str, str]] = set()
        gone: set[tuple[str, str]] = set()
        run: list[tuple[str, Entry]] = []
        for tenant, item in items:
            if isinstance(item, Entry):
                run.append((tenant, item))
                continue
            if run:
                touched |= await self._store(conn, run, changed, stored)
                run = []
            await self._apply_change(conn, tenant, item, touched, gone)
        if run:
            touched |= await self._store(conn, run, changed, stored)
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

    async def _owners(self, conn: asyncpg.Connection, entries: list[tuple[str, Entry]]) -> tuple[dict, set]:
        """Each entry's customer now, and which of those customers were erased. The customer: through aliases
        (merges), then the latest split its identifiers fall under (an entry without identifiers stays with the
        customer, as a split moves only what its identifiers link to), then through aliases again (the customer
        split off may have been merged since). One round trip unless a split redirects an entry."""
        found = await repo.whereabouts(conn, {(t, e.customer_id) for t, e in entries})
        owners = {}
        redirected = set()
        for tenant, entry in entries:
            customer, _, splits = found[(tenant, entry.customer_id)]
            idents = set(entry.identifiers)
            for detached, new_customer in splits if idents else ():
                if idents <= detached:
                    customer = new_customer
                    redirected.add((tenant, customer))
                    break
            owners[(tenant, entry.source, entry.event_id)] = customer
        survivors = {(t, survivor): erased for (t, _), (survivor, erased, _) in found.items()}
        forgotten = {k for k, erased in survivors.items() if erased}
        if redirected:  # a customer split off may have been merged again since (an undone merge, merged once more)
            again = await repo.canonical_ids(conn, redirected)
            owners = {k: again.get((k[0], c), c) for k, c in owners.items()}
            forgotten |= await repo.erased(conn, {(k[0], c) for k, c in owners.items()} - survivors.keys())
        return owners, forgotten

    async def _store(self, conn: asyncpg.Connection, entries: list[tuple[str, Entry]], changed: set,
                     stored: list) -> set:
        """Insert the entries not stored yet; returns the customers whose profile changed, adds those that
        got an entry to ``changed`` and the rows inserted to ``stored``."""
        owners, forgotten = await self._owners(conn, entries)
        rows, idents = [], {}
        for tenant, entry in entries:
            customer = owners[(tenant, entry.source, entry.event_id)]
            if (tenant, customer) in forgotten:
                continue
            rows.append((tenant, entry.entry_id(tenant), customer, entry.occurred_at, entry.kind, entry.channel,
                         entry.source, entry.event_id, entry.payload(tenant), list(entry.identifiers), entry.sealkey))
            for ident in entry.identifiers:
                idents[(tenant, *ident.split(":", 1))] = customer
        inserted = await repo.insert_entries(conn, rows)
        new = {(r["tenant"], r["entry_id"]) for r in inserted}
        for row in rows:  # an event twice in the batch is one entry
            if (row[0], row[1]) in new:
                new.discard((row[0], row[1]))
                stored.append(row)
        self.on_stored(len(inserted))
        changed.update((r["tenant"], r["customer_id"]) for r in inserted)
        contacts = [r for r in inserted if r["kind"] == INTERACTION]
        await repo.fold_into_profiles(conn, _aggregate(contacts), [(t, ty, v, c) for (t, ty, v), c in idents.items()])
        return {(r["tenant"], r["customer_id"]) for r in contacts} | {(t, c) for (t, _, _), c in idents.items()}

    async def _publish(self, dead: list[OutboundRecord], keys: list[tuple[str, str]], pending: list, snapshots: list,
                       gone: set, steps: dict) -> None:
        """Publish the batch's dead letters, its entries still in the outbox and the snapshots of the customers it
        touched (read in the batch's transaction), then empty the outbox of the batch's entries."""
        await self.vault.load((r["tenant"], r["sealkey"]) for r in pending if r["sealkey"])
        outbound = list(dead)
        outbound.extend(filter(None, (self._entry_record(r, steps.get(r["entry_id"])) for r in pending)))
        outbound.extend(self._snapshot_record(r) for r in snapshots)
        outbound.extend(tombstone(self.customers_topic, m, t) for t, m in sorted(gone))
        await self.producer.send_all(outbound)
        if keys:  # every key of the batch: one stored by this batch and erased since left no entry to join
            async with self.pool.acquire() as conn:  # one statement, its own transaction
                await repo.mark_published(conn, keys)

    def _entry_record(self, row: Any, step: Step | None = None) -> OutboundRecord | None:
        """The entry's record, sealed again under its event's data key; None when that key was shredded (the
        entry is erased, or about to be)."""
        data = orjson.loads(row["payload"])
        data["customer_id"] = row["customer_id"]
        headers = [
            ("ce_specversion", b"1.0"), ("ce_id", row["entry_id"].encode()), ("ce_source", SOURCE.encode()),
            ("ce_type", types.TIMELINE_ENTRY_ADDED.encode()), ("content-type", b"application/json"),
            ("ce_time", data["occurred_at"].encode()), ("ce_tenant", row["tenant"].encode()),
        ]
        if row["sealkey"]:
            try:
                key = self.vault.key(row["tenant"], row["sealkey"])
            except KeyError:
                key = None
            if key is None:
                return None
            data = seal_data(data, row["tenant"], key, ENTRY_SEALED_FIELDS)
            headers.append((HEADER, key.kid.encode()))
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


def _item(event: CloudEvent) -> tuple[str, Entry | Any] | None:
    """(tenant, entry or identity change) of a decoded event; None for a type acknowledged without effect.

    Raises ``InvalidEvent`` or ``ValidationError`` for an event to dead-letter."""
    if not event.tenant:
        raise InvalidEvent("missing_attribute", "the tenant extension is required")
    if event.type == types.INTERACTION_RESOLVED:
        resolved = InteractionResolvedV1.model_validate(event.data)
        return event.tenant, interaction_entry(resolved, event.extensions.get(SEAL_EXTENSION))
    if event.type in CHANGES:
        return event.tenant, CHANGES[event.type].model_validate(event.data)
    if event.type in IGNORED:
        return None
    if event.type in ROUTING_MODELS:
        return event.tenant, routing_entry(event, ROUTING_MODELS[event.type].model_validate(event.data))
    if event.type in NOTIFICATION_MODELS:
        return event.tenant, notification_entry(event, NOTIFICATION_MODELS[event.type].model_validate(event.data))
    if event.type in FEEDBACK_MODELS:
        return event.tenant, feedback_entry(event, FEEDBACK_MODELS[event.type].model_validate(event.data))
    raise InvalidEvent("unsupported_type", f"event type {event.type!r} is not accepted here")


def _as_outbox(rows: list) -> list[dict[str, Any]]:
    """Entry rows as :func:`repository.unpublished_entries` reads them, in its order: timeline order, and
    insertion order (``seq``) among entries of the same instant."""
    ordered = sorted(range(len(rows)), key=lambda n: rows[n][3])  # stable: insertion order among equals
    return [{"tenant": rows[n][0], "entry_id": rows[n][1], "customer_id": rows[n][2], "payload": rows[n][8],
             "sealkey": rows[n][10]} for n in ordered]


def _aggregate(inserted: list[Any]) -> list[tuple[str, str, datetime, datetime, int, list[str]]]:
    acc: dict[tuple[str, str], list] = defaultdict(lambda: [None, None, 0, set()])
    for r in inserted:
        a = acc[(r["tenant"], r["customer_id"])]
        a[0] = r["occurred_at"] if a[0] is None else min(a[0], r["occurred_at"])
        a[1] = r["occurred_at"] if a[1] is None else max(a[1], r["occurred_at"])
        a[2] += 1
        a[3].add(r["channel"])
    return [(t, c, a[0], a[1], a[2], sorted(a[3])) for (t, c), a in acc.items()]
