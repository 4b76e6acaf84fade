"""Identity rules in the resolver: blocked values, limits with windows, priority drop and re-match, caps,
shared-identifier protection and the review queue; and the rules file (defaults, validation, reload)."""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta, timezone

import pytest

from services.identity.resolver import BatchResolver, Incoming, Profile, customer_id_for, review_id_for
from services.identity.rules import DEFAULT_RULES, ConfigError, RulesSource, parse_rules

pytestmark = pytest.mark.unit
T = "acme"
NOW = datetime(2026, 11, 1, tzinfo=timezone.utc)


def ident(id_type: str, value: str) -> tuple[str, str, str]:
    return (T, id_type, value)


def event(event_id: str, *identifiers, at: datetime = NOW) -> Incoming:
    return Incoming(key=(T, "crm", event_id), identifiers=tuple(identifiers), occurred_at=at)


def rules_from(yaml_text: str):
    config = parse_rules(yaml_text)
    return lambda tenant: config.tenant(tenant)


def resolver_with(customers: dict[str, dict[tuple, datetime]], rules=lambda tenant: DEFAULT_RULES,
                  merges: dict[str, int] | None = None) -> BatchResolver:
    owners = {i: c for c, held in customers.items() for i in held}
    # Customers created long before any event here, in the order given (the first is the oldest).
    age = {(T, c): (datetime(2000, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=n), "crm", c)
           for n, c in enumerate(customers, start=1)}
    profiles = {(T, c): Profile(dict(held), (merges or {}).get(c, 0)) for c, held in customers.items()}
    return BatchResolver(owners, age, profiles, rules)


def test_blocked_values_never_link_and_are_refused():
    r = resolver_with({"c-anna": {ident("email", "anna@x.org"): NOW}})
    placeholders = [ident("phone", "0000"), ident("user_id", "-1"), ident("email", "noreply@shop.de"),
                    ident("device_id", "unknown"), ident("cookie_id", "NULL"), ident("user_id", "anonymous")]
    customer = r.resolve(event("e1", ident("email", "anna@x.org"), *placeholders))
    plan = r.finish()
    assert customer == "c-anna"
    assert plan.new_identifiers == []
    assert sorted((x.identifier, x.rule) for x in plan.refusals) == sorted((p, "blocked") for p in placeholders)
    # Two people who both typed 0000 as their phone stay two people.
    r2 = resolver_with({"c-anna": {ident("phone", "0000"): NOW}, "c-bob": {ident("email", "bob@x.org"): NOW}})
    assert r2.resolve(event("e2", ident("phone", "0000"), ident("email", "bob@x.org"))) == "c-bob"
    assert r2.finish().merges == []


def test_a_new_user_id_with_a_known_email_makes_a_new_customer_not_a_merge():
    r = resolver_with({"c-anna": {ident("user_id", "u-1"): NOW, ident("email", "family@x.org"): NOW}})
    e = event("e1", ident("user_id", "u-2"), ident("email", "family@x.org"))
    customer = r.resolve(e)
    plan = r.finish()
    assert customer == customer_id_for(e.key) != "c-anna"
    assert [(x.identifier, x.rule) for x in plan.refusals] == [(ident("email", "family@x.org"), "limit:user_id")]
    assert plan.new_identifiers == [(ident("user_id", "u-2"), customer, e.key)]
    assert plan.merges == []


def test_two_customers_with_different_user_ids_are_never_merged_by_a_shared_phone():
    r = resolver_with({"c-anna": {ident("user_id", "u-1"): NOW}, "c-ben": {ident("user_id", "u-2"): NOW},
                       "c-home": {ident("phone", "+49301111"): NOW}})
    assert r.resolve(event("e1", ident("user_id", "u-1"), ident("phone", "+49301111"))) == "c-anna"  # merges c-home
    assert r.resolve(event("e2", ident("user_id", "u-2"), ident("phone", "+49301111"))) == "c-ben"
    plan = r.finish()
    assert [(m.survivor_id, m.merged_ids) for m in plan.merges] == [("c-anna", ["c-home"])]
    assert [(x.trigger[2], x.identifier, x.rule) for x in plan.refusals] == [
        ("e2", ident("phone", "+49301111"), "limit:user_id")]


