from dataclasses import replace
from datetime import datetime, time, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.notification.domain.model import (CHANNELS, Candidate, CapRule, Consent, PastSend, Preferences,
                                                QuietHours, Recipient)
from services.notification.domain.pipeline import consent_check, decide, valid_consent
from services.notification.domain.quiet_hours import in_quiet_hours

pytestmark = pytest.mark.unit

UTC = timezone.utc
NOW = datetime(2026, 6, 10, 10, 0, tzinfo=UTC)  # Wednesday, 12:00 in Berlin
EARLIER = NOW - timedelta(days=30)
LATER = NOW - timedelta(days=10)
ADDRESSES = {"email": "ada@example.com", "sms": "+4915112345678", "whatsapp": "+4915112345678",
             "webhook": "https://crm.example.com/hook"}
CAPS = (CapRule("daily", 2, "calendar_day"), CapRule("weekly", 5, "rolling", days=7),
        CapRule("monthly", 12, "rolling", days=30))


def grant(channel: str = "any", purpose: str = "service", at: datetime = EARLIER, **kwargs) -> Consent:
    return Consent(kwargs.pop("consent_id", f"grant-{purpose}-{channel}"), purpose, channel, "granted", at, **kwargs)


def withdraw(channel: str = "any", purpose: str = "service", at: datetime = LATER) -> Consent:
    return Consent(f"withdraw-{purpose}-{channel}", purpose, channel, "withdrawn", at)


def recipient(*consents: Consent, **kwargs) -> Recipient:
    values = {"addresses": dict(ADDRESSES), "last_inbound": {"whatsapp": NOW - timedelta(hours=1)}, **kwargs}
    preferences = values.pop("preferences", Preferences(time_zone="Europe/Berlin"))
    return Recipient("cust-1", list(consents), preferences, **values)


def candidate(*channels: str, **kwargs) -> Candidate:
    values = {"trigger": "case_follow_up", "purpose": "service", "topic": "case_updates",
              "channels": channels or ("email", "sms", "whatsapp", "webhook"), **kwargs}
    return Candidate(**values)


def prefs(**kwargs) -> Preferences:
    return Preferences(**{"time_zone": "Europe/Berlin", **kwargs})


# --- consent -------------------------------------------------------------------------------------------------


def test_without_any_consent_nothing_is_sent():
    decision = decide(candidate(), recipient(), NOW, CAPS)
    assert (decision.outcome, decision.step, decision.reason) == ("suppress", "consent", "no_consent")
    assert decision.channel is None and decision.consent_ids == {}


def test_a_grant_for_any_channel_covers_every_channel():
    decision = decide(candidate(), recipient(grant("any")), NOW, CAPS)
    assert (decision.outcome, decision.step, decision.reason) == ("send", "send", "ok")
    assert decision.plan == ("email", "sms", "whatsapp", "webhook")
    assert decision.consent_ids == {channel: "grant-service-any" for channel in CHANNELS}


def test_a_withdrawal_after_the_grant_wins():
    decision = decide(candidate(), recipient(grant("email", at=EARLIER), withdraw("email", at=LATER)), NOW, CAPS)
    assert (decision.outcome, decision.reason) == ("suppress", "consent_withdrawn")


def test_a_grant_after_a_withdrawal_wins():
    decision = decide(candidate(), recipient(withdraw("email", at=EARLIER), grant("email", at=LATER)), NOW, CAPS)
    assert decision.outcome == "send" and decision.plan == ("email",)


def test_a_withdrawal_for_any_channel_withdraws_an_earlier_channel_grant():
    decision = decide(candidate(), recipient(grant("sms", at=EARLIER), withdraw("any", at=LATER)), NOW, CAPS)
    assert decision.reason == "consent_withdrawn"


def test_a_channel_withdrawal_leaves_the_other_channels_of_an_any_grant():
    decision = decide(candidate(), recipient(grant("any", at=EARLIER), withdraw("email", at=LATER)), NOW, CAPS)
    assert decision.plan == ("sms", "whatsapp", "webhook")


def test_a_channel_grant_after_an_any_withdrawal_counts_for_that_channel_only():
    r = recipient(withdraw("any", at=EARLIER), grant("sms", at=LATER))
    decision = decide(candidate(), r, NOW, CAPS)
    assert decision.plan == ("sms",) and decision.consent_id == "grant-service-sms"


