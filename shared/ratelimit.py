"""Per-key request rate limits: a token bucket per API key, per process.

Each key may make ``rate`` requests per second on average with bursts up to ``burst``. A request over the limit is
refused with 429 and the seconds until a token is available again. Limits are per service instance: N instances
behind a load balancer allow up to N times the rate, which bounds the load each instance takes, the purpose here.
"""

from __future__ import annotations

import math
import time
from typing import Callable


class RateLimited(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__("rate limit exceeded")
        self.retry_after = retry_after


class RateLimiter:
    """Token buckets keyed by API key id; ``rate`` 0 switches limiting off."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 100_000) -> None:
        self.rate, self.burst, self.clock, self.max_keys = rate, burst, clock, max_keys
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def take(self, key: str) -> None:
        """Spend one token of ``key``'s bucket or raise :class:`RateLimited`."""
        if self.rate <= 0:
            return
        now = self.clock()
        tokens, at = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            raise RateLimited(max(1, math.ceil((1 - tokens) / self.rate)))
        if len(self._buckets) >= self.max_keys and key not in self._buckets:
            self._buckets.clear()  # bounded memory; forgetting buckets only ever lets requests through
        self._buckets[key] = (tokens - 1, now)
