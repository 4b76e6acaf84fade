"""Clocks. The routing service reads time only through a clock so that simulations can run faster than real
time: :class:`ScaledClock` maps real elapsed time to ``speed`` times as much routing time from an origin."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)


class ScaledClock:
    """``origin + (real now - origin) * speed``. Every process given the same origin and speed agrees on the
    time, so a load generator can stamp events in routing time."""

    def __init__(self, origin: datetime, speed: float) -> None:
        if origin.tzinfo is None or speed <= 0:
            raise ValueError("origin must be timezone-aware and speed positive")
        self.origin, self.speed = origin, speed
        self._origin_ts = origin.timestamp()

    def now(self) -> datetime:
        return self.origin + timedelta(seconds=(time.time() - self._origin_ts) * self.speed)

    def real_seconds(self, routing_seconds: float) -> float:
        return routing_seconds / self.speed
