"""Queue order and waiting-time estimates.

Order: higher effective priority first, where waiting raises priority by one level every ``ageing_s`` seconds
so that low-priority conversations cannot starve; equal effective priorities keep arrival order, then
conversation id, so the order is total and the same in every process. Naive datetimes raise ValueError.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Sequence

from services.routing.domain.calendar import require_aware


@dataclass(frozen=True)
class Waiting:
    """A queued conversation; ``priority``: higher is served first."""

    conversation_id: str
    queue: str
    priority: int
    queued_at: datetime

    def __post_init__(self) -> None:
        require_aware(self.queued_at, "queued_at")

    def effective_priority(self, now: datetime, ageing_s: float) -> float:
        """``priority + waited_s / ageing_s``; plain ``priority`` when ``ageing_s <= 0``. Time before
        ``queued_at`` does not count, so a clock slightly behind never lowers a priority."""
        if ageing_s <= 0:
            return float(self.priority)
        waited_s = max(0.0, (now - self.queued_at).total_seconds())
        return self.priority + waited_s / ageing_s


def rank(entries: Sequence[Waiting], now: datetime, ageing_s: float) -> list[Waiting]:
    """All entries, across queues, in serving order at ``now``."""
    require_aware(now, "now")
    return sorted(entries, key=lambda w: (-w.effective_priority(now, ageing_s), w.queued_at, w.conversation_id))


def positions(entries: Sequence[Waiting], now: datetime, ageing_s: float) -> dict[str, int]:
    """Conversation id → 1-based position within its own queue at ``now`` (ids are unique across queues)."""
    seen: dict[str, int] = defaultdict(int)
    result = {}
    for waiting in rank(entries, now, ageing_s):
        seen[waiting.queue] += 1
        result[waiting.conversation_id] = seen[waiting.queue]
    return result


class HandlingRate:
    """Live rate at which a queue's conversations leave for agents (assignments per second), from the
    departures in a sliding window (default 15 min), with a prior (default_handle_s / agents) when sparse.

    The estimate is the Gamma–Poisson posterior mean ``(n + 1) / (t + default_handle_s / agents)``: ``n``
    departures seen in the last ``t`` seconds of observation (at most the window; observation of a queue
    starts when it is first mentioned), plus one pseudo-departure at the prior rate. With nothing observed it
    is exactly the prior; with many departures the observations dominate. State lives in memory only: after
    a restart the estimate starts again from the prior.
    """

    def __init__(self, window_s: float = 900, default_handle_s: float = 300) -> None:
        if window_s <= 0 or default_handle_s <= 0:
            raise ValueError("window_s and default_handle_s must be positive")
        self.window = timedelta(seconds=window_s)
        self.default_handle_s = float(default_handle_s)
        self._departures: dict[str, list[datetime]] = defaultdict(list)
        self._since: dict[str, datetime] = {}

    def departed(self, queue: str, at: datetime) -> None:
        """Records that a conversation of ``queue`` went to an agent at ``at`` (arrival order not required)."""
        require_aware(at, "at")
        self._observe(queue, at)
        departures = self._departures[queue]
        bisect.insort(departures, at)
        del departures[:bisect.bisect_right(departures, departures[-1] - self.window)]

    def rate(self, queue: str, now: datetime, agents_serving: int) -> float:
        """Estimated departures per second at ``now``; ``agents_serving`` below 1 counts as 1, so the prior
        assumes someone will serve the queue eventually."""
        require_aware(now, "now")
        self._observe(queue, now)
        departures = self._departures[queue]
        recent = bisect.bisect_right(departures, now) - bisect.bisect_right(departures, now - self.window)
        observed_s = min(max(now - self._since[queue], timedelta(0)), self.window).total_seconds()
        prior_gap_s = self.default_handle_s / max(agents_serving, 1)
        return (recent + 1) / (observed_s + prior_gap_s)

    def eta_s(self, queue: str, position: int, now: datetime, agents_serving: int) -> float:
        """Expected seconds until the conversation at 1-based ``position`` goes to an agent: ``position``
        departures at the estimated rate. Always finite. Raises ValueError for a position below 1."""
        if position < 1:
            raise ValueError(f"position is 1-based, got {position!r}")
        return position / self.rate(queue, now, agents_serving)

    def _observe(self, queue: str, at: datetime) -> None:
        if queue not in self._since or at < self._since[queue]:
            self._since[queue] = at