def test_at_the_same_instant_the_more_specific_record_wins():
    assert valid_consent([withdraw("any", at=LATER), grant("sms", at=LATER)], "service", "sms", NOW) is not None
    assert valid_consent([grant("any", at=LATER), withdraw("sms", at=LATER)], "service", "sms", NOW) is None
    assert valid_consent([grant("sms", at=LATER), withdraw("sms", at=LATER)], "service", "sms", NOW) is None


def test_an_expired_grant_is_no_consent():
    r = recipient(grant("email", expires_at=NOW - timedelta(days=1)))
    decision = decide(candidate(), r, NOW, CAPS)
    assert (decision.outcome, decision.step, decision.reason) == ("suppress", "consent", "consent_expired")


def test_a_grant_expires_at_its_expiry_instant():
    assert consent_check([grant("email", expires_at=NOW)], "service", "email", NOW) == (None, "consent_expired")
    later = grant("email", expires_at=NOW + timedelta(seconds=1))
    assert consent_check([later], "service", "email", NOW) == (later, "ok")


def test_a_consent_for_another_purpose_does_not_count():
    decision = decide(candidate(), recipient(grant("any", purpose="marketing")), NOW, CAPS)
    assert decision.reason == "no_consent"
    decision = decide(candidate(purpose="marketing"), recipient(grant("any", purpose="service")), NOW, CAPS)
    assert decision.reason == "no_consent"


def test_the_consent_id_chosen_for_each_channel():
    r = recipient(grant("any", at=EARLIER), grant("sms", at=EARLIER - timedelta(days=5)),
                  grant("webhook", expires_at=NOW - timedelta(days=1)))
    decision = decide(candidate(), r, NOW, CAPS)
    assert decision.consent_id == "grant-service-any"
    assert decision.consent_ids == {"email": "grant-service-any", "sms": "grant-service-sms",
                                    "whatsapp": "grant-service-any", "webhook": "grant-service-any"}


def test_a_channel_specific_grant_is_preferred_over_any_and_then_the_latest():
    consents = [grant("any", at=LATER), grant("email", at=EARLIER, consent_id="old"),
                grant("email", at=LATER, consent_id="new")]
    assert valid_consent(consents, "service", "email", NOW).consent_id == "new"
    assert valid_consent(consents, "service", "sms", NOW).consent_id == "grant-service-any"


def test_any_covers_notification_channels_only():
    assert consent_check([grant("any")], "service", "phone", NOW) == (None, "no_consent")
    decision = decide(candidate("phone", "email"), recipient(grant("any")), NOW, CAPS)
    assert decision.plan == ("email",)


def test_a_consented_channel_without_an_address_is_dropped():
    r = recipient(grant("any"), addresses={"sms": ADDRESSES["sms"], "email": ""})
    assert decide(candidate(), r, NOW, CAPS).plan == ("sms",)


def test_consent_without_any_address_is_reported_as_no_channel():
    decision = decide(candidate(), recipient(grant("any"), addresses={}), NOW, CAPS)
    assert (decision.outcome, decision.step, decision.reason) == ("suppress", "consent", "no_channel")


def test_the_most_specific_reason_is_reported():
    expired = grant("sms", expires_at=NOW - timedelta(days=1))
    r = recipient(grant("email", at=EARLIER), withdraw("email", at=LATER), expired)
    assert decide(candidate(), r, NOW, CAPS).reason == "consent_withdrawn"
    assert decide(candidate(), recipient(expired), NOW, CAPS).reason == "consent_expired"
    decision = decide(candidate("email", "sms"), recipient(expired), NOW, CAPS)
    assert "email: no_consent" in decision.detail and "sms: consent_expired" in decision.detail


def test_repeated_channels_are_tried_once():
    decision = decide(candidate("email", "sms", "email"), recipient(grant("any")), NOW, CAPS)
    assert decision.plan == ("email", "sms")


# --- preferences ---------------------------------------------------------------------------------------------


def test_an_opted_out_topic_suppresses():
    r = recipient(grant("any"), preferences=prefs(topics={"case_updates": False}))
    decision = decide(candidate(), r, NOW, CAPS)
    assert (decision.outcome, decision.step, decision.reason) == ("suppress", "preferences", "topic_opted_out")


