from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.identity.resolver import BatchResolver, Incoming, Profile, customer_id_for

pytestmark = pytest.mark.unit

T = "acme"
WHEN = datetime(2024, 5, 1, tzinfo=timezone.utc)


def aged(n: int):
    """The age of a customer created by an event n seconds after a day before WHEN (lower is older)."""
    return (WHEN - timedelta(days=1) + timedelta(seconds=n), "crm", f"created-{n}")


def email(value: str, tenant: str = T):
    return (tenant, "email", value)


def phone(value: str, tenant: str = T):
    return (tenant, "phone", value)


def event(event_id: str, *identifiers, tenant: str = T) -> Incoming:
    return Incoming(key=(tenant, "crm", event_id), identifiers=tuple(identifiers), occurred_at=WHEN)


def test_new_identifiers_create_a_customer():
    resolver = BatchResolver(owners={}, age={})
    e1 = event("e1", email("a@x.org"), phone("+491"))
    customer = resolver.resolve(e1)
    plan = resolver.finish()
    assert customer == customer_id_for(e1.key)
    assert plan.new_customers == [(T, customer, e1.key)]
    assert plan.new_identifiers == [(email("a@x.org"), customer, e1.key), (phone("+491"), customer, e1.key)]
    assert plan.assignments == {e1.key: customer}
    assert plan.merges == [] and plan.aliases == {}


def test_known_identifier_resolves_to_its_customer_and_links_new_ones():
    resolver = BatchResolver(owners={email("a@x.org"): "c-old"}, age={(T, "c-old"): aged(1)})
    e1 = event("e1", email("a@x.org"), phone("+491"))
    assert resolver.resolve(e1) == "c-old"
    plan = resolver.finish()
    assert plan.new_customers == []
    assert plan.new_identifiers == [(phone("+491"), "c-old", e1.key)]
    assert plan.seen_identifiers == {email("a@x.org")}


def test_only_identifiers_seen_later_than_their_stored_last_seen_are_written_back():
    """``seen_identifiers`` is what the batch writes back (last_seen); an older sighting changes nothing there."""
    stored = Profile(identifiers={email("a@x.org"): WHEN, phone("+491"): WHEN - timedelta(hours=1)})
    resolver = BatchResolver(owners={email("a@x.org"): "c-old", phone("+491"): "c-old"}, age={(T, "c-old"): aged(1)},
                             profiles={(T, "c-old"): stored})
    older = Incoming(key=(T, "crm", "e1"), identifiers=(email("a@x.org"), phone("+491")),
                     occurred_at=WHEN - timedelta(minutes=30))
    assert resolver.resolve(older) == "c-old"
    assert resolver.finish().seen_identifiers == {phone("+491")}


def test_second_event_in_batch_resolves_to_customer_created_by_first():
    resolver = BatchResolver(owners={}, age={})
    first = resolver.resolve(event("e1", email("a@x.org")))
    e2 = event("e2", email("a@x.org"), phone("+491"))
    assert resolver.resolve(e2) == first
    plan = resolver.finish()
    assert len(plan.new_customers) == 1
    assert (phone("+491"), first, e2.key) in plan.new_identifiers


def test_identifiers_of_two_customers_merge_into_the_older():
    owners = {email("a@x.org"): "c-young", phone("+491"): "c-old"}
    resolver = BatchResolver(owners=owners, age={(T, "c-young"): aged(5), (T, "c-old"): aged(2)})
    e1 = event("e1", email("a@x.org"))
    e2 = event("e2", email("a@x.org"), phone("+491"), email("new@x.org"))
    assert resolver.resolve(e1) == "c-young"
    assert resolver.resolve(e2) == "c-old"
    plan = resolver.finish()

    [merge] = plan.merges
    assert (merge.tenant, merge.survivor_id, merge.merged_ids) == (T, "c-old", ["c-young"])
    assert merge.linking == [email("a@x.org"), phone("+491")]
    assert merge.trigger == e2.key
    assert plan.aliases == {(T, "c-young"): "c-old"}
    assert plan.assignments == {e1.key: "c-old", e2.key: "c-old"}  # e1 rewritten to the survivor
    assert plan.new_identifiers == [(email("new@x.org"), "c-old", e2.key)]


