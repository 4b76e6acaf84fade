from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.notification.domain.schedule import (digest_window_end, follow_up_due, local_instant,
                                                    throttled)

pytestmark = pytest.mark.unit

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
DAY = timedelta(days=1)

# 2026-03-06, 2026-03-27 and 2026-10-23 are Fridays. Berlin springs forward on 2026-03-29 (02:00 CET -> 03:00
# CEST at 01:00 UTC) and falls back on 2026-10-25 (03:00 CEST -> 02:00 CET at 01:00 UTC).


def berlin(*args) -> datetime:
    return datetime(*args, tzinfo=BERLIN)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_a_plain_local_time_is_converted_with_the_offset_of_that_day():
    assert local_instant(date(2026, 1, 15), time(9, 0), BERLIN) == utc(2026, 1, 15, 8, 0)
    assert local_instant(date(2026, 7, 15), time(9, 0), "Europe/Berlin") == utc(2026, 7, 15, 7, 0)


def test_a_time_skipped_by_spring_forward_means_the_end_of_the_gap():
    assert local_instant(date(2026, 3, 29), time(2, 30), BERLIN) == utc(2026, 3, 29, 1, 0)
    assert local_instant(date(2026, 3, 29), time(2, 0), BERLIN) == utc(2026, 3, 29, 1, 0)
    assert local_instant(date(2026, 3, 8), time(2, 30), NEW_YORK) == utc(2026, 3, 8, 7, 0)


def test_a_time_repeated_by_fall_back_means_its_first_occurrence():
    assert local_instant(date(2026, 10, 25), time(2, 30), BERLIN) == utc(2026, 10, 25, 0, 30)


def test_a_skipped_local_midnight_means_the_first_instant_of_the_day():
    # Chile moves its clocks from 00:00 to 01:00 on 2026-09-06.
    assert local_instant(date(2026, 9, 6), time(0, 0), "America/Santiago") == utc(2026, 9, 6, 4, 0)


def test_a_half_hour_gap_is_found_too():
    # Lord Howe Island moves from +10:30 to +11:00 at 02:00 local on 2026-10-04.
    assert local_instant(date(2026, 10, 4), time(2, 15), "Australia/Lord_Howe") == utc(2026, 10, 3, 15, 30)


def test_a_follow_up_due_on_a_weekday_is_unchanged():
    resolved = berlin(2026, 3, 3, 10, 0)  # Tuesday
    assert follow_up_due(resolved, DAY, BERLIN) == berlin(2026, 3, 4, 10, 0)


def test_a_follow_up_of_friday_evening_moves_to_monday_morning():
    assert follow_up_due(berlin(2026, 3, 6, 18, 0), DAY, BERLIN) == berlin(2026, 3, 9, 9, 0)


@pytest.mark.parametrize("resolved", [berlin(2026, 3, 6, 11, 0), berlin(2026, 3, 7, 11, 0)])
def test_due_on_saturday_or_sunday_means_monday(resolved):
    assert follow_up_due(resolved, DAY, BERLIN) == berlin(2026, 3, 9, 9, 0)


def test_weekend_to_none_keeps_the_weekend_time():
    assert follow_up_due(berlin(2026, 3, 6, 18, 0), DAY, BERLIN, None) == berlin(2026, 3, 7, 18, 0)


def test_weekend_to_is_the_local_time_given():
    due = follow_up_due(berlin(2026, 3, 6, 18, 0), DAY, BERLIN, time(10, 30))
    assert due == berlin(2026, 3, 9, 10, 30)


def test_the_delay_may_be_seconds():
    assert follow_up_due(berlin(2026, 3, 3, 10, 0), 3600, BERLIN) == berlin(2026, 3, 3, 11, 0)


def test_the_weekend_is_the_recipients_weekend():
    due = utc(2026, 3, 8, 23, 30)  # Sunday in UTC and New York, already Monday 00:30 in Berlin
    assert follow_up_due(due, 0, BERLIN) == due
    assert follow_up_due(due, 0, NEW_YORK) == datetime(2026, 3, 9, 9, 0, tzinfo=NEW_YORK)
    friday_night = utc(2026, 3, 6, 23, 30)  # Friday in UTC, Saturday 00:30 in Berlin
    assert follow_up_due(friday_night, 0, "UTC") == friday_night
    assert follow_up_due(friday_night, 0, BERLIN) == berlin(2026, 3, 9, 9, 0)


def test_monday_after_spring_forward_is_nine_in_summer_time():
    due = follow_up_due(berlin(2026, 3, 27, 19, 0), DAY, BERLIN)
    assert due == utc(2026, 3, 30, 7, 0)


def test_monday_after_fall_back_is_nine_in_winter_time():
    due = follow_up_due(berlin(2026, 10, 23, 19, 0), DAY, BERLIN)
    assert due == utc(2026, 10, 26, 8, 0)


def test_the_delay_is_elapsed_time_across_a_clock_change():
    # Saturday 12:00 CET + 24 h is Sunday 13:00 CEST; with weekend_to None the weekend time is kept.
    assert follow_up_due(berlin(2026, 3, 28, 12, 0), DAY, BERLIN, None) == berlin(2026, 3, 29, 13, 0)


def test_naive_datetimes_are_rejected():
    with pytest.raises(ValueError):
        follow_up_due(datetime(2026, 3, 6, 18, 0), DAY, BERLIN)


def test_a_digest_window_ends_its_length_after_the_first_message():
    assert digest_window_end(utc(2026, 3, 6, 18, 0), 3600) == utc(2026, 3, 6, 19, 0)
    assert digest_window_end(utc(2026, 3, 6, 18, 0), timedelta(minutes=5)) == utc(2026, 3, 6, 18, 5)


def test_throttled_once_the_limit_is_reached():
    assert not throttled(2, 3)
    assert throttled(3, 3)
    assert throttled(0, 0)


ZONES = st.sampled_from(["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "America/Santiago", "UTC"])
INSTANTS = st.datetimes(datetime(2026, 1, 1), datetime(2027, 1, 1), timezones=st.just(UTC))


@given(INSTANTS, st.integers(0, 7 * 86400), ZONES, st.times())
def test_a_follow_up_is_never_early_and_never_on_a_weekend(resolved, delay, tz, weekend_to):
    due = follow_up_due(resolved, delay, tz, weekend_to)
    assert due >= resolved + timedelta(seconds=delay)
    assert due.astimezone(ZoneInfo(tz)).weekday() < 5
    assert due - (resolved + timedelta(seconds=delay)) < timedelta(days=3)