def test_limits_count_only_values_seen_within_their_window():
    old, recent = NOW - timedelta(days=400), NOW - timedelta(days=10)
    emails = {ident("email", f"anna{n}@x.org"): (old if n < 3 else recent) for n in range(5)}
    r = resolver_with({"c-anna": emails})
    # 5 e-mails, 3 of them last seen more than a year ago: a sixth is within the limit (5 per 365 days).
    assert r.resolve(event("e1", ident("email", "anna0@x.org"), ident("email", "anna5@x.org"))) == "c-anna"
    assert r.finish().refusals == []
    recent_only = {i: recent for i in emails}
    r = resolver_with({"c-anna": recent_only})
    r.resolve(event("e2", ident("email", "anna0@x.org"), ident("email", "anna5@x.org")))
    assert [(x.identifier, x.rule) for x in r.finish().refusals] == [(ident("email", "anna5@x.org"), "limit:email")]


def test_a_value_seen_exactly_a_window_ago_still_counts():
    edge = {ident("email", f"anna{n}@x.org"): NOW - timedelta(days=365) for n in range(5)}
    r = resolver_with({"c-anna": edge})
    r.resolve(event("e1", ident("email", "anna5@x.org"), ident("email", "anna0@x.org")))
    assert [(x.identifier, x.rule) for x in r.finish().refusals] == [(ident("email", "anna5@x.org"), "limit:email")]
    just_out = {i: NOW - timedelta(days=365, microseconds=1) for i in edge}
    r = resolver_with({"c-anna": just_out})
    assert r.resolve(event("e2", ident("email", "anna5@x.org"), ident("email", "anna0@x.org"))) == "c-anna"
    assert r.finish().refusals == []


def test_priority_decides_which_identifier_is_dropped_and_the_event_matches_again():
    rules = rules_from("""
tenants:
  acme:
    version: 2
    limits: {contract_id: {max: 1}}
    priority: [contract_id, phone, email]
""")
    r = resolver_with({"c-a": {ident("contract_id", "K-1"): NOW, ident("email", "a@x.org"): NOW},
                       "c-b": {ident("contract_id", "K-2"): NOW, ident("phone", "+491"): NOW}}, rules)
    # Linking all three would join K-1 and K-2: drop email (lowest), then it matches c-b alone.
    e = event("e1", ident("contract_id", "K-2"), ident("phone", "+491"), ident("email", "a@x.org"))
    assert r.resolve(e) == "c-b"
    plan = r.finish()
    assert [(x.identifier, x.rule) for x in plan.refusals] == [(ident("email", "a@x.org"), "limit:contract_id")]
    assert plan.merges == []


def test_a_customer_already_over_a_limit_keeps_its_events():
    emails = {ident("email", f"legacy{n}@x.org"): NOW for n in range(8)}
    r = resolver_with({"c-legacy": emails})
    assert r.resolve(event("e1", ident("email", "legacy3@x.org"))) == "c-legacy"
    assert r.finish().refusals == []


def test_caps_on_merges_and_identifiers():
    rules = rules_from("""
tenants:
  acme:
    caps: {merges: 2, identifiers: 4}
""")
    r = resolver_with({"c-a": {ident("email", "a@x.org"): NOW}, "c-b": {ident("phone", "+492"): NOW}}, rules,
                      merges={"c-a": 2})
    r.resolve(event("e1", ident("email", "a@x.org"), ident("phone", "+492")))
    plan = r.finish()
    assert plan.merges == [] and [x.rule for x in plan.refusals] == ["cap:merges"]
    r = resolver_with({"c-a": {ident("email", f"a{n}@x.org"): NOW for n in range(4)}}, rules)
    r.resolve(event("e2", ident("email", "a0@x.org"), ident("phone", "+499")))
    assert [(x.identifier, x.rule) for x in r.finish().refusals] == [(ident("phone", "+499"), "cap:identifiers")]


