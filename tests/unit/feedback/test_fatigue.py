from datetime import datetime, timedelta, timezone

import pytest

from services.feedback.domain.fatigue import (REASONS, FatigueRules, PastInvitation, check, sample_key,
                                              sampled)

pytestmark = pytest.mark.unit

UTC = timezone.utc
NOW = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)
RULES = FatigueRules()                    # 7 days, 12 h, everyone sampled
KEY = "acme\x1fcust-1\x1fcsat\x1fcase:1"


def past(*, days: float = 0, hours: float = 0, survey: str = "nps", key: str | None = None) -> PastInvitation:
    """An invitation that went out ``days``/``hours`` before NOW (negative: scheduled after NOW)."""
    return PastInvitation(at=NOW - timedelta(days=days, hours=hours), survey_id=survey, conversation_key=key)


def verdict(history, rules=RULES, recontact_days=0, survey="csat", key="case:1", now=NOW, sample=KEY):
    return check(rules, recontact_days, history, survey, key, now, sample)


def test_a_customer_without_invitations_is_invited():
    assert verdict([]) == (True, "ok", "")
    assert verdict([past(days=8)]).allowed


# ---- one invitation per conversation or case -----------------------------------------------------------------

def test_a_second_invitation_about_the_same_conversation_is_a_duplicate_whenever_and_whichever_survey():
    allowed, reason, detail = verdict([past(days=200, survey="nps", key="case:1")])
    assert (allowed, reason) == (False, "duplicate_conversation")
    assert detail == "already invited to nps about case:1"


def test_invitations_without_a_conversation_are_never_conversation_duplicates():
    assert verdict([past(days=200, key=None)], key=None).reason == "ok"
    assert verdict([past(days=200, key="case:2")]).reason == "ok"


# ---- never two within the duplicate window -------------------------------------------------------------------

def test_any_invitation_within_12_hours_is_a_duplicate_even_without_customer_fatigue():
    rules = FatigueRules(min_days_between=0)
    allowed, reason, detail = verdict([past(hours=11, survey="nps", key="conv:9")], rules=rules)
    assert (allowed, reason) == (False, "duplicate_window")
    assert detail == ("invited to nps at 2026-06-10T01:00:00+00:00, less than 12 h from "
                      "2026-06-10T12:00:00+00:00")
    assert verdict([past(hours=12)], rules=rules).reason == "ok"           # exactly 12 h apart: allowed
    assert verdict([past(hours=-11)], rules=rules).reason == "duplicate_window"   # one scheduled ahead


def test_a_duplicate_window_of_zero_is_off():
    rules = FatigueRules(min_days_between=0, duplicate_window_h=0)
    assert verdict([past(hours=0)], rules=rules).reason == "ok"


def test_the_duplicate_window_is_reported_before_customer_fatigue():
    assert verdict([past(days=3), past(hours=2)]).reason == "duplicate_window"


# ---- recontact days per survey -------------------------------------------------------------------------------

def test_the_same_survey_waits_its_recontact_days():
    rules = FatigueRules(min_days_between=0)
    allowed, reason, detail = verdict([past(days=29, survey="csat")], rules=rules, recontact_days=30)
    assert (allowed, reason) == (False, "recontact_days")
    assert "less than 30 days from" in detail
    assert verdict([past(days=30, survey="csat")], rules=rules, recontact_days=30).reason == "ok"
    assert verdict([past(days=29, survey="nps")], rules=rules, recontact_days=30).reason == "ok"
    assert verdict([past(days=29, survey="csat")], rules=rules, recontact_days=0).reason == "ok"


def test_recontact_days_are_reported_before_customer_fatigue():
    assert verdict([past(days=3, survey="csat")], recontact_days=30).reason == "recontact_days"


def test_negative_recontact_days_are_refused():
    with pytest.raises(ValueError, match="recontact days"):
        verdict([], recontact_days=-1)


# ---- customer fatigue across surveys and channels ------------------------------------------------------------