def test_customer_created_in_batch_is_younger_than_existing_ones():
    resolver = BatchResolver(owners={phone("+491"): "c-old"}, age={(T, "c-old"): aged(7)})
    e1 = event("e1", email("a@x.org"))
    created = resolver.resolve(e1)
    assert resolver.resolve(event("e2", email("a@x.org"), phone("+491"))) == "c-old"
    plan = resolver.finish()
    assert plan.merges[0].merged_ids == [created]
    assert plan.assignments[e1.key] == "c-old"
    assert plan.new_identifiers == [(email("a@x.org"), "c-old", e1.key)]  # link rewritten too


def test_merge_chain_points_everything_at_the_final_survivor():
    owners = {email("a@x.org"): "A", email("b@x.org"): "B", email("c@x.org"): "C"}
    age = {(T, "A"): aged(3), (T, "B"): aged(2), (T, "C"): aged(1)}
    resolver = BatchResolver(owners=owners, age=age)
    e0 = event("e0", email("a@x.org"))
    e1 = event("e1", email("a@x.org"), email("b@x.org"))  # A into B
    e2 = event("e2", email("b@x.org"), email("c@x.org"))  # B into C
    e3 = event("e3", email("a@x.org"), phone("+491"))
    for e in (e0, e1, e2, e3):
        resolver.resolve(e)
    plan = resolver.finish()

    assert set(plan.assignments.values()) == {"C"}
    assert plan.aliases == {(T, "A"): "C", (T, "B"): "C"}
    assert [(m.survivor_id, m.merged_ids) for m in plan.merges] == [("C", ["A"]), ("C", ["B"])]
    assert plan.new_identifiers == [(phone("+491"), "C", e3.key)]


def test_resolution_is_deterministic():
    def run():
        owners = {email("a@x.org"): "A", email("b@x.org"): "B", phone("+491"): "C"}
        resolver = BatchResolver(owners=owners, age={(T, "A"): aged(2), (T, "B"): aged(2), (T, "C"): aged(4)})
        for e in (event("e1", email("n@x.org")),
                  event("e2", email("b@x.org"), phone("+491"), email("a@x.org")),
                  event("e3", email("n@x.org"), phone("+491"))):
            resolver.resolve(e)
        return resolver.finish()

    first, second = run(), run()
    assert first == second
    assert first.merges[0].survivor_id == "A"  # equal age: lowest id wins


def test_tenants_never_mix():
    resolver = BatchResolver(owners={}, age={})
    e1 = event("e1", email("a@x.org", tenant="t1"), tenant="t1")
    e2 = event("e1", email("a@x.org", tenant="t2"), tenant="t2")
    c1, c2 = resolver.resolve(e1), resolver.resolve(e2)
    plan = resolver.finish()
    assert c1 != c2
    assert plan.merges == []
    assert [(t, c) for t, c, _ in plan.new_customers] == [("t1", c1), ("t2", c2)]


def test_tenant_snapshot_does_not_leak():
    resolver = BatchResolver(owners={email("a@x.org", tenant="t1"): "c1"}, age={("t1", "c1"): aged(1)})
    e2 = event("e2", email("a@x.org", tenant="t2"), tenant="t2")
    assert resolver.resolve(e2) == customer_id_for(e2.key)


def test_an_event_older_than_the_customer_it_joins_founds_it_and_the_customer_merges_into_it():
    resolver = BatchResolver(owners={email("a@x.org"): "c-new"}, age={(T, "c-new"): (WHEN, "crm", "later")})
    older = Incoming((T, "crm", "earlier"), (email("a@x.org"), phone("+491")), WHEN - timedelta(hours=1))
    customer = resolver.resolve(older)
    plan = resolver.finish()
    assert customer == customer_id_for(older.key)
    (merge,) = plan.merges
    assert (merge.survivor_id, merge.merged_ids) == (customer, ["c-new"])
    assert plan.aliases == {(T, "c-new"): customer}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sets(st.integers(0, 11), min_size=1, max_size=3), min_size=1, max_size=25), st.randoms())
def test_the_customers_formed_do_not_depend_on_the_order_events_are_processed_in(links, rnd):
    """Events over a small pool of identifiers (no limits apply to them), processed in two orders: every event
    ends with the same customer id."""
    events = [Incoming((T, "crm", f"e{n}"), tuple((T, "account_id", f"acc-{i}") for i in sorted(ids)),
                       WHEN + timedelta(seconds=rnd.randrange(1000)))
              for n, ids in enumerate(links)]
    results = []
    for order in (events, rnd.sample(events, len(events))):
        resolver = BatchResolver(owners={}, age={})
        for event in order:
            resolver.resolve(event)
        results.append(resolver.finish().assignments)
    assert results[0] == results[1]
