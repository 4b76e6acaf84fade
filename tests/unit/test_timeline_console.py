"""What the agent console derives from the timeline's rows: search terms, consent state, preferences, scores,
notification decisions and open conversations; and how consent records and preferences are kept newest-first."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from services.timeline import console
from services.timeline.consent import _keep_newest, merge_preferences, subjects_of
from shared.cloudevents import InvalidEvent
from shared.contracts.business import CustomerRef

pytestmark = pytest.mark.unit
T0 = datetime(2026, 11, 1, 12, tzinfo=timezone.utc)


def consent(purpose, channel, granted, minutes, expires=None, subject="id:c1"):
    return {"subject": subject, "purpose": purpose, "channel": channel, "granted": granted, "consent_id": f"k{minutes}",
            "wording_version": "v1", "source": "form", "occurred_at": T0 + timedelta(minutes=minutes),
            "expires_at": expires}


def test_search_terms_try_the_literal_value_and_its_normalised_forms():
    values, name = console.search_terms("030 1234567", "DE")
    assert "030 1234567" in values and "+49301234567" in values and name is None
    values, name = console.search_terms(" Anna.Berg@Example.com ", "DE")
    assert "anna.berg@example.com" in values and name is None
    values, name = console.search_terms("@AnnaBerg", "DE")
    assert "annaberg" in values and "AnnaBerg" in values
    values, name = console.search_terms("C-4711", "DE")
    assert "C-4711" in values and "+494711" not in values and name is None
    assert console.search_terms("anna b", "DE")[1] == "anna b"
    assert console.search_terms("a", "DE")[1] is None  # too short for a name search


def test_consent_state_is_the_newest_record_across_subjects_and_a_withdrawal_wins_a_tie():
    rows = [consent("marketing", "sms", True, 0), consent("marketing", "sms", False, 10, subject="email:a@b.c"),
            consent("service", "email", True, 5), consent("service", "email", False, 5, subject="phone:+491"),
            consent("surveys", "any", True, 1, expires=T0), consent("service", "sms", True, 2, expires=T0 + timedelta(days=9))]
    state = {(r["purpose"], r["channel"]): r["state"] for r in console.consent_state(rows, now=T0 + timedelta(hours=1))}
    assert state == {("marketing", "sms"): "withdrawn", ("service", "email"): "withdrawn",
                     ("surveys", "any"): "expired", ("service", "sms"): "granted"}


def test_consent_records_keep_the_newest_per_subject_purpose_and_channel():
    rows: dict = {}
    grant = ("t", "id:c1", "service", "email", True, "k1", "v1", "form", T0, None)
    withdraw_same_instant = ("t", "id:c1", "service", "email", False, "k2", None, "call", T0, None)
    older = ("t", "id:c1", "service", "email", True, "k0", "v0", "form", T0 - timedelta(days=1), None)
    for row in (grant, withdraw_same_instant, older):
        _keep_newest(rows, row)
    assert list(rows.values()) == [withdraw_same_instant]


def test_preferences_keep_the_newest_value_of_each_field_whatever_the_order():
    late = {"language": "de", "display_name": "Anna Berg"}
    early = {"language": "en", "time_zone": "Europe/Berlin"}
    a = merge_preferences(merge_preferences({}, late, "2026-11-02T00:00:00+00:00"), early, "2026-11-01T00:00:00+00:00")
    b = merge_preferences(merge_preferences({}, early, "2026-11-01T00:00:00+00:00"), late, "2026-11-02T00:00:00+00:00")
    assert a == b
    assert console.preferences([a]) == {"display_name": "Anna Berg", "language": "de", "time_zone": "Europe/Berlin"}
    cleared = merge_preferences(a, {"display_name": None}, "2026-11-03T00:00:00+00:00")
    assert console.preferences([cleared])["display_name"] is None


def test_subjects_are_the_customer_id_or_each_normalised_identifier():
    assert subjects_of(CustomerRef(customer_id="c1", identifiers=[{"type": "email", "value": "X@Y.de"}]), "DE") == ["id:c1"]
    ref = CustomerRef(identifiers=[{"type": "email", "value": "X@Y.de"}, {"type": "phone", "value": "030 1234567"}])
    assert subjects_of(ref, "DE") == ["email:x@y.de", "phone:+49301234567"]
    with pytest.raises(InvalidEvent):
        subjects_of(CustomerRef(identifiers=[{"type": "email", "value": "not-an-address"}]), "DE")


def test_last_scores_take_the_newest_scored_response_per_metric():
    entries = [  # newest first
        {"occurred_at": "3", "details": {"event": "responded", "metric": "csat", "score": None, "survey_id": "s"}},
        {"occurred_at": "2", "details": {"event": "responded", "metric": "nps", "score": 9, "survey_id": "s"}},
        {"occurred_at": "1", "details": {"event": "responded", "metric": "nps", "score": 2, "survey_id": "s"}},
        {"occurred_at": "0", "details": {"event": "invited", "survey_id": "s"}},
    ]
    assert console.last_scores(entries) == {"nps": {"score": 9, "at": "2", "survey_id": "s"}}


def test_each_notification_shows_its_latest_decision():
    entries = [
        {"occurred_at": "3", "details": {"event": "sent", "notification_id": "n1", "channel": "sms"}},
        {"occurred_at": "2", "details": {"event": "held", "notification_id": "n1", "reason": "quiet_hours"}},
        {"occurred_at": "1", "details": {"event": "suppressed", "notification_id": "n2", "reason": "no_consent"}},
    ]
    decisions = console.notification_decisions(entries)
    assert [(d["notification_id"], d["decision"], d["reason"]) for d in decisions] == [
        ("n1", "sent", None), ("n2", "suppressed", "no_consent")]


def test_open_conversations_are_those_whose_newest_routing_entry_is_not_a_resolution():
    entries = [
        {"kind": "routing.conversation_resolved", "conversation_id": "a", "occurred_at": "4"},
        {"kind": "routing.conversation_assigned", "conversation_id": "b", "occurred_at": "3", "agent_id": "ana",
         "channel": "chat", "details": {"queue": "general"}},
        {"kind": "routing.conversation_queued", "conversation_id": "a", "occurred_at": "2"},
        {"kind": "routing.conversation_queued", "conversation_id": "b", "occurred_at": "1", "details": {"position": 2}},
    ]
    open_ = console.open_conversations(entries)
    assert [(c["conversation_id"], c["last_event"], c["agent_id"], c["queue"]) for c in open_] == [
        ("b", "routing.conversation_assigned", "ana", "general")]
