from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.routing.domain.calendar import BusinessCalendar

pytestmark = pytest.mark.unit

BERLIN = ZoneInfo("Europe/Berlin")
UTC = timezone.utc
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri")
HOUR = 3600


def berlin(*args) -> datetime:
    return datetime(*args, tzinfo=BERLIN)


def office(*holidays: str) -> BusinessCalendar:
    return BusinessCalendar.parse("Europe/Berlin", {day: ["09:00-17:00"] for day in WEEKDAYS}, holidays)


def split_shift() -> BusinessCalendar:
    return BusinessCalendar.parse("Europe/Berlin", {day: ["13:00-17:00", "09:00-12:00"] for day in WEEKDAYS})


def every_day(*spans: str, tz: str = "Europe/Berlin") -> BusinessCalendar:
    days = WEEKDAYS + ("sat", "sun")
    return BusinessCalendar.parse(tz, {day: list(spans) for day in days})


# 2026-03-06 is a Friday; Berlin springs forward on 2026-03-29 and falls back on 2026-10-25.


def test_friday_afternoon_plus_one_hour_is_monday_morning():
    result = office().add(berlin(2026, 3, 6, 16, 30), HOUR)
    assert result == berlin(2026, 3, 9, 9, 30)
    assert result.tzinfo == UTC


def test_adding_within_a_day_and_up_to_the_closing_time():
    cal = office()
    assert cal.add(berlin(2026, 3, 9, 10, 0), 2 * HOUR) == berlin(2026, 3, 9, 12, 0)
    assert cal.add(berlin(2026, 3, 6, 16, 0), HOUR) == berlin(2026, 3, 6, 17, 0)
    assert cal.add(berlin(2026, 3, 6, 16, 0), HOUR + 1) == berlin(2026, 3, 9, 9, 0, 1)
    assert cal.add(berlin(2026, 3, 9, 9, 0), 5 * 8 * HOUR) == berlin(2026, 3, 13, 17, 0)


def test_a_start_outside_hours_counts_from_the_next_opening():
    cal = office()
    assert cal.add(berlin(2026, 3, 7, 12, 0), HOUR) == berlin(2026, 3, 9, 10, 0)
    assert cal.add(berlin(2026, 3, 10, 7, 0), 1800) == berlin(2026, 3, 10, 9, 30)
    assert cal.add(berlin(2026, 3, 10, 17, 0), 1800) == berlin(2026, 3, 11, 9, 30)


def test_zero_seconds_is_the_next_opening_at_or_after_the_start():
    cal = office()
    assert cal.add(berlin(2026, 3, 10, 11, 15), 0) == berlin(2026, 3, 10, 11, 15)
    assert cal.add(berlin(2026, 3, 10, 9, 0), 0) == berlin(2026, 3, 10, 9, 0)
    assert cal.add(berlin(2026, 3, 10, 17, 0), 0) == berlin(2026, 3, 11, 9, 0)
    assert cal.add(berlin(2026, 3, 7, 8, 0), 0) == berlin(2026, 3, 9, 9, 0)


def test_start_in_another_zone_means_the_same_instant():
    start = berlin(2026, 3, 6, 16, 30).astimezone(ZoneInfo("America/New_York"))
    assert office().add(start, HOUR) == berlin(2026, 3, 9, 9, 30)


def test_split_shifts_skip_the_lunch_break():
    cal = split_shift()
    assert cal.hours[0] == ((time(9), time(12)), (time(13), time(17)))
    assert cal.add(berlin(2026, 3, 9, 11, 30), HOUR) == berlin(2026, 3, 9, 13, 30)
    assert cal.add(berlin(2026, 3, 9, 12, 15), 60) == berlin(2026, 3, 9, 13, 1)
    assert cal.add(berlin(2026, 3, 9, 9, 0), 3 * HOUR) == berlin(2026, 3, 9, 12, 0)
    assert cal.between(berlin(2026, 3, 9, 11, 0), berlin(2026, 3, 9, 14, 0)) == 2 * HOUR
    assert cal.between(berlin(2026, 3, 9, 0, 0), berlin(2026, 3, 10, 0, 0)) == 7 * HOUR
    assert not cal.is_open(berlin(2026, 3, 9, 12, 30))
    assert cal.is_open(berlin(2026, 3, 9, 13, 0))


def test_holidays_have_no_business_hours():
    cal = office("2026-03-09")
    assert cal.add(berlin(2026, 3, 6, 16, 30), HOUR) == berlin(2026, 3, 10, 9, 30)
    assert cal.between(berlin(2026, 3, 6, 0, 0), berlin(2026, 3, 11, 0, 0)) == 16 * HOUR
    assert not cal.is_open(berlin(2026, 3, 9, 10, 0))
    assert cal.holidays == frozenset({date(2026, 3, 9)})


