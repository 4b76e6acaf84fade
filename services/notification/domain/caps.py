"""Frequency caps: how many non-transactional notifications a recipient may get per window.

Windows, each ending at ``now``:

- ``calendar_day``: from local midnight of the recipient's day containing ``now``, ``days - 1`` days earlier
  (``days=1`` is "today" in the recipient's zone, not in UTC);
- ``calendar_week``: from local Monday 00:00 of the ISO week containing ``now`` (``days`` is not used);
- ``rolling``: the last ``days`` × 24 hours of elapsed time.

Transactional sends (receipts, delivery updates) neither are capped nor count against caps: a customer waiting
for a parcel should not lose the survey because of it, nor the parcel update because of the survey. Sends
stamped after ``now`` (clocks of two replicas) do count, so a cap errs towards sending less.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta, tzinfo
from typing import Iterable, Sequence

from services.notification.domain.model import CapRule, PastSend, require_aware
from services.notification.domain.schedule import local_date, local_instant

MIDNIGHT = time(0, 0)


def window_start(rule: CapRule, tz: tzinfo | str, now: datetime) -> datetime:
    """The first instant (UTC) of ``rule``'s window ending at ``now``."""
    now = require_aware(now, "now")
    if rule.window == "rolling":
        return now - timedelta(days=rule.days)
    today = local_date(now, tz)
    if rule.window == "calendar_week":
        return local_instant(today - timedelta(days=today.weekday()), MIDNIGHT, tz)
    return local_instant(today - timedelta(days=rule.days - 1), MIDNIGHT, tz)


def count_in_window(rule: CapRule, past_sends: Iterable[PastSend], tz: tzinfo | str, now: datetime) -> int:
    """Non-transactional sends at or after the window's start."""
    start = window_start(rule, tz, now)
    return sum(1 for send in past_sends if not send.transactional and require_aware(send.at, "sent at") >= start)


def exceeded(rules: Sequence[CapRule], past_sends: Sequence[PastSend], tz: tzinfo | str,
             now: datetime) -> CapRule | None:
    """The first rule, in the given order, whose window already holds ``max`` sends, so one more would break
    it; None when another send is allowed. Configuration lists the strictest rule first."""
    for rule in rules:
        if count_in_window(rule, past_sends, tz, now) >= rule.max:
            return rule
    return None
