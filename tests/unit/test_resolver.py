from datetime import datetime, timezone

import pytest

from services.identity.resolver import BatchResolver, Incoming, customer_id_for

pytestmark = pytest.mark.unit

T = "acme"
WHEN = datetime(2024, 5, 1, tzinfo=timezone.utc)


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
    resolver = BatchResolver(owners={email("a@x.org"): "c-old"}, age={(T, "c-old"): 1})
    e1 = event("e1", email("a@x.org"), phone("+491"))
    assert resolver.resolve(e1) == "c-old"
    plan = resolver.finish()
    assert plan.new_customers == []
    assert plan.new_identifiers == [(phone("+491"), "c-old", e1.key)]
    assert plan.seen_identifiers == {email("a@x.org")}


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
    resolver = BatchResolver(owners=owners, age={(T, "c-young"): 5, (T, "c-old"): 2})
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
    resolver = BatchResolver(owners={phone("+491"): "c-old"}, age={(T, "c-old"): 7})
    e1 = event("e1", email("a@x.org"))
    created = resolver.resolve(e1)
    assert resolver.resolve(event("e2", email("a@x.org"), phone("+491"))) == "c-old"
    plan = resolver.finish()
    assert plan.merges[0].merged_ids == [created]
    assert plan.assignments[e1.key] == "c-old"
    assert plan.new_identifiers == [(email("a@x.org"), "c-old", e1.key)]  # link rewritten too


def test_merge_chain_points_everything_at_the_final_survivor():
    owners = {email("a@x.org"): "A", email("b@x.org"): "B", email("c@x.org"): "C"}
    age = {(T, "A"): 3, (T, "B"): 2, (T, "C"): 1}
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
        resolver = BatchResolver(owners=owners, age={(T, "A"): 2, (T, "B"): 2, (T, "C"): 4})
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
    resolver = BatchResolver(owners={email("a@x.org", tenant="t1"): "c1"}, age={("t1", "c1"): 1})
    e2 = event("e2", email("a@x.org", tenant="t2"), tenant="t2")
    assert resolver.resolve(e2) == customer_id_for(e2.key)