def test_is_open_includes_the_opening_and_excludes_the_closing_instant():
    cal = office()
    assert cal.is_open(berlin(2026, 3, 9, 9, 0))
    assert cal.is_open(berlin(2026, 3, 9, 16, 59, 59))
    assert not cal.is_open(berlin(2026, 3, 9, 17, 0))
    assert not cal.is_open(berlin(2026, 3, 8, 12, 0))


def test_between_is_zero_for_empty_or_reversed_ranges_and_closed_time():
    cal = office()
    at = berlin(2026, 3, 9, 10, 0)
    assert cal.between(at, at) == 0.0
    assert cal.between(at, at - timedelta(hours=1)) == 0.0
    assert cal.between(berlin(2026, 3, 7, 0, 0), berlin(2026, 3, 9, 0, 0)) == 0.0


def test_business_hours_keep_their_local_times_on_dst_switch_days():
    cal = every_day("09:00-17:00")
    assert cal.add(berlin(2026, 3, 29, 9, 0), 8 * HOUR) == berlin(2026, 3, 29, 17, 0)
    assert cal.add(berlin(2026, 3, 28, 16, 0), 2 * HOUR) == berlin(2026, 3, 29, 10, 0)
    assert cal.add(berlin(2026, 10, 24, 16, 0), 2 * HOUR) == berlin(2026, 10, 25, 10, 0)
    assert cal.between(berlin(2026, 10, 25, 0, 0), berlin(2026, 10, 26, 0, 0)) == 8 * HOUR


def test_a_24_hour_day_is_23_hours_in_spring_and_25_hours_in_autumn():
    cal = every_day("00:00-24:00")
    assert cal.between(berlin(2026, 3, 29), berlin(2026, 3, 30)) == 23 * HOUR
    assert cal.between(berlin(2026, 10, 25), berlin(2026, 10, 26)) == 25 * HOUR
    assert cal.add(berlin(2026, 3, 29), 23 * HOUR) == berlin(2026, 3, 30)
    assert cal.add(berlin(2026, 10, 25), 24 * HOUR) == berlin(2026, 10, 25, 23, 0)


def test_intervals_spanning_the_switch_count_real_elapsed_time():
    cal = every_day("01:00-04:00")
    assert cal.between(berlin(2026, 3, 29), berlin(2026, 3, 30)) == 2 * HOUR
    assert cal.between(berlin(2026, 10, 25), berlin(2026, 10, 26)) == 4 * HOUR
    assert cal.add(berlin(2026, 3, 29, 1, 0), 2 * HOUR) == berlin(2026, 3, 29, 4, 0)


def test_a_night_shift_runs_through_the_spring_forward_gap():
    cal = every_day("00:00-06:00", "22:00-24:00")
    start = berlin(2026, 3, 28, 22, 0)
    assert cal.add(start, 7 * HOUR) == berlin(2026, 3, 29, 6, 0)
    assert cal.add(start, 7 * HOUR + 1) == berlin(2026, 3, 29, 22, 0, 1)


def test_an_opening_inside_the_gap_is_read_with_the_offset_before_the_switch():
    cal = every_day("02:30-05:00")
    assert cal.between(berlin(2026, 3, 29), berlin(2026, 3, 30)) == 1.5 * HOUR
    assert cal.add(berlin(2026, 3, 29, 0, 0), 0) == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)


def test_intervals_shifted_by_the_gap_never_count_twice():
    cal = every_day("01:00-02:30", "03:00-05:00")
    assert cal.between(berlin(2026, 3, 29), berlin(2026, 3, 30)) == 3 * HOUR
    assert cal.add(berlin(2026, 3, 29, 1, 0), 3 * HOUR) == berlin(2026, 3, 29, 5, 0)


def test_always_open_is_utc_and_plain_addition_across_dst():
    cal = BusinessCalendar.always_open()
    assert cal.tz == "UTC"
    start = berlin(2026, 3, 28, 20, 0)
    assert cal.add(start, 10 * HOUR) == start.astimezone(UTC) + timedelta(hours=10) == berlin(2026, 3, 29, 7, 0)
    assert cal.between(start, berlin(2026, 3, 31, 20, 0)) == 3 * 86400 - HOUR
    assert cal.is_open(start)


@given(st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2028, 1, 1)),
       st.integers(min_value=0, max_value=60 * 86400 * 10**6))
def test_always_open_adds_plainly(naive, micros):
    start = naive.replace(tzinfo=UTC)
    assert BusinessCalendar.always_open().add(start, micros / 1e6) == start + timedelta(microseconds=micros)


PROPERTY_CALENDARS = [split_shift(), office("2026-03-30", "2026-10-26"), every_day("00:00-06:00", "22:00-24:00"),
                      every_day("02:30-05:00"), every_day("01:00-02:30", "03:00-05:00"),
                      every_day("00:00-24:00", tz="America/New_York")]
instants = st.datetimes(min_value=datetime(2026, 3, 20), max_value=datetime(2026, 11, 5)).map(
    lambda naive: naive.replace(tzinfo=UTC))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(PROPERTY_CALENDARS), instants, st.integers(min_value=1, max_value=20 * 86400 * 10**6))
