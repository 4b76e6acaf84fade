"""Business calendars: which instants count as working time, and arithmetic in working time.

A calendar is a time zone, weekly local opening intervals (several per day for split shifts) and holidays.
Arithmetic walks local days and converts each interval's local start and end to UTC with :mod:`zoneinfo`, so a
day on which the clocks change has as many business seconds as really elapse (a 24-hour calendar in
Europe/Berlin has a 23-hour day in March and a 25-hour day in October). Local times that do not exist on a
spring-forward day are read with the offset in force before the change (PEP 495, ``fold=0``), which moves them
forward by the size of the gap; ambiguous fall-back times mean their first occurrence.

Inputs must be timezone-aware datetimes (any zone); results are UTC. Every error is a :class:`ValueError`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Iterable, Iterator, Mapping, Sequence
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MIDNIGHT = time(0, 0)
_FULL_DAY = timedelta(days=1)
_SPAN = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")

Interval = tuple[time, time]


def require_aware(value: datetime, name: str = "datetime") -> datetime:
    """``value`` itself; ValueError when it is naive, because a naive instant is ambiguous across zones."""
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {value!r}")
    return value


@dataclass(frozen=True)
class BusinessCalendar:
    """Weekly business hours in one IANA zone.

    ``hours`` maps a weekday (0 = Monday … 6 = Sunday) to sorted, non-overlapping local intervals; an end of
    ``time(0, 0)`` means 24:00. Missing weekdays are closed. ``holidays`` are local dates with no business hours.
    Construction validates everything and raises ValueError, so a calendar that exists is usable.
    """

    tz: str
    hours: Mapping[int, tuple[Interval, ...]]
    holidays: frozenset[date] = frozenset()

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
            raise ValueError(f"unknown time zone {self.tz!r}") from exc
        hours = {}
        for weekday, intervals in self.hours.items():
            if weekday not in range(7):
                raise ValueError(f"weekday must be 0 (Monday) to 6 (Sunday), got {weekday!r}")
            hours[weekday] = _checked_intervals(DAY_NAMES[weekday], intervals)
        object.__setattr__(self, "hours", hours)
        if not all(isinstance(d, date) and not isinstance(d, datetime) for d in self.holidays):
            raise ValueError("holidays must be dates")
        object.__setattr__(self, "holidays", frozenset(self.holidays))

    def __hash__(self) -> int:
        return hash((self.tz, tuple(sorted(self.hours.items())), self.holidays))

    @classmethod
    def always_open(cls) -> "BusinessCalendar":
        """Open around the clock in UTC: business time equals elapsed time."""
        return cls("UTC", {weekday: ((MIDNIGHT, MIDNIGHT),) for weekday in range(7)})

    @classmethod
    def parse(cls, tz: str, hours: Mapping[str, Sequence[str]], holidays: Iterable[str] = ()) -> "BusinessCalendar":
        """A calendar from configuration values.

        ``hours`` keys are ``mon`` … ``sun`` (any case), values lists of ``"HH:MM-HH:MM"`` (``24:00`` allowed as
        an end); intervals of a day may come in any order but must not overlap. ``holidays`` are ISO dates.
        Raises ValueError naming the offending key or value.
        """
        parsed: dict[int, tuple[Interval, ...]] = {}
        for key, spans in hours.items():
            name = str(key).strip().lower()
            if name not in DAY_NAMES:
                raise ValueError(f"unknown day {key!r}: expected one of {', '.join(DAY_NAMES)}")
            if isinstance(spans, str):
                raise ValueError(f"hours for {name} must be a list of 'HH:MM-HH:MM' strings, got {spans!r}")
            intervals = sorted((_parse_span(name, span) for span in spans), key=_interval_key)
            parsed[DAY_NAMES.index(name)] = tuple(intervals)
        return cls(tz, parsed, frozenset(_parse_holiday(h) for h in holidays))

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)

    def is_open(self, at: datetime) -> bool:
        """True when ``at`` lies inside a business interval (start inclusive, end exclusive)."""
        require_aware(at, "at")
        for start, end in self._intervals_from(self._local_date(at) - _FULL_DAY):
            if start > at:
                return False
            if at < end:
                return True
        raise AssertionError("unreachable: _intervals_from never ends")

    def add(self, start: datetime, seconds: float) -> datetime:
        """The instant at which ``seconds`` business seconds have elapsed after ``start``.

        Counting begins at the first opening at or after ``start``; ``seconds == 0`` returns that opening. A sum
        that ends exactly at a closing time returns the closing time, not the next opening. Precision is one
        microsecond. Raises ValueError for negative or non-finite ``seconds`` and for a calendar with no hours.
        """
        start = require_aware(start, "start").astimezone(timezone.utc)
        if not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds >= 0):
            raise ValueError(f"seconds must be finite and >= 0, got {seconds!r}")
        remaining = timedelta(seconds=seconds)
        for opens, closes in self._intervals_from(self._local_date(start) - _FULL_DAY):
            if closes <= start:
                continue
            opens = max(opens, start)
            if remaining <= closes - opens:
                return opens + remaining
            remaining -= closes - opens
        raise AssertionError("unreachable: _intervals_from never ends")

    def between(self, start: datetime, end: datetime) -> float:
        """Business seconds in ``[start, end)``; 0.0 when ``end <= start``. ``add`` and ``between`` agree:
        ``between(s, add(s, x)) == x`` to the microsecond."""
        require_aware(start, "start")
        require_aware(end, "end")
        if end <= start:
            return 0.0
        total = timedelta(0)
        for opens, closes in self._intervals_from(self._local_date(start) - _FULL_DAY):
            if opens >= end:
                break
            overlap = min(closes, end) - max(opens, start)
            if overlap > timedelta(0):
                total += overlap
        return total.total_seconds()

    def _local_date(self, at: datetime) -> date:
        return at.astimezone(self.zone).date()

    def _intervals_from(self, day: date) -> Iterator[tuple[datetime, datetime]]:
        """UTC business intervals from local ``day`` on, in order and never overlapping, without end.

        Raises ValueError when no interval turns up for longer than the holidays could explain, which is how a
        calendar without any hours fails instead of looping forever.
        """
        if not any(self.hours.values()):
            raise ValueError("the calendar has no business hours")
        zone, previous_end = self.zone, datetime.min.replace(tzinfo=timezone.utc)
        closed_days, closed_limit = 0, 7 * (len(self.holidays) + 2)
        while True:
            produced = False
            for opens, closes in self._day_intervals(day, zone):
                opens = max(opens, previous_end)
                if closes > opens:
                    produced, previous_end = True, closes
                    yield opens, closes
            closed_days = 0 if produced else closed_days + 1
            if closed_days > closed_limit:
                raise ValueError("the calendar has no business hours in reach")
            day += _FULL_DAY

    def _day_intervals(self, day: date, zone: ZoneInfo) -> Iterator[tuple[datetime, datetime]]:
        if day in self.holidays:
            return
        for start, end in self.hours.get(day.weekday(), ()):
            end_day = day + _FULL_DAY if end == MIDNIGHT else day
            yield _utc(day, start, zone), _utc(end_day, end, zone)


def _utc(day: date, at: time, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, at, tzinfo=zone).astimezone(timezone.utc)


def _offset(at: time) -> timedelta:
    return timedelta(hours=at.hour, minutes=at.minute, seconds=at.second, microseconds=at.microsecond)


def _interval_key(interval: Interval) -> tuple[timedelta, timedelta]:
    """Offsets from local midnight of an interval's start and end, reading an end of 00:00 as 24:00."""
    start, end = interval
    return _offset(start), _FULL_DAY if end == MIDNIGHT else _offset(end)