def test_an_opted_out_topic_does_not_stop_a_critical_message():
    r = recipient(grant("any"), preferences=prefs(topics={"case_updates": False}))
    assert decide(candidate(critical=True), r, NOW, CAPS).outcome == "send"


@pytest.mark.parametrize("topics", [{}, {"case_updates": True}, {"offers": False}])
def test_a_topic_not_opted_out_is_sent(topics):
    r = recipient(grant("any"), preferences=prefs(topics=topics))
    assert decide(candidate(), r, NOW, CAPS).outcome == "send"


def test_consent_is_checked_before_topics():
    r = recipient(preferences=prefs(topics={"case_updates": False}))
    assert decide(candidate(), r, NOW, CAPS).reason == "no_consent"


def test_the_preferred_channel_goes_ahead_of_the_fallback_channels():
    r = recipient(grant("any"), preferences=prefs(preferred_channel="webhook"))
    decision = decide(candidate(), r, NOW, CAPS)
    assert (decision.channel, decision.fallback) == ("email", ("webhook", "sms", "whatsapp"))
    assert decision.consent_ids["webhook"] == "grant-service-any"


def test_the_preferred_channel_leads_when_the_first_channel_is_gone():
    r = recipient(grant("sms"), grant("webhook"), preferences=prefs(preferred_channel="webhook"))
    decision = decide(candidate(), r, NOW, CAPS)
    assert decision.plan == ("webhook", "sms")
    assert decision.consent_id == "grant-service-webhook"


def test_a_preferred_channel_without_consent_or_already_first_changes_nothing():
    r = recipient(grant("email"), grant("sms"), preferences=prefs(preferred_channel="webhook"))
    assert decide(candidate(), r, NOW, CAPS).plan == ("email", "sms")
    r = recipient(grant("any"), preferences=prefs(preferred_channel="email"))
    assert decide(candidate(), r, NOW, CAPS).plan == ("email", "sms", "whatsapp", "webhook")


# --- support -------------------------------------------------------------------------------------------------


def marketing_recipient(**kwargs) -> Recipient:
    return recipient(grant("any", purpose="marketing"), grant("any", purpose="surveys"), grant("any"), **kwargs)


def test_no_marketing_while_a_complaint_is_open():
    decision = decide(candidate(purpose="marketing", topic="offers"), marketing_recipient(open_complaints=1),
                      NOW, CAPS)
    assert (decision.outcome, decision.step, decision.reason) == ("suppress", "support", "open_complaint")


def test_no_marketing_while_an_sla_is_breached():
    decision = decide(candidate(purpose="marketing", topic="offers"), marketing_recipient(breached_slas=2),
                      NOW, CAPS)
    assert (decision.step, decision.reason) == ("support", "sla_breached")


def test_a_marketing_flag_counts_like_the_marketing_purpose():
    decision = decide(candidate(purpose="surveys", marketing=True), marketing_recipient(open_complaints=1),
                      NOW, CAPS)
    assert decision.reason == "open_complaint"


def test_service_messages_go_out_during_a_complaint_or_breach():
    r = marketing_recipient(open_complaints=1, breached_slas=1)
    assert decide(candidate(), r, NOW, CAPS).outcome == "send"
    assert decide(candidate(purpose="surveys"), r, NOW, CAPS).outcome == "send"


def test_marketing_goes_out_once_support_is_settled():
    assert decide(candidate(purpose="marketing"), marketing_recipient(), NOW, CAPS).outcome == "send"


# --- quiet hours ---------------------------------------------------------------------------------------------


def test_quiet_hours_hold_until_their_end():
    r = recipient(grant("any"), preferences=prefs(quiet_hours=QuietHours(time(11, 0), time(13, 30))))
    decision = decide(candidate(), r, NOW, CAPS)
    assert (decision.outcome, decision.step, decision.reason) == ("hold", "quiet_hours", "quiet_hours")
    assert decision.release_at == datetime(2026, 6, 10, 11, 30, tzinfo=UTC)
    assert decide(candidate(), r, decision.release_at, CAPS).outcome == "send"
    assert decide(candidate(), r, decision.release_at - timedelta(microseconds=1), CAPS).outcome == "hold"


