from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from services.notification.domain.caps import count_in_window, exceeded, window_start
from services.notification.domain.model import CapRule, PastSend

pytestmark = pytest.mark.unit

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
DAILY = CapRule("daily", 2, "calendar_day")
WEEKLY = CapRule("weekly", 5, "rolling", days=7)
MONTHLY = CapRule("monthly", 12, "rolling", days=30)
RULES = (DAILY, WEEKLY, MONTHLY)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def sent(*instants: datetime, transactional: bool = False) -> list[PastSend]:
    return [PastSend(at, "case_follow_up", transactional) for at in instants]


NOW = utc(2026, 6, 10, 12, 0)  # Wednesday; 14:00 in Berlin, 08:00 in New York


def test_a_calendar_day_starts_at_local_midnight():
    assert window_start(DAILY, BERLIN, NOW) == utc(2026, 6, 9, 22, 0)
    assert window_start(DAILY, NEW_YORK, NOW) == utc(2026, 6, 10, 4, 0)
    assert window_start(DAILY, "UTC", NOW) == utc(2026, 6, 10, 0, 0)


def test_several_calendar_days_reach_back_from_today():
    assert window_start(CapRule("two", 3, "calendar_day", days=2), BERLIN, NOW) == utc(2026, 6, 8, 22, 0)


def test_a_calendar_week_starts_on_local_monday():
    week = CapRule("week", 5, "calendar_week")
    assert window_start(week, BERLIN, NOW) == utc(2026, 6, 7, 22, 0)
    sunday_night_utc = utc(2026, 6, 14, 23, 0)  # already Monday in Berlin
    assert window_start(week, BERLIN, sunday_night_utc) == utc(2026, 6, 14, 22, 0)
    assert window_start(week, "UTC", sunday_night_utc) == utc(2026, 6, 8, 0, 0)


def test_a_rolling_window_is_elapsed_time():
    assert window_start(WEEKLY, BERLIN, NOW) == NOW - timedelta(days=7)
    assert window_start(MONTHLY, BERLIN, NOW) == NOW - timedelta(days=30)


def test_calendar_days_follow_clock_changes():
    assert window_start(DAILY, BERLIN, utc(2026, 3, 29, 12, 0)) == utc(2026, 3, 28, 23, 0)
    assert window_start(DAILY, BERLIN, utc(2026, 10, 25, 12, 0)) == utc(2026, 10, 24, 22, 0)
    # Chile skips local midnight on 2026-09-06: the day starts at 01:00 local.
    assert window_start(DAILY, "America/Santiago", utc(2026, 9, 6, 12, 0)) == utc(2026, 9, 6, 4, 0)


def test_yesterday_evening_local_does_not_count_today_although_it_is_the_same_utc_day():
    yesterday_evening = utc(2026, 6, 10, 3, 30)  # 23:30 on June 9 in New York
    assert count_in_window(DAILY, sent(yesterday_evening), NEW_YORK, NOW) == 0
    assert count_in_window(DAILY, sent(yesterday_evening), "UTC", NOW) == 1


def test_this_night_local_counts_today_although_it_is_the_previous_utc_day():
    after_midnight = utc(2026, 6, 9, 22, 30)  # 00:30 on June 10 in Berlin
    assert count_in_window(DAILY, sent(after_midnight), BERLIN, NOW) == 1
    assert count_in_window(DAILY, sent(after_midnight), "UTC", NOW) == 0


def test_a_send_at_the_window_start_counts_and_one_just_before_does_not():
    start = NOW - timedelta(days=7)
    assert count_in_window(WEEKLY, sent(start), BERLIN, NOW) == 1
    assert count_in_window(WEEKLY, sent(start - timedelta(seconds=1)), BERLIN, NOW) == 0


def test_rolling_thirty_days():
    sends = sent(*(NOW - timedelta(days=d, hours=1) for d in range(31)))
    assert count_in_window(MONTHLY, sends, BERLIN, NOW) == 30


def test_transactional_sends_do_not_count():
    sends = sent(NOW - timedelta(hours=1), NOW - timedelta(hours=2), transactional=True)
    assert count_in_window(DAILY, sends, BERLIN, NOW) == 0
    assert exceeded(RULES, sends, BERLIN, NOW) is None


def test_the_cap_is_reached_at_max_sends():
    assert exceeded(RULES, sent(NOW - timedelta(hours=1)), BERLIN, NOW) is None
    assert exceeded(RULES, sent(NOW - timedelta(hours=1), NOW - timedelta(hours=2)), BERLIN, NOW) == DAILY


def test_the_first_exceeded_rule_in_order_is_reported():
    this_week = sent(*(NOW - timedelta(days=d) for d in range(1, 6)))
    assert exceeded(RULES, this_week, BERLIN, NOW) == WEEKLY
    both = this_week + sent(NOW - timedelta(hours=1), NOW - timedelta(hours=2))
    assert exceeded(RULES, both, BERLIN, NOW) == DAILY
    assert exceeded((MONTHLY, WEEKLY, DAILY), both, BERLIN, NOW) == WEEKLY


def test_this_month_but_not_this_week():
    sends = sent(*(NOW - timedelta(days=d) for d in range(8, 20)))
    assert exceeded(RULES, sends, BERLIN, NOW) == MONTHLY


def test_a_cap_of_zero_allows_nothing():
    assert exceeded((CapRule("never", 0, "rolling", days=1),), [], BERLIN, NOW).name == "never"


@pytest.mark.parametrize("kwargs", [
    {"window": "hourly"}, {"window": "rolling", "days": 31}, {"window": "rolling", "days": 0},
    {"window": "calendar_day", "max": -1},
])
def test_invalid_rules_are_rejected(kwargs):
    with pytest.raises(ValueError):
        CapRule(**{"name": "bad", "max": 1, **kwargs})