def test_a_merge_linked_only_by_a_device_id_waits_for_review_once():
    r = resolver_with({"c-anna": {ident("device_id", "tablet-7"): NOW}, "c-ben": {ident("email", "ben@x.org"): NOW}})
    assert r.resolve(event("e1", ident("device_id", "tablet-7"), ident("email", "ben@x.org"))) == "c-anna"
    assert r.resolve(event("e2", ident("device_id", "tablet-7"), ident("email", "ben@x.org"))) == "c-anna"
    plan = r.finish()
    assert plan.merges == []
    assert [(v.review_id, v.customers, v.linking) for v in plan.reviews] == [
        (review_id_for(T, ["c-anna", "c-ben"]), ["c-anna", "c-ben"],
         [ident("device_id", "tablet-7"), ident("email", "ben@x.org")])]
    # Every customer joining through an e-mail address or a phone number: merged at once.
    r = resolver_with({"c-anna": {ident("email", "anna@x.org"): NOW, ident("device_id", "tablet-7"): NOW},
                       "c-ben": {ident("phone", "+492"): NOW}})
    r.resolve(event("e3", ident("email", "anna@x.org"), ident("device_id", "tablet-7"), ident("phone", "+492")))
    plan = r.finish()
    assert [m.merged_ids for m in plan.merges] == [["c-ben"]] and plan.reviews == []


def test_the_built_in_rules():
    assert DEFAULT_RULES.limits["user_id"] == (1, None)
    assert DEFAULT_RULES.limits["email"] == (5, timedelta(days=365))
    assert DEFAULT_RULES.limits["cookie_id"] == (5, timedelta(days=7))
    assert DEFAULT_RULES.rank("user_id") < DEFAULT_RULES.rank("email") < DEFAULT_RULES.rank("device_id")
    assert (DEFAULT_RULES.max_merges, DEFAULT_RULES.max_identifiers) == (100, 1000)
    for value in ("", "-1", "000-000", "null", "Anonymous", "noreply@shop.de", "xxx@x.de"):
        assert DEFAULT_RULES.blocked(value), value
    for value in ("anna@example.org", "+49301234567", "C-4711", "u-0001"):
        assert not DEFAULT_RULES.blocked(value), value


def test_bad_rules_name_every_problem():
    with pytest.raises(ConfigError) as err:
        parse_rules("""
tenants:
  acme:
    limits: {email: {max: 0, window: 5 years}}
    blocked: {patterns: ["(unclosed"]}
""")
    text = str(err.value)
    assert "tenants.acme.limits.email.max" in text and "tenants.acme.limits.email.window" in text
    assert "tenants.acme.blocked.patterns" in text


def test_rules_are_reloaded_when_the_file_changes_and_a_bad_file_keeps_the_previous_rules(tmp_path):
    path = tmp_path / "identity-rules.yaml"
    path.write_text("tenants:\n  default:\n    version: 1\n    limits: {email: {max: 2}}\n")
    source = RulesSource(path)
    assert source.tenant("acme").limits == {"email": (2, None)} and source.tenant("acme").version == 1
    path.write_text("tenants:\n  default:\n    version: 2\n    limits: {email: {max: 3, window: 30d}}\n")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 1_000_000))
    assert source.tenant("acme").limits == {"email": (3, timedelta(days=30))}
    path.write_text("tenants:\n  default:\n    version: 3\n    limits: {email: {max: -1}}\n")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 2_000_000))
    assert source.tenant("acme").version == 2 and "max" in source.last_error


def test_a_merge_records_what_each_merged_customer_held_so_that_it_can_be_undone():
    r = resolver_with({"c-anna": {ident("email", "anna@x.org"): NOW},
                       "c-phone": {ident("phone", "+491"): NOW, ident("contract_id", "K-9"): NOW}})
    r.resolve(event("e1", ident("email", "anna@x.org"), ident("phone", "+491"), ident("twitter", "anna")))
    (merge,) = r.finish().merges
    assert (merge.survivor_id, merge.merged_ids) == ("c-anna", ["c-phone"])
    assert merge.held == {"c-phone": ["contract_id:K-9", "phone:+491"]}  # not the event's new twitter handle