def test_quiet_hours_are_read_in_the_customers_zone():
    night = QuietHours(time(22, 0), time(7, 0))
    r = recipient(grant("any"), preferences=Preferences(time_zone="America/New_York", quiet_hours=night))
    two_utc = datetime(2026, 6, 10, 2, 0, tzinfo=UTC)  # 22:00 in New York
    decision = decide(candidate(), r, two_utc, CAPS)
    assert decision.outcome == "hold"
    assert decision.release_at == datetime(2026, 6, 10, 11, 0, tzinfo=UTC)
    tokyo = Preferences(time_zone="Asia/Tokyo", quiet_hours=night)  # 11:00 in Tokyo
    assert decide(candidate(), recipient(grant("any"), preferences=tokyo), two_utc, CAPS).outcome == "send"


def test_quiet_hours_ending_in_the_spring_forward_gap_release_when_the_gap_ends():
    qh = QuietHours(time(22, 0), time(2, 30))
    r = recipient(grant("any"), preferences=prefs(quiet_hours=qh))
    decision = decide(candidate(), r, datetime(2026, 3, 29, 0, 45, tzinfo=UTC), CAPS)
    assert decision.release_at == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)  # 03:00 CEST


def test_quiet_hours_ending_in_the_repeated_hour_release_at_its_first_occurrence():
    qh = QuietHours(time(22, 0), time(2, 30))
    r = recipient(grant("any"), preferences=prefs(quiet_hours=qh))
    decision = decide(candidate(), r, datetime(2026, 10, 25, 0, 15, tzinfo=UTC), CAPS)
    assert decision.release_at == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST


def test_a_message_that_ignores_quiet_hours_goes_out():
    r = recipient(grant("any"), preferences=prefs(quiet_hours=QuietHours(time(11, 0), time(13, 30))))
    assert decide(candidate(ignore_quiet_hours=True), r, NOW, CAPS).outcome == "send"


def test_quiet_hours_hold_before_caps_are_counted():
    busy = [PastSend(NOW - timedelta(minutes=m), "other", False) for m in (1, 2, 3)]
    r = recipient(grant("any"), past_sends=busy,
                  preferences=prefs(quiet_hours=QuietHours(time(11, 0), time(13, 30))))
    assert decide(candidate(), r, NOW, CAPS).outcome == "hold"


def test_support_suppresses_before_quiet_hours_hold():
    r = marketing_recipient(open_complaints=1,
                            preferences=prefs(quiet_hours=QuietHours(time(11, 0), time(13, 30))))
    assert decide(candidate(purpose="marketing"), r, NOW, CAPS).reason == "open_complaint"


# --- caps ----------------------------------------------------------------------------------------------------


def sends(*ages: timedelta, transactional: bool = False) -> list[PastSend]:
    return [PastSend(NOW - age, "case_follow_up", transactional) for age in ages]


def test_a_reached_cap_suppresses_with_the_rule_name():
    r = recipient(grant("any"), past_sends=sends(timedelta(hours=1), timedelta(hours=2)))
    decision = decide(candidate(), r, NOW, CAPS)
    assert (decision.outcome, decision.step, decision.reason) == ("suppress", "caps", "frequency_cap:daily")
    assert "2 were sent" in decision.detail


def test_the_first_exceeded_cap_is_reported():
    r = recipient(grant("any"), past_sends=sends(*(timedelta(days=d, hours=1) for d in range(1, 6))))
    assert decide(candidate(), r, NOW, CAPS).reason == "frequency_cap:weekly"
    r.past_sends += sends(timedelta(minutes=5), timedelta(minutes=6))
    assert decide(candidate(), r, NOW, CAPS).reason == "frequency_cap:daily"


def test_transactional_messages_are_exempt_from_caps():
    r = recipient(grant("any"), past_sends=sends(timedelta(hours=1), timedelta(hours=2)))
    assert decide(candidate(transactional=True), r, NOW, CAPS).outcome == "send"


def test_transactional_sends_do_not_use_up_a_cap():
    r = recipient(grant("any"), past_sends=sends(timedelta(hours=1), timedelta(hours=2), transactional=True))
    assert decide(candidate(), r, NOW, CAPS).outcome == "send"