def test_between_measures_what_add_added(cal, start, micros):
    seconds = micros / 1e6
    end = cal.add(start, seconds)
    assert end >= start
    assert cal.between(start, end) == pytest.approx(seconds, abs=1e-6)
    assert cal.between(start, end - timedelta(microseconds=1)) < seconds


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(PROPERTY_CALENDARS), instants, instants, instants)
def test_between_is_additive_and_add_inverts_it(cal, a, b, c):
    a, b, c = sorted((a, b, c))
    assert cal.between(a, c) == pytest.approx(cal.between(a, b) + cal.between(b, c), abs=1e-6)
    elapsed = cal.between(a, c)
    if elapsed > 0:
        reached = cal.add(a, elapsed)
        assert reached <= c
        assert cal.between(reached, c) == 0.0


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(PROPERTY_CALENDARS), instants)
def test_zero_seconds_lands_on_an_open_instant_or_a_closing(cal, start):
    opening = cal.add(start, 0)
    assert opening >= start
    assert cal.is_open(opening)
    assert cal.between(start, opening) == 0.0


def test_parse_accepts_24_00_any_case_and_unsorted_intervals():
    cal = BusinessCalendar.parse("UTC", {"MON": ["13:00-24:00", "00:00-12:00"]}, ["2026-12-25"])
    assert cal.hours == {0: ((time(0), time(12)), (time(13), time(0)))}
    assert cal.holidays == frozenset({date(2026, 12, 25)})


@pytest.mark.parametrize("tz, hours, holidays, message", [
    ("Mars/Olympus", {"mon": ["09:00-17:00"]}, [], "unknown time zone"),
    ("UTC", {"monday": ["09:00-17:00"]}, [], "unknown day"),
    ("UTC", {"mon": "09:00-17:00"}, [], "must be a list"),
    ("UTC", {"mon": ["9-17"]}, [], "expected 'HH:MM-HH:MM'"),
    ("UTC", {"mon": ["09:00-25:00"]}, [], "invalid time"),
    ("UTC", {"mon": ["09:60-17:00"]}, [], "invalid time"),
    ("UTC", {"mon": ["17:00-09:00"]}, [], "ends before it starts"),
    ("UTC", {"mon": ["09:00-09:00"]}, [], "ends before it starts"),
    ("UTC", {"mon": ["09:00-13:00", "12:00-17:00"]}, [], "must not overlap"),
    ("UTC", {"mon": ["09:00-17:00"]}, ["25.12.2026"], "not an ISO date"),
])
def test_parse_rejects_bad_input_with_a_clear_message(tz, hours, holidays, message):
    with pytest.raises(ValueError, match=message):
        BusinessCalendar.parse(tz, hours, holidays)


def test_the_constructor_validates_too():
    with pytest.raises(ValueError, match="weekday"):
        BusinessCalendar("UTC", {7: ((time(9), time(17)),)})
    with pytest.raises(ValueError, match="sorted"):
        BusinessCalendar("UTC", {0: ((time(13), time(17)), (time(9), time(12)))})
    with pytest.raises(ValueError, match="holidays"):
        BusinessCalendar("UTC", {0: ((time(9), time(17)),)}, frozenset({"2026-12-25"}))


def test_calendars_are_values():
    assert office() == office()
    assert hash(office()) == hash(office())
    assert office("2026-12-25") != office()


def test_a_calendar_without_hours_raises_instead_of_looping():
    closed = BusinessCalendar.parse("UTC", {"mon": []})
    with pytest.raises(ValueError, match="no business hours"):
        closed.add(datetime(2026, 3, 9, tzinfo=UTC), 60)
    with pytest.raises(ValueError, match="no business hours"):
        closed.is_open(datetime(2026, 3, 9, tzinfo=UTC))


def test_many_holidays_in_a_row_are_skipped():
    mondays = [(date(2026, 3, 9) + timedelta(weeks=n)).isoformat() for n in range(60)]
    cal = BusinessCalendar.parse("UTC", {"mon": ["09:00-10:00"]}, mondays)
    assert cal.add(datetime(2026, 3, 9, tzinfo=UTC), 60) == datetime(2027, 5, 3, 9, 1, tzinfo=UTC)


def test_naive_datetimes_and_bad_durations_are_refused():
    cal = office()
    with pytest.raises(ValueError, match="timezone-aware"):
        cal.add(datetime(2026, 3, 9, 10), 60)
    with pytest.raises(ValueError, match="timezone-aware"):
        cal.between(berlin(2026, 3, 9, 10), datetime(2026, 3, 9, 12))
    with pytest.raises(ValueError, match="timezone-aware"):
        cal.is_open(datetime(2026, 3, 9, 10))
    for seconds in (-1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="seconds"):
            cal.add(berlin(2026, 3, 9, 10), seconds)
