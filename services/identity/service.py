"""Identity use case: resolve a batch of ingested interactions to customers and publish the results.

Guarantees
- Each upstream event (tenant, source, id) changes the graph once (``identity.processed_events`` is written in
  the same transaction as the graph changes).
- Its resolved form is published after the transaction committed and before the offsets are committed, with a
  deterministic CloudEvents id; a redelivered event is published again with its customer's *current* id.
- Merge events are written to ``identity.merges`` in the same transaction (outbox) and published after the
  batch until acknowledged; what a crash or a failed publish left there goes out within ``SWEEP_SECONDS``.
- Profiles (``touchpoint.profile.ingested.v1``, on the same topic) resolve by their identifiers like
  interactions, then are matched fuzzily against stored profiles sharing a blocking key
  (``services.identity.fuzzy``); they are stored with their blocking keys in the same transaction, under
  advisory locks on those keys, so two instances never miss each other's profiles. Profiles are not published.
- Sealed personal fields (``shared.vault``) are opened to resolve and re-sealed under the same key; the key's
  owner (the customer the event resolved to) is recorded in the same transaction, for erasure. An event whose
  key was shredded belongs to an erased customer and is skipped.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from datetime import datetime, timezone
from typing import Any, Callable, Sequence

import asyncpg
import orjson
from pydantic import ValidationError

from services.identity import fuzzy
from services.identity import repository as repo
from services.identity.resolver import BatchResolver, EventKey, IdKey, Incoming, Plan
from services.identity.rules import DEFAULT_RULES, Rules
from shared.cloudevents import CloudEvent, InvalidEvent, from_kafka
from shared.contracts import types
from shared.contracts.identity import CustomersMergedV1
from shared.contracts.interaction import Identifier, InteractionIngestedV1
from shared.contracts.profile import ProfileIngestedV1
from shared.db import UnitOfWork
from shared.ids import uuid5
from shared.kafka import EventProducer, OutboundRecord, dead_letter, event_record
from shared.loops import together
from shared.telemetry import Step, Steps, end_all
from shared.vault import (
    INTERACTION_FIELDS,
    MERGE_FIELDS,
    SPLIT_FIELDS,
    DataKey,
    Shredded,
    Vault,
    owned_keys,
    record_owners,
    seal,
)

log = logging.getLogger(__name__)
Ingested = InteractionIngestedV1 | ProfileIngestedV1
ACCEPTED: dict[str, type[Ingested]] = {types.INTERACTION_INGESTED: InteractionIngestedV1,
                                       types.PROFILE_INGESTED: ProfileIngestedV1}
SOURCE = "touchpoint/identity"
NAMESPACE = uuid.UUID("a3d1f2b4-9c7e-4b1a-8e2f-5d6c7b8a9f01")
MAX_LOCK_ROUNDS = 5
SWEEP_SECONDS = 5.0


class IdentityService:
    def __init__(self, pool: asyncpg.Pool, producer: EventProducer, output_topic: str, steps: Steps | None = None,
                 on_created: Callable[[int], None] = lambda n: None,
                 on_merged: Callable[[int], None] = lambda n: None,
                 rules: Callable[[str], Rules] = lambda tenant: DEFAULT_RULES, vault: Vault | None = None,
                 model: fuzzy.Model = fuzzy.DEFAULT_MODEL, clock: Callable[[], float] = time.monotonic) -> None:
        self.pool = pool
        self.model = model
        self.vault = vault or Vault(pool)
        self.rules = rules
        self.producer = producer
        self.output_topic = output_topic
        self.steps = steps or Steps(None, "identity")
        self.on_created = on_created
        self.on_merged = on_merged
        self.clock = clock
        # The outbox is read after a batch that wrote merges, and every SWEEP_SECONDS for what others left:
        # a crash before the publish (its batch is redelivered, already processed, and writes none), or an
        # operator's change whose publish failed. The first batch sweeps.
        self._merges_waiting = False
        self._next_sweep = 0.0
        # Batches of several consumers may finish together: one reads and publishes the outbox at a time, so
        # the same rows are not published twice by one process.
        self._publishing = asyncio.Lock()

    async def process(self, records: Sequence[Any]) -> None:
        """Handle one batch from the ingested-interactions topic. Idempotent; raises only transient errors."""
        await self.vault.prefetch(records)
        outbound, events, traces, keys = self._decode(records)
        steps = {k: self.steps.start("identity.resolve", traces[k]) for k in events} if self.steps.enabled else {}
        try:
            if events:
                assignments = await self._resolve(events, {k: key.kid for k, key in keys.items()})
                outbound.extend(self._resolved_record(t, i, assignments[k], keys.get(k), steps.get(k))
                                for k, (t, i) in events.items() if isinstance(i, InteractionIngestedV1))
            if self._merges_waiting or self.clock() >= self._next_sweep:
                # Independent once the batch committed: its resolved records, and the outbox (merges carry the
                # survivor's id, which the resolved records carry already, so their order does not matter).
                await together(self.producer.send_all(outbound), self.publish_pending_merges())
            else:
                await self.producer.send_all(outbound)
        finally:
            end_all(steps.values())

    def _decode(self, records: Sequence[Any]) -> tuple[list[OutboundRecord], dict[EventKey, tuple[str, Ingested]], dict, dict]:
        """(dead letters, events, the headers each came with, the data key each was sealed under).

        The keys are taken here, right after the batch's prefetch: the cache may drop them while the batch awaits
        the database."""
        dead: list[OutboundRecord] = []
        events: dict[EventKey, tuple[str, Ingested]] = {}
        traces: dict[EventKey, Any] = {}
        keys: dict[EventKey, DataKey] = {}
        for record in records:
            try:
                event = self.vault.open(from_kafka(record.value, record.headers))
                model = ACCEPTED.get(event.type)
                if model is None or not event.tenant:
                    raise InvalidEvent("unsupported_type", f"{event.type!r} without tenant or not accepted here")
                interaction = model.model_validate(event.data)
            except Shredded:
                continue  # its customer was erased
            except (InvalidEvent, ValidationError) as exc:
                dead.append(dead_letter(record, getattr(exc, "reason", "invalid_data"), exc))
                continue
            key = (event.tenant, interaction.source, interaction.event_id)
            events.setdefault(key, (event.tenant, interaction))
            traces.setdefault(key, record.headers)
            if "sealkey" in event.extensions and key not in keys:
                keys[key] = self.vault.key(event.tenant, event.extensions["sealkey"])
        return dead, events, traces, keys

    async def _resolve(self, events: dict[EventKey, tuple[str, Ingested]],
                       kids: dict[EventKey, str]) -> dict[EventKey, str]:
        incoming = [
            Incoming(key, tuple((tenant, i.type, i.value) for i in it.identifiers), it.occurred_at)
            for key, (tenant, it) in events.items()
        ]
        attrs = {k: fuzzy.attributes(it.model_dump()) for k, (tenant, it) in events.items()
                 if isinstance(it, ProfileIngestedV1) and self.rules(tenant).fuzzy_merge_above is not None}
        blocks = sorted({(k[0], b) for k, a in attrs.items() for b in fuzzy.block_keys(a)})
        async with UnitOfWork(self.pool, probes=True) as uow:
            await repo.lock_identifiers(uow.conn, [*(i for e in incoming for i in e.identifiers),
                                                   *((t, repo.BLOCK, b) for t, b in blocks)])
            done = await repo.processed(uow.conn, list(events))
            todo = [e for e in incoming if e.key not in done]
            if todo:
                plan = await self._plan(uow.conn, todo, attrs, blocks)
                await self._write(uow.conn, plan, todo)
                self._merges_waiting = self._merges_waiting or bool(plan.merges)
                await repo.insert_profiles(uow.conn, [(e.key, plan.assignments[e.key], attrs[e.key], e.occurred_at)
                                                      for e in todo if e.key in attrs])
                await record_owners(uow.conn, ((k[0], kids[k], c) for k, c in plan.assignments.items() if k in kids))
            await uow.commit()
        return {**done, **(plan.assignments if todo else {})}

    async def _plan(self, conn: asyncpg.Connection, todo: list[Incoming], attrs: dict[EventKey, dict],
                    blocks: list[tuple[str, str]]) -> Plan:
        """Lock what the batch may change (the customers owning its identifiers and those of the stored profiles
        its profiles may match), then resolve every event against that snapshot."""
        idents = sorted({i for e in todo for i in e.identifiers})
        owners = await repo.owners(conn, idents)
        stored = await repo.profile_candidates(conn, blocks)
        locked: dict[tuple[str, str], tuple[repo.Age, str | None]] = {}
        for _ in range(MAX_LOCK_ROUNDS):
            held = {(i[0], c) for i, c in owners.items()} | {(p.key[0], p.customer) for p in stored}
            locked.update(await repo.lock_customers(conn, held - set(locked)))
            if all(locked[k][1] is None for k in held):
                break
            owners = await repo.owners(conn, idents)  # merged underneath us before we locked: look again
            stored = await repo.profile_candidates(conn, blocks)
        else:
            raise asyncpg.SerializationError("identity graph kept changing under the batch")
        resolver = BatchResolver(owners, {k: age for k, (age, _) in locked.items()}, await repo.profiles(conn, held),
                                 self.rules)
        candidates = fuzzy.Candidates(stored)
        # Oldest first: a person's events in one batch then never found a customer only to merge it into an
        # older one moments later (the result is the same in any order; this order makes no extra merges).
        for event in sorted(todo, key=lambda e: (e.occurred_at, e.key)):
            customer = resolver.resolve(event)
            if event.key in attrs:
                self._match(resolver, candidates, event, customer, attrs[event.key])
        return resolver.finish()

    def _match(self, resolver: BatchResolver, candidates: fuzzy.Candidates, event: Incoming, customer: str,
               attrs: dict) -> None:
        """Score a profile against the candidates around it and apply the matches; then it is a candidate too."""
        tenant = event.key[0]
        rules = self.rules(tenant)
        scores = fuzzy.best_by_customer(self.model, attrs, candidates.around(tenant, attrs),
                                        lambda c: resolver.canonical(tenant, c), resolver.canonical(tenant, customer))
        merge = {c: s.evidence() for c, s in scores.items() if s.probability >= rules.fuzzy_merge_above}
        review = {c: s.evidence() for c, s in scores.items()
                  if rules.fuzzy_review_above <= s.probability < rules.fuzzy_merge_above}
        customer = resolver.join_matches(event, customer, merge, review) if merge or review else customer
        candidates.add(fuzzy.StoredProfile(event.key, customer, attrs))

    async def _write(self, conn: asyncpg.Connection, plan: Plan, todo: list[Incoming]) -> None:
        occurred = {e.key: e.occurred_at for e in todo}
        last_seen: dict[IdKey, datetime] = {}
        for e in todo:
            for i in e.identifiers:
                last_seen[i] = max(last_seen.get(i, e.occurred_at), e.occurred_at)
        await repo.insert_customers(conn, plan.new_customers, occurred)
        await repo.apply_aliases(conn, plan.aliases)
        await repo.insert_identifiers(conn, plan.new_identifiers, occurred, last_seen)
        await repo.touch_identifiers(conn, {i: last_seen[i] for i in plan.seen_identifiers})
        await repo.insert_processed(conn, plan.assignments)
        await repo.insert_merges(conn, plan.merges)
        await repo.insert_refusals(conn, plan.refusals)
        await repo.insert_reviews(conn, plan.reviews)
        self.on_created(len(plan.new_customers))
        self.on_merged(sum(len(m.merged_ids) for m in plan.merges))

    def _resolved_record(self, tenant: str, interaction: InteractionIngestedV1, customer_id: str,
                         key: DataKey | None, step: Step | None) -> OutboundRecord:
        data = interaction.model_dump(mode="json")
        data["customer_id"] = customer_id
        event = CloudEvent(
            id=uuid5(NAMESPACE, f"resolved\x00{tenant}\x00{interaction.source}\x00{interaction.event_id}"),
            source=SOURCE, type=types.INTERACTION_RESOLVED, time=datetime.now(timezone.utc), data=data,
            extensions={"tenant": tenant},
        )
        if key is not None:
            seal(event, tenant, key, INTERACTION_FIELDS)
        return event_record(self.output_topic, customer_id, event, step.headers() if step else None)

    async def publish_pending_merges(self) -> int:
        """Publish outbox events not yet acknowledged: merges, splits and erasures (this batch's, an operator's,
        and any a crash left behind)."""
        async with self._publishing:
            self._merges_waiting = False  # set before reading: a merge committed meanwhile sets it again
            self._next_sweep = self.clock() + SWEEP_SECONDS
            try:
                return await self._publish_pending()
            except BaseException:
                self._merges_waiting = True
                raise

    async def _publish_pending(self) -> int:
        async with UnitOfWork(self.pool) as uow:
            merges = await repo.unpublished_merges(uow.conn)
            changes = await repo.unpublished_changes(uow.conn)
            if not merges and not changes:
                return 0
            kids = await owned_keys(uow.conn, [(r["tenant"], r["survivor_id"]) for r in merges]
                                    + [(r["tenant"], r["subject"]) for r in changes])
        await self.vault.load((tenant, kid) for (tenant, _), kid in kids.items())

        def key(tenant: str, customer_id: str) -> DataKey | None:
            kid = kids.get((tenant, customer_id))
            return self.vault.key(tenant, kid) if kid else None

        await self.producer.send_all([self._merge_record(r, key(r["tenant"], r["survivor_id"])) for r in merges]
                                     + [self._change_record(r, key(r["tenant"], r["subject"])) for r in changes])
        async with UnitOfWork(self.pool) as uow:
            await repo.mark_merges_published(uow.conn, [r["merge_id"] for r in merges])
            await repo.mark_changes_published(uow.conn, [r["change_id"] for r in changes])
            await uow.commit()
        if len(merges) == repo.OUTBOX_PAGE or len(changes) == repo.OUTBOX_PAGE:
            self._merges_waiting = True  # more than a page waits: the next batch reads on
        return len(merges) + len(changes)

    def _change_record(self, row: Any, key: DataKey | None) -> OutboundRecord:
        """A split's identifiers are sealed under a key of the customer split from (when it owns one)."""
        event = CloudEvent(id=row["change_id"], source=SOURCE, type=row["event_type"], time=row["created_at"],
                           data=orjson.loads(row["payload"]), extensions={"tenant": row["tenant"]})
        if key is not None and row["event_type"] == types.CUSTOMER_SPLIT:
            seal(event, row["tenant"], key, SPLIT_FIELDS)
        return event_record(self.output_topic, row["subject"], event)

    def _merge_record(self, row: Any, key: DataKey | None) -> OutboundRecord:
        """The linking identifiers are sealed under a key of the survivor (when it owns one)."""
        merged = CustomersMergedV1(
            merge_id=row["merge_id"], survivor_id=row["survivor_id"], merged_ids=list(row["merged_ids"]),
            rule=row["rule"], linking_identifiers=[Identifier(**i) for i in orjson.loads(row["linking"])],
            trigger_source=row["trigger_source"], trigger_event_id=row["trigger_event"], merged_at=row["merged_at"],
        )
        event = CloudEvent(id=row["merge_id"], source=SOURCE, type=types.CUSTOMERS_MERGED, time=row["merged_at"],
                           data=merged.model_dump(mode="json"), extensions={"tenant": row["tenant"]})
        if key is not None:
            seal(event, row["tenant"], key, MERGE_FIELDS)
        return event_record(self.output_topic, row["survivor_id"], event)
