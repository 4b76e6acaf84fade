import json
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from services.routing.domain.calendar import BusinessCalendar
from services.routing.domain.sla import SlaClocks, SlaPolicy

pytestmark = pytest.mark.unit

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
POLICY = SlaPolicy("standard", first_response_s=3600, next_response_s=1800, resolution_s=86400,
                   warn_before_s=(300, 600))


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


def opened(policy: SlaPolicy = POLICY, at: datetime = T0) -> SlaClocks:
    clocks = SlaClocks(policy)
    assert clocks.opened(at) == []
    return clocks


OFFICE = BusinessCalendar.parse("Europe/Berlin", {d: ["09:00-17:00"] for d in ("mon", "tue", "wed", "thu", "fri")})


def office_policy(warn_before_s: tuple[int, ...] = (), **targets) -> SlaPolicy:
    values = {"first_response_s": None, "next_response_s": None, "resolution_s": None, **targets}
    return SlaPolicy("office", warn_before_s=warn_before_s, calendar=OFFICE, **values)


def roundtrip(clocks: SlaClocks) -> SlaClocks:
    return SlaClocks(clocks.policy, json.loads(json.dumps(clocks.to_state())))


def test_opening_starts_first_response_and_resolution():
    clocks = opened()
    assert clocks.due() == {"first_response": T0 + minutes(60), "resolution": T0 + timedelta(days=1)}
    assert clocks.status() == "active"
    assert set(clocks.detail()) == {"first_response", "resolution"}


def test_a_first_reply_in_time_is_a_hit():
    clocks = opened()
    assert clocks.agent_replied(T0 + minutes(59)) == [("hit", "first_response")]
    assert clocks.detail()["first_response"]["state"] == "hit"
    assert clocks.detail()["first_response"]["consumed_s"] == 59 * 60
    assert list(clocks.due()) == ["resolution"]
    assert clocks.status() == "active"


def test_a_breach_marks_the_clock_missed_but_it_keeps_running_until_the_reply():
    clocks = opened()
    due = clocks.due()["first_response"]
    assert clocks.breached("first_response", due)
    assert clocks.detail()["first_response"]["state"] == "missed_running"
    assert clocks.status() == "active_with_misses"
    assert "first_response" not in clocks.due()
    assert clocks.detail(now=due + minutes(30))["first_response"]["consumed_s"] == 90 * 60
    assert clocks.agent_replied(due + minutes(30)) == [("missed", "first_response")]
    assert clocks.detail()["first_response"]["state"] == "missed"
    assert clocks.detail()["first_response"]["consumed_s"] == 90 * 60


def test_breached_is_idempotent_and_refuses_clocks_not_yet_due():
    clocks = opened()
    due = clocks.due()["first_response"]
    assert not clocks.breached("first_response", due - timedelta(seconds=1))
    assert clocks.detail()["first_response"]["state"] == "running"
    assert clocks.breached("first_response", due)
    assert not clocks.breached("first_response", due + minutes(5))
    assert not clocks.breached("next_response", due)
    with pytest.raises(ValueError, match="unknown SLA metric"):
        clocks.breached("handle_time", due)


def test_breached_ignores_stopped_clocks():
    clocks = opened()
    clocks.agent_replied(T0 + minutes(10))
    assert not clocks.breached("first_response", T0 + minutes(120))
    assert clocks.detail()["first_response"]["state"] == "hit"


def test_a_reply_after_the_due_instant_is_a_miss_even_without_the_timer():
    clocks = opened()
    assert clocks.agent_replied(T0 + minutes(60)) == [("missed", "first_response")]
    assert clocks.status() == "active_with_misses"


def test_waiting_on_customer_pauses_and_the_pause_extends_the_due_time():
    clocks = opened()
    clocks.waiting_on_customer(T0 + minutes(10))
    assert clocks.due() == {}
    assert clocks.detail()["first_response"]["state"] == "paused"
    assert clocks.status() == "active"
    assert not clocks.breached("first_response", T0 + minutes(90))
    clocks.customer_replied(T0 + minutes(120))
    assert clocks.due()["first_response"] == T0 + minutes(170)
    assert clocks.due()["resolution"] == T0 + timedelta(days=1, minutes=110)


def test_the_pause_extends_by_business_time_only():
    clocks = opened(office_policy(resolution_s=8 * 3600), datetime(2026, 3, 6, 10, 0, tzinfo=BERLIN))
    assert clocks.due()["resolution"] == datetime(2026, 3, 9, 10, 0, tzinfo=BERLIN)
    clocks.waiting_on_customer(datetime(2026, 3, 6, 16, 0, tzinfo=BERLIN))
    clocks.customer_replied(datetime(2026, 3, 9, 10, 0, tzinfo=BERLIN))
    assert clocks.detail()["resolution"]["consumed_s"] == 6 * 3600
    assert clocks.due()["resolution"] == datetime(2026, 3, 9, 12, 0, tzinfo=BERLIN)


