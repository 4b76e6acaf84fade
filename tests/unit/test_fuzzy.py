"""Fuzzy matching of profiles (services.identity.fuzzy) and how the resolver applies the matches."""

from datetime import datetime, timedelta, timezone

import pytest

from services.identity import fuzzy
from services.identity.resolver import RULE_FUZZY, BatchResolver, Incoming, Profile
from services.identity.rules import Rules, TenantRulesConfig

pytestmark = pytest.mark.unit

T = "acme"
WHEN = datetime(2026, 5, 1, tzinfo=timezone.utc)


def aged(n: int):
    """The age of a customer created by an event n seconds after a day before WHEN (lower is older)."""
    return (WHEN - timedelta(days=1) + timedelta(seconds=n), "crm", f"created-{n}")
KATHARINA = {"given_name": "Katharina", "family_name": "Müller", "birth_date": "1984-03-07", "national_id": "12 345 678",
             "address": {"house_number": "12", "street": "Lindenstraße", "locality": "Berlin", "postcode": "10117",
                         "region": "BE"}}


def attrs(**changes) -> dict:
    data = {**KATHARINA, **{k: v for k, v in changes.items() if k != "address"}}
    if "address" in changes:
        data["address"] = {**KATHARINA["address"], **changes["address"]}
    return fuzzy.attributes(data)


def test_attributes_are_normalised_and_missing_ones_left_out():
    a = fuzzy.attributes({"given_name": "  Katharina-Luise ", "family_name": "Müller", "birth_date": "1984-03-07",
                          "address": {"postcode": "10 117", "street": None}})
    assert a == {"given_name": "katharina luise", "family_name": "muller", "birth_date": "19840307",
                 "postcode": "10117"}


def test_the_same_person_with_typos_scores_high_and_a_namesake_scores_low():
    same = fuzzy.score(fuzzy.DEFAULT_MODEL, attrs(), attrs(given_name="Katarina", address={"street": "Lindenstr"}))
    namesake = fuzzy.score(fuzzy.DEFAULT_MODEL, attrs(), attrs(birth_date="1990-11-23", national_id="98765432",
                                                               address={"house_number": "3", "street": "Hauptstraße",
                                                                        "postcode": "80331", "locality": "München"}))
    assert same.probability > 0.99
    assert namesake.probability < 0.01
    assert same.levels["given_name"] == 1 and same.levels["family_name"] == 0


def test_missing_values_add_nothing():
    full = fuzzy.score(fuzzy.DEFAULT_MODEL, attrs(), attrs())
    without_id = fuzzy.score(fuzzy.DEFAULT_MODEL, attrs(), {k: v for k, v in attrs().items() if k != "national_id"})
    assert "national_id" not in without_id.levels
    assert full.weight - without_id.weight == pytest.approx(fuzzy.DEFAULT_MODEL.weights["national_id"][0])


def test_profiles_sharing_no_blocking_key_are_not_candidates():
    stored = fuzzy.StoredProfile((T, "shop", "1"), "c1", attrs())
    other = fuzzy.attributes({"given_name": "Otto", "family_name": "Schmidt", "birth_date": "1950-01-01"})
    candidates = fuzzy.Candidates([stored])
    assert candidates.around(T, attrs(given_name="Katarina")) == [stored]
    assert candidates.around(T, other) == []
    assert candidates.around("globex", attrs()) == []  # tenants never meet


def test_best_by_customer_skips_the_profiles_own_customer_and_keeps_the_best_score():
    a1 = fuzzy.StoredProfile((T, "shop", "1"), "c1", attrs(given_name="Katja"))
    a2 = fuzzy.StoredProfile((T, "shop", "2"), "c1-alias", attrs())
    own = fuzzy.StoredProfile((T, "crm", "9"), "me", attrs())
    best = fuzzy.best_by_customer(fuzzy.DEFAULT_MODEL, attrs(), [a1, a2, own],
                                  lambda c: "c1" if c == "c1-alias" else c, exclude="me")
    assert list(best) == ["c1"]
    assert best["c1"].levels["given_name"] == 0  # the alias's exact profile, not the typo


def incoming(event_id: str, *identifiers) -> Incoming:
    return Incoming((T, "crm", event_id), tuple(identifiers), WHEN)


def test_a_match_above_the_threshold_merges_into_the_oldest_with_the_evidence():
    resolver = BatchResolver(owners={}, age={(T, "old"): aged(1)})
    event = incoming("e1", (T, "crm_id", "r-2"))
    customer = resolver.resolve(event)
    assert resolver.join_matches(event, customer, {"old": {"probability": 0.999}}, {}) == "old"
    plan = resolver.finish()
    (merge,) = plan.merges
    assert (merge.survivor_id, merge.merged_ids, merge.rule) == ("old", [customer], RULE_FUZZY)
    assert merge.evidence == {"old": {"probability": 0.999}}
    assert plan.assignments[event.key] == "old"


def test_a_match_between_the_thresholds_waits_for_review():
    resolver = BatchResolver(owners={}, age={(T, "old"): aged(1)})
    event = incoming("e1", (T, "crm_id", "r-2"))
    customer = resolver.resolve(event)
    assert resolver.join_matches(event, customer, {}, {"old": {"probability": 0.95}}) == customer
    plan = resolver.finish()
    assert plan.merges == []
    (review,) = plan.reviews
    assert (sorted(review.customers), review.rule, review.evidence) == (sorted([customer, "old"]), RULE_FUZZY,
                                                                        {"probability": 0.95})


def test_a_fuzzy_merge_that_would_join_two_user_ids_is_refused():
    rules = Rules.of(TenantRulesConfig())
    held = Profile({(T, "user_id", "u-1"): WHEN})
    resolver = BatchResolver(owners={(T, "user_id", "u-1"): "old"}, age={(T, "old"): aged(1)}, profiles={(T, "old"): held},
                             rules=lambda t: rules)
    event = incoming("e1", (T, "user_id", "u-2"))
    customer = resolver.resolve(event)
    assert resolver.join_matches(event, customer, {"old": {"probability": 0.9999}}, {}) == customer
    plan = resolver.finish()
    assert plan.merges == []
    (refusal,) = plan.refusals
    assert (refusal.identifier, refusal.rule) == ((T, "customer", "old"), "fuzzy:limit:user_id")