def _checked_intervals(day: str, intervals: Iterable[Interval]) -> tuple[Interval, ...]:
    checked = tuple(tuple(interval) for interval in intervals)
    previous_end = timedelta(0)
    for interval in checked:
        if len(interval) != 2 or not all(isinstance(t, time) and t.tzinfo is None for t in interval):
            raise ValueError(f"{day}: an interval is a pair of naive times, got {interval!r}")
        start, end = _interval_key(interval)
        if start >= end:
            raise ValueError(f"{day}: interval {_show(interval)} ends before it starts")
        if start < previous_end:
            raise ValueError(f"{day}: intervals must be sorted and must not overlap ({_show(interval)})")
        previous_end = end
    return checked  # type: ignore[return-value]


def _parse_span(day: str, span: str) -> Interval:
    match = _SPAN.match(span) if isinstance(span, str) else None
    if match is None:
        raise ValueError(f"{day}: expected 'HH:MM-HH:MM', got {span!r}")
    h1, m1, h2, m2 = (int(part) for part in match.groups())
    if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2 != 0):
        raise ValueError(f"{day}: invalid time in {span!r}")
    return time(h1, m1), MIDNIGHT if h2 == 24 else time(h2, m2)


def _parse_holiday(value: str) -> date:
    try:
        return date.fromisoformat(str(value))
    except ValueError as exc:
        raise ValueError(f"holiday {value!r} is not an ISO date (YYYY-MM-DD)") from exc


def _show(interval: Interval) -> str:
    start, end = interval
    return f"{start:%H:%M}-{'24:00' if end == MIDNIGHT else format(end, '%H:%M')}"
