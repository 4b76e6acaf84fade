from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from services.notification.domain.model import QuietHours
from services.notification.domain.quiet_hours import in_quiet_hours, quiet_hours_end

pytestmark = pytest.mark.unit

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
NIGHT = QuietHours(time(22, 0), time(7, 0))
TINY = timedelta(microseconds=1)


def berlin(*args, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=BERLIN, fold=fold)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize("local, quiet", [
    ((21, 59), False), ((22, 0), True), ((23, 30), True), ((0, 0), True), ((6, 59), True), ((7, 0), False),
    ((12, 0), False),
])
def test_a_window_across_midnight_includes_its_start_and_excludes_its_end(local, quiet):
    assert in_quiet_hours(NIGHT, BERLIN, berlin(2026, 6, 10, *local)) is quiet


def test_a_window_within_one_day():
    lunch = QuietHours(time(12, 0), time(14, 0))
    assert in_quiet_hours(lunch, "UTC", utc(2026, 6, 10, 13, 0))
    assert not in_quiet_hours(lunch, "UTC", utc(2026, 6, 10, 14, 0))
    assert quiet_hours_end(lunch, "UTC", utc(2026, 6, 10, 13, 0)) == utc(2026, 6, 10, 14, 0)


def test_the_end_of_a_window_opened_yesterday_is_this_morning():
    assert quiet_hours_end(NIGHT, BERLIN, berlin(2026, 6, 10, 3, 0)) == berlin(2026, 6, 10, 7, 0)


def test_the_end_of_a_window_opened_this_evening_is_tomorrow_morning():
    assert quiet_hours_end(NIGHT, BERLIN, berlin(2026, 6, 10, 23, 0)) == berlin(2026, 6, 11, 7, 0)


def test_release_is_the_exact_end_and_results_are_utc():
    now = berlin(2026, 6, 10, 23, 0)
    release = quiet_hours_end(NIGHT, BERLIN, now)
    assert release == utc(2026, 6, 11, 5, 0) and release.tzinfo is UTC
    assert in_quiet_hours(NIGHT, BERLIN, release - TINY)
    assert not in_quiet_hours(NIGHT, BERLIN, release)


@pytest.mark.parametrize("qh", [None, QuietHours(time(22, 0), time(22, 0))])
def test_no_window_or_an_empty_one_is_never_quiet(qh):
    now = utc(2026, 6, 10, 23, 0)
    assert not in_quiet_hours(qh, BERLIN, now)
    assert quiet_hours_end(qh, BERLIN, now) == now


def test_outside_the_window_the_end_is_now():
    now = berlin(2026, 6, 10, 12, 0)
    assert quiet_hours_end(NIGHT, BERLIN, now) == now


def test_the_window_is_read_in_the_recipients_zone():
    now = utc(2026, 6, 10, 2, 0)  # 22:00 on June 9 in New York
    evening = QuietHours(time(21, 0), time(23, 30))
    assert not in_quiet_hours(evening, "UTC", now)
    assert in_quiet_hours(evening, NEW_YORK, now)
    assert quiet_hours_end(evening, NEW_YORK, now) == utc(2026, 6, 10, 3, 30)
    assert quiet_hours_end(NIGHT, NEW_YORK, now) == utc(2026, 6, 10, 11, 0)  # 07:00 EDT
    early = QuietHours(time(1, 0), time(6, 0))
    assert in_quiet_hours(early, "UTC", now)
    assert not in_quiet_hours(early, NEW_YORK, now)


def test_a_window_ending_at_a_time_skipped_by_spring_forward_ends_when_the_gap_ends():
    qh = QuietHours(time(22, 0), time(2, 30))
    now = utc(2026, 3, 29, 0, 45)  # 01:45 CET
    assert in_quiet_hours(qh, BERLIN, now)
    assert quiet_hours_end(qh, BERLIN, now) == utc(2026, 3, 29, 1, 0)  # 03:00 CEST
    assert in_quiet_hours(qh, BERLIN, utc(2026, 3, 29, 1, 0) - TINY)
    assert not in_quiet_hours(qh, BERLIN, utc(2026, 3, 29, 1, 0))