def test_the_calendar_day_of_a_cap_is_the_customers_day():
    morning = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)  # 08:00 in New York
    late_yesterday = [PastSend(datetime(2026, 6, 10, 3, 30, tzinfo=UTC), "x", False),  # 23:30 New York
                      PastSend(datetime(2026, 6, 10, 3, 0, tzinfo=UTC), "x", False)]
    new_yorker = recipient(grant("any"), past_sends=late_yesterday,
                           preferences=Preferences(time_zone="America/New_York"))
    assert decide(candidate(), new_yorker, morning, CAPS).outcome == "send"
    londoner = replace(new_yorker, preferences=Preferences(time_zone="UTC"))
    assert decide(candidate(), londoner, morning, CAPS).reason == "frequency_cap:daily"


# --- channel window ------------------------------------------------------------------------------------------


def whatsapp_recipient(last_inbound: timedelta | None, **kwargs) -> Recipient:
    inbound = {} if last_inbound is None else {"whatsapp": NOW - last_inbound}
    return recipient(grant("any"), last_inbound=inbound, **kwargs)


def test_whatsapp_within_24_hours_is_free_form():
    decision = decide(candidate("whatsapp", "email"), whatsapp_recipient(timedelta(hours=23, minutes=59)),
                      NOW, CAPS)
    assert decision.plan == ("whatsapp", "email")
    assert decision.template_only == {"whatsapp": False}


@pytest.mark.parametrize("last_inbound", [timedelta(hours=24), timedelta(days=3), None])
def test_whatsapp_outside_24_hours_needs_a_template(last_inbound):
    decision = decide(candidate("whatsapp", "email", whatsapp_template="case_follow_up_v1"),
                      whatsapp_recipient(last_inbound), NOW, CAPS)
    assert decision.plan == ("whatsapp", "email")
    assert decision.template_only == {"whatsapp": True}


def test_whatsapp_outside_24_hours_without_template_is_dropped_for_the_next_channel():
    decision = decide(candidate("whatsapp", "email", "sms"), whatsapp_recipient(timedelta(days=2)), NOW, CAPS)
    assert (decision.outcome, decision.channel, decision.fallback) == ("send", "email", ("sms",))
    assert decision.consent_id == "grant-service-any"
    assert "whatsapp" not in decision.consent_ids and decision.template_only == {}


def test_nothing_left_after_the_whatsapp_window_suppresses():
    decision = decide(candidate("whatsapp"), whatsapp_recipient(timedelta(days=2)), NOW, CAPS)
    assert (decision.outcome, decision.step, decision.reason) == ("suppress", "channel_window", "no_channel")


def test_no_whatsapp_no_window():
    decision = decide(candidate("email"), whatsapp_recipient(None), NOW, CAPS)
    assert decision.plan == ("email",) and decision.template_only == {}


# --- send ----------------------------------------------------------------------------------------------------


def test_send_lists_the_plan_with_a_consent_for_every_channel():
    r = recipient(grant("email"), grant("any", consent_id="any-1"), withdraw("sms"))
    decision = decide(candidate("webhook", "sms", "email", "whatsapp"), r, NOW, CAPS)
    assert (decision.outcome, decision.step, decision.reason) == ("send", "send", "ok")
    assert (decision.channel, decision.fallback) == ("webhook", ("email", "whatsapp"))
    assert decision.consent_id == "any-1"
    assert decision.consent_ids == {"webhook": "any-1", "email": "grant-service-email", "whatsapp": "any-1"}
    assert decision.release_at is None
    assert decision.detail == "Send on webhook, then email, whatsapp."


def test_an_unknown_time_zone_is_read_as_utc():
    r = recipient(grant("any"), preferences=Preferences(time_zone="Mars/Olympus_Mons",
                                                        quiet_hours=QuietHours(time(9, 0), time(11, 0))))
    assert decide(candidate(), r, NOW, CAPS).release_at == datetime(2026, 6, 10, 11, 0, tzinfo=UTC)


def test_naive_now_is_rejected():
    with pytest.raises(ValueError):
        decide(candidate(), recipient(grant("any")), datetime(2026, 6, 10, 10, 0), CAPS)


def test_consent_records_are_checked():
    with pytest.raises(ValueError):
        Consent("c-1", "service", "email", "maybe", NOW)
    with pytest.raises(ValueError):
        Consent("c-1", "service", "email", "granted", datetime(2026, 6, 10))


# --- properties ----------------------------------------------------------------------------------------------