def test_business_calendar_due_times_and_warnings_skip_closed_time():
    policy = office_policy(first_response_s=3600, warn_before_s=(3540,))
    clocks = opened(policy, datetime(2026, 3, 6, 16, 30, tzinfo=BERLIN))
    assert clocks.due() == {"first_response": datetime(2026, 3, 9, 9, 30, tzinfo=BERLIN)}
    assert clocks.warnings() == [("first_response", 3540, datetime(2026, 3, 6, 16, 31, tzinfo=BERLIN))]
    assert not clocks.breached("first_response", datetime(2026, 3, 8, 12, 0, tzinfo=BERLIN))


def test_a_paused_clock_found_overdue_is_breached_by_its_late_timer():
    clocks = opened()
    clocks.waiting_on_customer(T0 + minutes(61))
    assert clocks.detail()["first_response"]["state"] == "paused"
    assert clocks.breached("first_response", T0 + minutes(62))
    assert clocks.detail()["first_response"]["state"] == "missed_running"
    assert clocks.detail()["first_response"]["running_since"] is None


def test_a_missed_clock_stops_counting_while_paused():
    clocks = opened()
    clocks.breached("first_response", T0 + minutes(60))
    clocks.waiting_on_customer(T0 + minutes(70))
    clocks.customer_replied(T0 + minutes(100))
    assert clocks.agent_replied(T0 + minutes(110)) == [("missed", "first_response")]
    assert clocks.detail()["first_response"]["consumed_s"] == 80 * 60


def test_next_response_starts_with_a_customer_message_after_the_first_reply():
    clocks = opened()
    clocks.customer_replied(T0 + minutes(5))
    assert "next_response" not in clocks.due()
    clocks.agent_replied(T0 + minutes(10))
    clocks.customer_replied(T0 + minutes(20))
    clocks.customer_replied(T0 + minutes(25))
    assert clocks.due()["next_response"] == T0 + minutes(50)
    assert clocks.agent_replied(T0 + minutes(40)) == [("hit", "next_response")]
    assert clocks.agent_replied(T0 + minutes(41)) == []
    assert clocks.status() == "active"


def test_a_missed_next_response_cycle_is_remembered_after_the_next_one():
    clocks = opened()
    clocks.agent_replied(T0 + minutes(10))
    clocks.customer_replied(T0 + minutes(20))
    assert clocks.breached("next_response", T0 + minutes(50))
    assert clocks.agent_replied(T0 + minutes(60)) == [("missed", "next_response")]
    clocks.customer_replied(T0 + minutes(70))
    assert clocks.detail()["next_response"]["state"] == "running"
    assert clocks.detail()["next_response"]["earlier_misses"] == 1
    assert clocks.agent_replied(T0 + minutes(75)) == [("hit", "next_response")]
    assert clocks.status() == "active_with_misses"
    clocks.resolved(T0 + minutes(80))
    assert clocks.status() == "missed"


def test_resolution_in_time_with_every_clock_hit():
    clocks = opened()
    clocks.agent_replied(T0 + minutes(10))
    assert clocks.resolved(T0 + minutes(30)) == [("hit", "resolution")]
    assert clocks.status() == "hit"
    assert clocks.due() == {} and clocks.warnings() == []


def test_resolution_answers_the_outstanding_clocks():
    clocks = opened()
    assert clocks.resolved(T0 + minutes(30)) == [("hit", "first_response"), ("hit", "resolution")]
    assert clocks.status() == "hit"
    late = opened()
    assert late.resolved(T0 + timedelta(days=2)) == [("missed", "first_response"), ("missed", "resolution")]
    assert late.status() == "missed"


def test_reopen_resumes_resolution_and_starts_next_response():
    clocks = opened()
    clocks.agent_replied(T0 + minutes(10))
    clocks.resolved(T0 + minutes(60))
    clocks.reopened(T0 + minutes(300))
    assert clocks.detail()["resolution"]["state"] == "running"
    assert clocks.due() == {"resolution": T0 + minutes(300) + timedelta(days=1) - minutes(60),
                            "next_response": T0 + minutes(330)}
    assert clocks.status() == "active"
    assert clocks.resolved(T0 + minutes(320)) == [("hit", "resolution"), ("hit", "next_response")]


def test_reopening_a_missed_resolution_keeps_it_missed_and_counting():
    clocks = opened()
    clocks.breached("resolution", T0 + timedelta(days=1))
    clocks.resolved(T0 + timedelta(days=1, hours=1))
    clocks.reopened(T0 + timedelta(days=2))
    assert clocks.detail()["resolution"]["state"] == "missed_running"
    assert "resolution" not in clocks.due()
    assert clocks.status() == "active_with_misses"
    assert clocks.resolved(T0 + timedelta(days=2, hours=1)) == [("missed", "resolution"), ("missed", "next_response")]
    assert clocks.detail()["resolution"]["consumed_s"] == 86400 + 2 * 3600


