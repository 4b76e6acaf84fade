"""Quiet hours: a daily window of local wall-clock time in which a recipient gets no notifications.

The window that opens on local day D runs from ``start`` on D to ``end`` on D (or on D + 1 when it crosses
midnight, ``end < start``), both read with :func:`.schedule.local_instant`. It is an interval of instants, not a
test on the wall clock: when the clocks go back inside or just after the window, the repeated hour is quiet only
as far as the first occurrence of ``end``, and a window ending at a time skipped by a spring-forward change ends
when the gap ends. ``start == end`` (or no quiet hours at all) means never quiet.
"""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo

from services.notification.domain.model import QuietHours, require_aware
from services.notification.domain.schedule import as_zone, local_date, local_instant

_DAY = timedelta(days=1)


def in_quiet_hours(qh: QuietHours | None, tz: tzinfo | str, now: datetime) -> bool:
    """True when ``now`` lies in a quiet window (start inclusive, end exclusive)."""
    return _window_containing(qh, as_zone(tz), require_aware(now, "now")) is not None


def quiet_hours_end(qh: QuietHours | None, tz: tzinfo | str, now: datetime) -> datetime:
    """The first instant at or after ``now`` that is not quiet: the end of the window containing ``now``, or
    ``now`` itself (in UTC) outside quiet hours. Used as ``release_at`` of a held notification, so deciding
    again at that instant never finds the notification in quiet hours again."""
    zone, at = as_zone(tz), require_aware(now, "now")
    # A window may end exactly where the next one starts (both ends inside one spring-forward gap); walk on.
    while (window := _window_containing(qh, zone, at)) is not None:
        at = window[1]
    return at


def _window_containing(qh: QuietHours | None, zone: tzinfo, at: datetime) -> tuple[datetime, datetime] | None:
    if qh is None or qh.empty:
        return None
    today = local_date(at, zone)
    for day in (today - _DAY, today):
        start, end = _window(qh, zone, day)
        if start <= at < end:
            return start, end
    return None


def _window(qh: QuietHours, zone: tzinfo, day) -> tuple[datetime, datetime]:
    end_day = day + _DAY if qh.end < qh.start else day
    return local_instant(day, qh.start, zone), local_instant(end_day, qh.end, zone)
