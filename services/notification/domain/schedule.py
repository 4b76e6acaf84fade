"""When a notification is due, in the recipient's local time.

Wall-clock values are turned into instants with :func:`local_instant`, which is how every module of this package
reads a local time: a time that occurs twice when the clocks go back means its first occurrence, and a time that
does not exist because the clocks jump forward means the first instant after it (the end of the gap, e.g. 03:00
CEST for 02:30 on the day Europe/Berlin springs forward). Delays are elapsed time, not wall-clock time. Naive
datetimes raise ValueError; results are UTC.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo

from services.notification.domain.model import UTC, require_aware

DEFAULT_WEEKEND_TO = time(9, 0)
SATURDAY = 5


def as_zone(tz: tzinfo | str) -> tzinfo:
    """A zone from an IANA name or a tzinfo; an unknown name raises ``ZoneInfoNotFoundError``."""
    return ZoneInfo(tz) if isinstance(tz, str) else tz


def local_instant(day: date, wall: time, tz: tzinfo | str) -> datetime:
    """The UTC instant at which the clocks of ``tz`` show ``wall`` on ``day``: the first occurrence of an
    ambiguous time, the end of the gap for a time skipped by a spring-forward change."""
    zone = as_zone(tz)
    naive = datetime.combine(day, wall.replace(tzinfo=None))
    instant = naive.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) == naive:
        return instant
    return _end_of_gap(naive, zone)


def _end_of_gap(naive: datetime, zone: tzinfo) -> datetime:
    """The first instant whose local time is later than ``naive``, a time inside a gap.

    Reading ``naive`` with the offset after the change (fold=1) gives an instant before the change, with the
    offset before it (fold=0) one after; the change lies in between, found by bisection to the second (zone
    transitions fall on whole seconds).
    """
    low = int(naive.replace(tzinfo=zone, fold=1).timestamp())
    high = int(naive.replace(tzinfo=zone, fold=0).timestamp())
    while low < high:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, zone).replace(tzinfo=None) > naive:
            high = middle
        else:
            low = middle + 1
    return datetime.fromtimestamp(low, UTC)


def local_date(at: datetime, tz: tzinfo | str) -> date:
    return require_aware(at, "at").astimezone(as_zone(tz)).date()


def follow_up_due(resolved_at: datetime, delay: timedelta | float, tz: tzinfo | str,
                  weekend_to: time | None = DEFAULT_WEEKEND_TO) -> datetime:
    """``resolved_at`` plus ``delay`` (a timedelta or seconds of elapsed time), moved to the following Monday
    at ``weekend_to`` local time when it falls on a Saturday or Sunday in ``tz``; ``weekend_to=None`` keeps the
    weekend time. Nobody wants "is your problem solved?" on a Sunday, and Monday morning is when the team that
    reopens a conversation is back."""
    delay = delay if isinstance(delay, timedelta) else timedelta(seconds=delay)
    due = require_aware(resolved_at, "resolved_at") + delay
    day = local_date(due, tz)
    if weekend_to is None or day.weekday() < SATURDAY:
        return due
    return local_instant(day + timedelta(days=7 - day.weekday()), weekend_to, tz)


def digest_window_end(first_at: datetime, window: timedelta | float) -> datetime:
    """When a digest opened by a message at ``first_at`` closes and goes out as one notification."""
    window = window if isinstance(window, timedelta) else timedelta(seconds=window)
    return require_aware(first_at, "first_at") + window


def throttled(count_in_window: int, max: int) -> bool:
    """True when ``count_in_window`` earlier messages already reach the per-trigger limit ``max``."""
    return count_in_window >= max