def test_a_window_starting_in_the_gap_starts_when_the_gap_ends():
    qh = QuietHours(time(2, 30), time(5, 0))
    assert not in_quiet_hours(qh, BERLIN, utc(2026, 3, 29, 0, 59))
    assert in_quiet_hours(qh, BERLIN, utc(2026, 3, 29, 1, 0))
    assert quiet_hours_end(qh, BERLIN, utc(2026, 3, 29, 1, 0)) == berlin(2026, 3, 29, 5, 0)


def test_a_night_window_is_an_hour_shorter_in_spring_and_longer_in_autumn():
    spring = quiet_hours_end(NIGHT, BERLIN, berlin(2026, 3, 28, 22, 0)) - berlin(2026, 3, 28, 22, 0)
    autumn = quiet_hours_end(NIGHT, BERLIN, berlin(2026, 10, 24, 22, 0)) - berlin(2026, 10, 24, 22, 0)
    assert spring == timedelta(hours=8)
    assert autumn == timedelta(hours=10)
    assert quiet_hours_end(NIGHT, BERLIN, utc(2026, 10, 25, 1, 30)) == utc(2026, 10, 25, 6, 0)


def test_a_window_ending_in_the_repeated_hour_ends_at_its_first_occurrence():
    qh = QuietHours(time(22, 0), time(2, 30))
    first = berlin(2026, 10, 25, 2, 15)              # 00:15 UTC, summer time
    second = berlin(2026, 10, 25, 2, 15, fold=1)     # 01:15 UTC, winter time
    assert in_quiet_hours(qh, BERLIN, first)
    assert quiet_hours_end(qh, BERLIN, first) == utc(2026, 10, 25, 0, 30)
    # The window is over once 02:30 has been reached; the wall clock showing 02:15 again does not reopen it.
    assert not in_quiet_hours(qh, BERLIN, second)
    assert quiet_hours_end(qh, BERLIN, second) == utc(2026, 10, 25, 1, 15)


def test_windows_touching_in_a_gap_are_walked_through():
    # 02:40-02:10: on spring-forward day both ends fall into the gap, so one window ends where the next begins.
    qh = QuietHours(time(2, 40), time(2, 10))
    now = utc(2026, 3, 29, 0, 30)
    assert quiet_hours_end(qh, BERLIN, now) == berlin(2026, 3, 30, 2, 10)


def test_naive_now_is_rejected():
    with pytest.raises(ValueError):
        in_quiet_hours(NIGHT, BERLIN, datetime(2026, 6, 10, 23, 0))


def test_quiet_hours_are_naive_local_times():
    with pytest.raises(ValueError):
        QuietHours(time(22, 0, tzinfo=UTC), time(7, 0))


MINUTE_TIMES = st.builds(time, st.integers(0, 23), st.sampled_from([0, 10, 15, 30, 40, 45, 59]))
ZONES = st.sampled_from(["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "America/Santiago", "UTC",
                         "Asia/Kolkata"])
INSTANTS = st.datetimes(datetime(2026, 1, 1), datetime(2027, 1, 1), timezones=st.just(UTC))


@given(MINUTE_TIMES, MINUTE_TIMES, ZONES, INSTANTS)
@example(time(22, 0), time(2, 30), "Europe/Berlin", utc(2026, 3, 29, 0, 45))
@example(time(22, 0), time(2, 30), "Europe/Berlin", utc(2026, 10, 25, 0, 15))
@example(time(2, 40), time(2, 10), "Europe/Berlin", utc(2026, 3, 29, 0, 30))
@example(time(0, 0), time(0, 30), "America/Santiago", utc(2026, 9, 6, 3, 50))
def test_release_is_never_quiet_and_never_before_now(start, end, tz, now):
    qh = QuietHours(start, end)
    release = quiet_hours_end(qh, tz, now)
    assert not in_quiet_hours(qh, tz, release)
    if in_quiet_hours(qh, tz, now):
        assert now < release <= now + timedelta(days=1)
        assert in_quiet_hours(qh, tz, now + (release - now) / 2)
        assert in_quiet_hours(qh, tz, release - TINY)
    else:
        assert release == now
