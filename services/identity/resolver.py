"""Deterministic identity resolution over one batch. Pure logic: no database, no framework.

Given what the graph already says about the batch's identifiers (each known identifier's canonical customer
and every such customer's age), events are resolved in order:
- no known identifier → a new customer, whose id is derived from the event (so a replay derives the same id);
- identifiers of exactly one customer → that customer;
- identifiers of several customers → they are merged into the oldest one (the survivor), rule
  ``shared_identifier``; the others become aliases of the survivor.
Unknown identifiers of the event are then linked to the resolved customer.

The caller holds locks that make this snapshot stable for the duration of its transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

NAMESPACE = uuid.UUID("0b4f5a3e-3f7e-4c50-9a53-63a9c2f1f0d7")
IdKey = tuple[str, str, str]  # tenant, type, value
EventKey = tuple[str, str, str]  # tenant, source, event id


@dataclass(frozen=True)
class Incoming:
    key: EventKey
    identifiers: tuple[IdKey, ...]
    occurred_at: datetime


@dataclass
class Merge:
    merge_id: str
    tenant: str
    survivor_id: str
    merged_ids: list[str]
    linking: list[IdKey]
    trigger: EventKey


@dataclass
class Plan:
    new_customers: list[tuple[str, str, EventKey]] = field(default_factory=list)  # tenant, id, created by
    new_identifiers: list[tuple[IdKey, str, EventKey]] = field(default_factory=list)  # id, customer, linked by
    seen_identifiers: set[IdKey] = field(default_factory=set)
    merges: list[Merge] = field(default_factory=list)
    assignments: dict[EventKey, str] = field(default_factory=dict)
    # merged id → survivor, flattened: every value is canonical at the end of the batch
    aliases: dict[tuple[str, str], str] = field(default_factory=dict)


def customer_id_for(event: EventKey) -> str:
    tenant, source, event_id = event
    return str(uuid.uuid5(NAMESPACE, f"customer\x00{tenant}\x00{source}\x00{event_id}"))


def merge_id_for(event: EventKey, survivor: str) -> str:
    tenant, source, event_id = event
    return str(uuid.uuid5(NAMESPACE, f"merge\x00{tenant}\x00{source}\x00{event_id}\x00{survivor}"))


class BatchResolver:
    """Resolves a batch against a snapshot: ``owners`` (identifier → canonical customer) and ``age``
    (customer → creation rank; lower is older)."""

    def __init__(self, owners: dict[IdKey, str], age: dict[tuple[str, str], int]) -> None:
        self.owners = dict(owners)
        self.age = dict(age)
        self.plan = Plan()
        self._next_age = max(age.values(), default=0) + 1

    def canonical(self, tenant: str, customer_id: str) -> str:
        return self.plan.aliases.get((tenant, customer_id), customer_id)

    def resolve(self, event: Incoming) -> str:
        tenant = event.key[0]
        owners = {self.canonical(tenant, self.owners[i]) for i in event.identifiers if i in self.owners}
        if not owners:
            customer = self._create(event)
        elif len(owners) == 1:
            customer = owners.pop()
        else:
            customer = self._merge(event, owners)
        for ident in event.identifiers:
            if ident in self.owners:
                self.plan.seen_identifiers.add(ident)
            else:
                self.owners[ident] = customer
                self.plan.new_identifiers.append((ident, customer, event.key))
        self.plan.assignments[event.key] = customer
        return customer

    def finish(self) -> Plan:
        """Rewrite every assignment and new link to the customer that is canonical at the end."""
        plan = self.plan
        plan.assignments = {k: self.canonical(k[0], c) for k, c in plan.assignments.items()}
        plan.new_identifiers = [(i, self.canonical(i[0], c), by) for i, c, by in plan.new_identifiers]
        for merge in plan.merges:
            merge.survivor_id = self.canonical(merge.tenant, merge.survivor_id)
        return plan

    def _create(self, event: Incoming) -> str:
        tenant = event.key[0]
        customer = customer_id_for(event.key)
        self.age[(tenant, customer)] = self._next_age
        self._next_age += 1
        self.plan.new_customers.append((tenant, customer, event.key))
        return customer

    def _merge(self, event: Incoming, owners: set[str]) -> str:
        tenant = event.key[0]
        survivor = min(owners, key=lambda c: (self.age[(tenant, c)], c))
        merged = sorted(owners - {survivor})
        for old in merged:
            self.plan.aliases[(tenant, old)] = survivor
        for alias, target in list(self.plan.aliases.items()):
            if alias[0] == tenant and target in merged:
                self.plan.aliases[alias] = survivor
        linking = [i for i in event.identifiers if i in self.owners]
        self.plan.merges.append(
            Merge(merge_id_for(event.key, survivor), tenant, survivor, merged, linking, event.key)
        )
        return survivor