def test_events_outside_their_phase_change_nothing():
    fresh = SlaClocks(POLICY)
    assert fresh.agent_replied(T0) == [] and fresh.resolved(T0) == [] and fresh.reopened(T0) == []
    assert fresh.to_state()["clocks"] == {}
    clocks = opened()
    before = clocks.to_state()
    assert clocks.opened(T0 + minutes(5)) == []
    assert clocks.reopened(T0 + minutes(5)) == []
    assert clocks.to_state() == before
    clocks.resolved(T0 + minutes(10))
    after = clocks.to_state()
    for event in (clocks.agent_replied, clocks.customer_replied, clocks.waiting_on_customer, clocks.resolved):
        assert event(T0 + minutes(20)) == []
    assert clocks.to_state() == after


def test_warnings_come_before_each_due_time_and_only_while_ahead():
    clocks = opened()
    assert clocks.warnings() == [("first_response", 600, T0 + minutes(50)), ("first_response", 300, T0 + minutes(55)),
                                 ("resolution", 600, T0 + timedelta(days=1) - minutes(10)),
                                 ("resolution", 300, T0 + timedelta(days=1) - minutes(5))]
    clocks.waiting_on_customer(T0 + minutes(52))
    assert clocks.warnings() == []
    clocks.customer_replied(T0 + minutes(60))
    assert ("first_response", 300, T0 + minutes(63)) in clocks.warnings()
    assert all(not (metric == "first_response" and before == 600) for metric, before, _ in clocks.warnings())


def test_state_round_trips_through_json_and_continues_identically():
    clocks = opened()
    clocks.agent_replied(T0 + minutes(10))
    clocks.customer_replied(T0 + minutes(20))
    clocks.waiting_on_customer(T0 + minutes(25))
    clocks.customer_replied(T0 + minutes(40))
    restored = roundtrip(clocks)
    assert restored.to_state() == clocks.to_state()
    assert restored.due() == clocks.due() and restored.warnings() == clocks.warnings()
    assert restored.detail() == clocks.detail() and restored.status() == clocks.status()
    at = T0 + minutes(80)
    assert restored.breached("next_response", at) == clocks.breached("next_response", at) is True
    assert roundtrip(restored).agent_replied(at) == clocks.agent_replied(at) == [("missed", "next_response")]


def test_state_keeps_the_target_a_clock_started_with():
    clocks = opened()
    stricter = SlaPolicy("standard", first_response_s=60, next_response_s=60, resolution_s=60)
    assert SlaClocks(stricter, clocks.to_state()).due()["first_response"] == T0 + minutes(60)


def test_bad_state_is_refused():
    with pytest.raises(ValueError, match="version"):
        SlaClocks(POLICY, {"version": 99})
    with pytest.raises(ValueError, match="malformed"):
        SlaClocks(POLICY, {"version": 1, "phase": "open"})
    state = opened().to_state()
    state["clocks"]["first_response"]["state"] = "sleeping"
    with pytest.raises(ValueError, match="clock state"):
        SlaClocks(POLICY, state)


def test_unmeasured_metrics_have_no_clock():
    clocks = opened(SlaPolicy("resolution only", None, None, 7200))
    assert list(clocks.due()) == ["resolution"]
    clocks.agent_replied(T0 + minutes(1))
    clocks.customer_replied(T0 + minutes(2))
    assert list(clocks.detail()) == ["resolution"]
    assert SlaClocks(SlaPolicy("none", None, None, None)).status() == "hit"


def test_next_response_without_a_first_response_target_starts_after_the_first_reply():
    clocks = opened(SlaPolicy("replies", None, 600, None))
    assert clocks.due() == {}
    clocks.customer_replied(T0 + minutes(1))
    assert clocks.due() == {}
    clocks.agent_replied(T0 + minutes(2))
    clocks.customer_replied(T0 + minutes(3))
    assert clocks.due() == {"next_response": T0 + minutes(13)}


def test_policy_validation_and_warning_normalisation():
    assert SlaPolicy("p", 60, None, None, warn_before_s=[30, 10, 30]).warn_before_s == (30, 10)
    assert SlaPolicy("p", 60, None, None).calendar == BusinessCalendar.always_open()
    with pytest.raises(ValueError, match="first_response_s"):
        SlaPolicy("p", 0, None, None)
    with pytest.raises(ValueError, match="warn_before_s"):
        SlaPolicy("p", 60, None, None, warn_before_s=(-5,))


def test_naive_datetimes_are_refused():
    clocks = SlaClocks(POLICY)
    with pytest.raises(ValueError, match="timezone-aware"):
        clocks.opened(datetime(2026, 3, 2, 10, 0))
