"""Deterministic identity resolution over one batch. Pure logic: no database, no framework.

Given what the graph already says about the batch's identifiers (each known identifier's canonical customer,
every such customer's age, and the identifiers and merges each holds), events are resolved in order under
their tenant's :class:`~services.identity.rules.Rules`:
- blocked values are dropped (refused, rule ``blocked``);
- when linking the event would break a per-type limit (counted within its window of the event's time) or a
  per-customer cap, the event's lowest-priority identifier is dropped (refused, rule ``limit:<type>`` or
  ``cap:<merges|identifiers>``) and the event is matched again — so a new ``user_id`` arriving with a known
  e-mail address of a customer who has another ``user_id`` makes a new customer, not a merge;
- no known identifier left → a new customer, whose id is derived from the event (a replay derives the same id);
- identifiers of exactly one customer → that customer;
- an event older than every customer its identifiers belong to (a customer's age: the time of the event that
  created it, then that event's source and id) makes a new customer, and they are merged into it — so each
  customer's id derives from the oldest event of its person, whatever order events were processed in;
- identifiers of several customers → they are merged into the oldest one (the survivor), rule
  ``shared_identifier``; the others become aliases of the survivor. A merge that some customer would join
  only through identifiers of the rules' review types (a shared tablet's device id) is not applied: the event
  goes to the oldest of them and the merge waits in the review queue.
Unknown identifiers left on the event are then linked to the resolved customer.

A profile's fuzzy matches (``services.identity.fuzzy``) are applied after its identifiers: customers matched at
or above the merge threshold are merged with the profile's customer (rule ``fuzzy_profile``) unless the merge
would break a limit or a cap, in which case it is refused and recorded (rule ``fuzzy:<rule broken>``);
customers matched between the thresholds wait in the review queue with the score as evidence.

The caller holds locks that make this snapshot stable for the duration of its transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable

from services.identity.rules import DEFAULT_RULES, Rules
from shared.ids import uuid5

NAMESPACE = uuid.UUID("0b4f5a3e-3f7e-4c50-9a53-63a9c2f1f0d7")
RULE_SHARED_IDENTIFIER = "shared_identifier"
RULE_FUZZY = "fuzzy_profile"
RULE_REVIEW_TYPES = "review_types"
IdKey = tuple[str, str, str]  # tenant, type, value
EventKey = tuple[str, str, str]  # tenant, source, event id
Age = tuple[datetime, str, str]  # the creating event's time, source and id: lower is older


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
    # What each merged-away customer held at the merge ("type:value"), for undoing it.
    held: dict[str, list[str]] = field(default_factory=dict)
    rule: str = RULE_SHARED_IDENTIFIER
    evidence: dict | None = None  # a fuzzy merge's scores, per merged customer


@dataclass
class Plan:
    new_customers: list[tuple[str, str, EventKey]] = field(default_factory=list)  # tenant, id, created by
    new_identifiers: list[tuple[IdKey, str, EventKey]] = field(default_factory=list)  # id, customer, linked by
    # Known identifiers whose last-seen instant the batch may move forward (seen later than the customer's
    # profile knew; one seen earlier than that is not rewritten).
    seen_identifiers: set[IdKey] = field(default_factory=set)
    merges: list[Merge] = field(default_factory=list)
    assignments: dict[EventKey, str] = field(default_factory=dict)
    # merged id → survivor, flattened: every value is canonical at the end of the batch
    aliases: dict[tuple[str, str], str] = field(default_factory=dict)
    refusals: list["Refusal"] = field(default_factory=list)
    reviews: list["Review"] = field(default_factory=list)


@dataclass
class Profile:
    """What a customer holds: identifiers with when each was last seen, and how many customers were merged in."""

    identifiers: dict[IdKey, datetime] = field(default_factory=dict)
    merges: int = 0


@dataclass(frozen=True)
class Refusal:
    """An identifier of event ``trigger`` that was not linked, and why (``rule``: ``blocked``, ``limit:<type>``,
    ``cap:merges``, ``cap:identifiers``); ``customer`` is the customer the event resolved to."""

    trigger: EventKey
    identifier: IdKey
    rule: str
    customer: str = ""


@dataclass
class Review:
    """A merge of ``customers`` that event ``trigger`` would have made, held for a person to approve."""

    review_id: str
    tenant: str
    customers: list[str]
    linking: list[IdKey]
    trigger: EventKey
    rule: str = RULE_REVIEW_TYPES
    evidence: dict | None = None


def _age(event: Incoming) -> Age:
    return (event.occurred_at, event.key[1], event.key[2])


def _active(held: dict[IdKey, datetime], since: dict[str, datetime | None]) -> dict[str, int]:
    """Per limited type, how many of ``held`` count against its limit: those seen since the start of its window
    (``since``: type → that instant, ``None`` for a limit without window)."""
    counts: dict[str, int] = {}
    for (_, id_type, _), seen in held.items():
        if id_type in since:
            start = since[id_type]
            if start is None or seen >= start:
                counts[id_type] = counts.get(id_type, 0) + 1
    return counts


def customer_id_for(event: EventKey) -> str:
    tenant, source, event_id = event
    return uuid5(NAMESPACE, f"customer\x00{tenant}\x00{source}\x00{event_id}")


def merge_id_for(event: EventKey, survivor: str, rule: str = RULE_SHARED_IDENTIFIER) -> str:
    tenant, source, event_id = event
    suffix = "" if rule == RULE_SHARED_IDENTIFIER else f"\x00{rule}"
    return uuid5(NAMESPACE, f"merge\x00{tenant}\x00{source}\x00{event_id}\x00{survivor}{suffix}")


def review_id_for(tenant: str, customers: list[str]) -> str:
    """One review per set of customers: a proposal rejected once is not asked again."""
    return uuid5(NAMESPACE, "review\x00" + tenant + "\x00" + "\x00".join(sorted(customers)))


class BatchResolver:
    """Resolves a batch against a snapshot: ``owners`` (identifier → canonical customer), ``age`` (customer →
    creation rank; lower is older), ``profiles`` (customer → what it holds; needed for the owners' customers)
    and ``rules`` (tenant → its rules). A review is proposed once per batch and set of customers; its id is
    derived from that set, so the store keeps one (a rejected merge is not asked again)."""

    def __init__(self, owners: dict[IdKey, str], age: dict[tuple[str, str], Age],
                 profiles: dict[tuple[str, str], Profile] | None = None,
                 rules: Callable[[str], Rules] = lambda tenant: DEFAULT_RULES) -> None:
        self.owners = dict(owners)
        self.age = dict(age)
        self.profiles = dict(profiles or {})
        self.rules = rules
        self.proposed: set[str] = set()
        self.plan = Plan()
        self._aliased_to: dict[tuple[str, str], list[tuple[str, str]]] = {}  # canonical → its aliases in the plan

    def canonical(self, tenant: str, customer_id: str) -> str:
        return self.plan.aliases.get((tenant, customer_id), customer_id)

    def resolve(self, event: Incoming) -> str:
        tenant = event.key[0]
        rules = self.rules(tenant)
        idents, refused = self._allowed(event, rules)
        owners = self._owners_of(tenant, idents)
        linking = [i for i in idents if i in self.owners]
        if len(owners) > 1 and self._joins_only_by(tenant, linking, rules.review_types):
            customer = self._hold_for_review(event, owners, linking)
        elif not owners:
            customer = self._create(event)
        elif _age(event) < min(self.age[(tenant, c)] for c in owners):
            customer = self._merge(event, {*owners, self._create(event)}, linking)
        elif len(owners) == 1:
            customer = owners.pop()
        else:
            customer = self._merge(event, owners, linking)
        profile = self.profiles.setdefault((tenant, customer), Profile())
        for ident in idents:
            if ident in self.owners:
                seen = profile.identifiers.get(ident)
                if seen is None or event.occurred_at > seen:
                    self.plan.seen_identifiers.add(ident)
            else:
                self.owners[ident] = customer
                self.plan.new_identifiers.append((ident, customer, event.key))
            profile.identifiers[ident] = max(profile.identifiers.get(ident, event.occurred_at), event.occurred_at)
        self.plan.refusals.extend(Refusal(event.key, i, rule, customer) for i, rule in refused)
        self.plan.assignments[event.key] = customer
        return customer

    def _joins_only_by(self, tenant: str, linking: list[IdKey], review_types: frozenset[str]) -> bool:
        """True when some customer would join the merge only through identifiers of ``review_types`` (a shared
        tablet's device id, a cookie): evidence too weak to merge without a person."""
        strong: dict[str, bool] = {}
        for i in linking:
            owner = self.canonical(tenant, self.owners[i])
            strong[owner] = strong.get(owner, False) or i[1] not in review_types
        return not all(strong.values())

    def _owners_of(self, tenant: str, idents: list[IdKey]) -> set[str]:
        return {self.canonical(tenant, self.owners[i]) for i in idents if i in self.owners}

    def _allowed(self, event: Incoming, rules: Rules) -> tuple[list[IdKey], list[tuple[IdKey, str]]]:
        """The event's identifiers that may link, and the refused ones with their rule: blocked values first,
        then the lowest-priority identifier, one at a time, while linking would break a limit or a cap."""
        refused = [(i, "blocked") for i in event.identifiers if rules.blocked(i[2])]
        idents = [i for i in dict.fromkeys(event.identifiers) if not rules.blocked(i[2])]
        while idents:
            broken = self._broken(event, rules, idents)
            if broken is None:
                break
            drop = max(idents, key=lambda i: (rules.rank(i[1]), i[1], i[2]))
            idents.remove(drop)
            refused.append((drop, broken))
        return idents, refused

    def _broken(self, event: Incoming, rules: Rules, idents: list[IdKey]) -> str | None:
        """The rule that linking ``idents`` would break, if any. A limit or cap counts as broken only when the
        result holds more than the limit *and* more than any one of the customers already held (a customer
        over a limit from before the rule does not lose its events)."""
        tenant = event.key[0]
        return self._breaks(tenant, event.occurred_at, sorted(self._owners_of(tenant, idents)), idents, rules)

    def _breaks(self, tenant: str, at: datetime, customers: list[str], idents: list[IdKey], rules: Rules) -> str | None:
        """The rule that joining ``customers`` and linking ``idents`` to the result would break, if any."""
        holders = [self.profiles.get((tenant, c), Profile()) for c in customers]
        combined: dict[IdKey, datetime] = {}
        for p in holders:
            combined.update(p.identifiers)
        for i in idents:
            combined[i] = at
        if rules.limits:
            since = {t: (at - window if window is not None else None) for t, (_, window) in rules.limits.items()}
            after = _active(combined, since)
            over = sorted(t for t, n in after.items() if n > rules.limits[t][0])
            if over:
                before = [_active(p.identifiers, since) for p in holders]
                for id_type in over:
                    if after[id_type] > max((b.get(id_type, 0) for b in before), default=0):
                        return f"limit:{id_type}"
        if len(holders) > 1 and sum(p.merges for p in holders) + len(holders) - 1 > rules.max_merges:
            return "cap:merges"
        if len(combined) > rules.max_identifiers and len(combined) > max((len(p.identifiers) for p in holders), default=0):
            return "cap:identifiers"
        return None

    def finish(self) -> Plan:
        """Rewrite every assignment and new link to the customer that is canonical at the end."""
        plan = self.plan
        plan.assignments = {k: self.canonical(k[0], c) for k, c in plan.assignments.items()}
        plan.new_identifiers = [(i, self.canonical(i[0], c), by) for i, c, by in plan.new_identifiers]
        for merge in plan.merges:
            merge.survivor_id = self.canonical(merge.tenant, merge.survivor_id)
        plan.refusals = [Refusal(r.trigger, r.identifier, r.rule, self.canonical(r.trigger[0], r.customer))
                         for r in plan.refusals]
        for review in plan.reviews:
            review.customers = sorted({self.canonical(review.tenant, c) for c in review.customers})
        plan.reviews = [r for r in plan.reviews if len(r.customers) > 1]
        return plan

    def _create(self, event: Incoming) -> str:
        tenant = event.key[0]
        customer = customer_id_for(event.key)
        self.age[(tenant, customer)] = _age(event)
        self.plan.new_customers.append((tenant, customer, event.key))
        return customer

    def join_matches(self, event: Incoming, customer: str, merge: dict[str, dict], review: dict[str, dict]) -> str:
        """Apply a profile's fuzzy matches once its identifiers resolved it to ``customer``: ``merge`` and ``review``
        map the customers it matched (at or above the merge threshold, resp. between the thresholds) to the score's
        evidence. Returns the profile's customer afterwards."""
        tenant = event.key[0]
        rules = self.rules(tenant)
        current = self.canonical(tenant, customer)
        joined, evidence = [current], {}
        for other, score in sorted(merge.items()):
            other = self.canonical(tenant, other)
            if other in joined:
                continue
            broken = self._breaks(tenant, event.occurred_at, sorted({*joined, other}), [], rules)
            if broken is None:
                joined.append(other)
                evidence[other] = score
            else:
                self.plan.refusals.append(Refusal(event.key, (tenant, "customer", other), f"fuzzy:{broken}", current))
        if len(joined) > 1:
            current = self._merge(event, set(joined), [], RULE_FUZZY, evidence)
        for other, score in sorted(review.items()):
            other = self.canonical(tenant, other)
            if other != current:
                self._propose(event, {current, other}, [], RULE_FUZZY, score)
        return current

    def _hold_for_review(self, event: Incoming, owners: set[str], linking: list[IdKey]) -> str:
        """The event goes to the oldest customer; the merge waits for a person (once per set of customers)."""
        tenant = event.key[0]
        oldest = min(owners, key=lambda c: (self.age[(tenant, c)], c))
        self._propose(event, owners, linking, RULE_REVIEW_TYPES, None)
        return oldest

    def _propose(self, event: Incoming, customers: set[str], linking: list[IdKey], rule: str,
                 evidence: dict | None) -> None:
        tenant = event.key[0]
        review_id = review_id_for(tenant, sorted(customers))
        if review_id not in self.proposed:
            self.proposed.add(review_id)
            self.plan.reviews.append(Review(review_id, tenant, sorted(customers), sorted(linking), event.key, rule,
                                            evidence))

    def _merge(self, event: Incoming, owners: set[str], linking: list[IdKey], rule: str = RULE_SHARED_IDENTIFIER,
               evidence: dict | None = None) -> str:
        tenant = event.key[0]
        survivor = min(owners, key=lambda c: (self.age[(tenant, c)], c))
        merged = sorted(owners - {survivor})
        kept = self.profiles.setdefault((tenant, survivor), Profile())
        held = {}
        for old in merged:
            gone = self.profiles.pop((tenant, old), Profile())
            held[old] = sorted(f"{i[1]}:{i[2]}" for i in gone.identifiers)
            kept.identifiers.update(gone.identifiers)
            kept.merges += gone.merges + 1
        # Keep every alias pointing at a canonical id: the merged ones, and what pointed at them.
        into = self._aliased_to.setdefault((tenant, survivor), [])
        for old in merged:
            self.plan.aliases[(tenant, old)] = survivor
            into.append((tenant, old))
            for alias in self._aliased_to.pop((tenant, old), ()):
                self.plan.aliases[alias] = survivor
                into.append(alias)
        self.plan.merges.append(
            Merge(merge_id_for(event.key, survivor, rule), tenant, survivor, merged, linking, event.key, held, rule,
                  evidence)
        )
        return survivor