OFFSETS = st.integers(-40 * 86400, 2 * 86400).map(lambda s: NOW + timedelta(seconds=s))
MOMENTS = st.integers(-86400, 86400).map(lambda s: NOW + timedelta(seconds=s))
CANDIDATES = st.builds(
    Candidate, trigger=st.just("t"), purpose=st.sampled_from(["service", "marketing"]),
    topic=st.sampled_from(["case_updates", "offers"]),
    channels=st.lists(st.sampled_from(CHANNELS + ("phone",)), min_size=1, max_size=5).map(tuple),
    critical=st.booleans(), transactional=st.booleans(), marketing=st.booleans(),
    whatsapp_template=st.none() | st.just("tpl"), ignore_quiet_hours=st.booleans())


@st.composite
def consents_for(draw, c: Candidate) -> list[Consent]:
    """Records mostly about the candidate's purpose and channels, so that sends are common enough to check."""
    record = st.builds(
        Consent, consent_id=st.text("abcdef", min_size=1, max_size=4),
        purpose=st.sampled_from([c.purpose, c.purpose, "surveys"]),
        channel=st.sampled_from(c.channels + ("any", "sms")),
        status=st.sampled_from(["granted", "granted", "withdrawn"]),
        at=OFFSETS, expires_at=st.none() | st.none() | OFFSETS)
    return draw(st.lists(record, min_size=1, max_size=8))


@st.composite
def cases(draw) -> tuple[Candidate, Recipient]:
    c = draw(CANDIDATES)
    preferences = draw(st.builds(
        Preferences, time_zone=st.sampled_from(["Europe/Berlin", "America/New_York", "UTC"]),
        quiet_hours=st.none() | st.builds(QuietHours, st.times(), st.times()),
        preferred_channel=st.none() | st.sampled_from(CHANNELS),
        topics=st.dictionaries(st.sampled_from(["case_updates", "offers"]), st.booleans())))
    r = draw(st.builds(
        Recipient, customer_id=st.just("cust-1"), consents=consents_for(c), preferences=st.just(preferences),
        addresses=st.fixed_dictionaries({ch: st.sampled_from(["a@b.example", ""]) for ch in CHANNELS}),
        open_complaints=st.integers(0, 1), breached_slas=st.integers(0, 1),
        last_inbound=st.dictionaries(st.just("whatsapp"), OFFSETS),
        past_sends=st.lists(st.builds(PastSend, OFFSETS, st.just("t"), st.booleans()), max_size=6)))
    return c, r


@settings(max_examples=300)
@given(cases(), MOMENTS)
def test_a_send_only_uses_consented_addressable_channels(case, now):
    c, r = case
    decision = decide(c, r, now, CAPS)
    assert decision.outcome in ("send", "hold", "suppress")
    if decision.outcome != "send":
        assert decision.plan == () and decision.consent_ids == {}
        return
    assert decision.consent_id == decision.consent_ids[decision.channel]
    assert set(decision.consent_ids) == set(decision.plan) and len(set(decision.plan)) == len(decision.plan)
    for channel in decision.plan:
        assert channel in c.channels and r.addresses.get(channel)
        consent = valid_consent(r.consents, c.purpose, channel, now)
        assert consent is not None and consent.consent_id == decision.consent_ids[channel]
        assert consent.purpose == c.purpose and consent.status == "granted"


@settings(max_examples=300)
@given(cases(), st.builds(QuietHours, st.times(), st.times()), MOMENTS)
def test_a_hold_releases_after_now_outside_quiet_hours(case, qh, now):
    c, r = case
    c = replace(c, channels=("email", *c.channels), critical=True, ignore_quiet_hours=False)
    newest = grant("email", purpose=c.purpose, at=NOW + timedelta(days=3))  # later than any generated record
    r = replace(r, consents=[*r.consents, newest], addresses={**r.addresses, "email": "a@b.example"},
                preferences=replace(r.preferences, quiet_hours=qh), open_complaints=0, breached_slas=0)
    decision = decide(c, r, now, CAPS)
    if in_quiet_hours(qh, r.preferences.zone, now):
        assert decision.outcome == "hold" and decision.release_at > now
        assert not in_quiet_hours(qh, r.preferences.zone, decision.release_at)
        assert decide(c, r, decision.release_at, CAPS).outcome != "hold"
    else:
        assert decision.outcome != "hold"