def test_at_most_one_invitation_per_customer_in_7_days_across_surveys():
    allowed, reason, detail = verdict([past(days=6, survey="ces_after_call", key="call:7")])
    assert (allowed, reason) == (False, "customer_fatigue")
    assert detail.startswith("invited to ces_after_call at 2026-06-04T12:00:00+00:00, less than 7 days from")
    assert verdict([past(days=7)]).reason == "ok"                          # exactly 7 days apart: allowed
    assert verdict([past(days=-3)]).reason == "customer_fatigue"           # another one is due in 3 days


def test_the_nearest_invitation_is_the_one_reported():
    detail = verdict([past(days=6, survey="far"), past(days=2, survey="near"), past(days=-5, survey="later")]).detail
    assert detail.startswith("invited to near at")


def test_customer_fatigue_is_configurable_and_zero_switches_it_off():
    assert verdict([past(days=3)], rules=FatigueRules(min_days_between=2)).reason == "ok"
    assert verdict([past(days=1)], rules=FatigueRules(min_days_between=0)).reason == "ok"


# ---- sampling ------------------------------------------------------------------------------------------------

def test_sampling_is_checked_last_and_only_for_otherwise_allowed_invitations():
    nobody = FatigueRules(sampling_pct=0)
    assert verdict([], rules=nobody) == (False, "not_sampled", "outside the 0 % sample")
    assert verdict([past(days=1)], rules=nobody).reason == "customer_fatigue"


def test_sampling_is_deterministic_per_key():
    keys = [sample_key("acme", f"cust-{i}", "nps", f"conv:{i}") for i in range(200)]
    first = [sampled(key, 50) for key in keys]
    assert first == [sampled(key, 50) for key in keys]
    assert [verdict([], rules=FatigueRules(sampling_pct=50), sample=key).allowed for key in keys] == first


@pytest.mark.parametrize("pct", [1, 10, 33.3, 50, 90, 99])
def test_sampling_selects_the_percentage_within_2_points_over_10000_keys(pct):
    keys = [sample_key("acme", f"customer-{i}", "nps_relationship", f"conversation:{i}") for i in range(10_000)]
    share = 100 * sum(sampled(key, pct) for key in keys) / len(keys)
    assert abs(share - pct) <= 2


def test_sampling_is_monotonic_in_the_percentage():
    keys = [f"key-{i}" for i in range(1000)]
    assert all(sampled(key, 60) for key in keys if sampled(key, 30))


def test_0_and_100_percent_are_exact():
    keys = [f"key-{i}" for i in range(1000)]
    assert not any(sampled(key, 0) for key in keys)
    assert all(sampled(key, 100) for key in keys)


@pytest.mark.parametrize("pct", [-0.1, 100.5, True])
def test_percentages_outside_0_to_100_are_refused(pct):
    with pytest.raises(ValueError, match="sampling percentage"):
        sampled("k", pct)
    with pytest.raises(ValueError, match="sampling percentage"):
        FatigueRules(sampling_pct=pct)


def test_sample_keys_keep_their_parts_apart():
    assert sample_key("a", "b c", "s", None) != sample_key("a b", "c", "s", None)
    assert sample_key("t", "c", "s", None) == "t\x1fc\x1fs\x1f"


def test_negative_windows_are_refused():
    with pytest.raises(ValueError, match="must not be negative"):
        FatigueRules(min_days_between=-1)
    with pytest.raises(ValueError, match="must not be negative"):
        FatigueRules(duplicate_window_h=-1)


def test_every_reason_code_is_reachable():
    rules_none = FatigueRules(min_days_between=0, duplicate_window_h=0)
    seen = {
        verdict([]).reason,
        verdict([past(days=100, key="case:1")]).reason,
        verdict([past(hours=1)]).reason,
        verdict([past(days=20, survey="csat")], rules=rules_none, recontact_days=30).reason,
        verdict([past(days=1)]).reason,
        verdict([], rules=FatigueRules(sampling_pct=0)).reason,
    }
    assert seen == set(REASONS)
