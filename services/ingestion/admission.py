"""Back-pressure for the ingestion gateway: refuse work early instead of queueing it without bound.

Two limits, checked before anything is published:

- **publishes in flight**: at most ``max_in_flight`` requests may be waiting for Kafka at once. Beyond that the
  request is refused with 503 at once, so an overload or a stalled broker cannot pile up request bodies in
  memory.
- **consumer lag**: a probe reports the largest backlog of the pipeline's consumer groups. While it exceeds
  ``max_lag`` records, requests are refused with 429: the system is behind, and the sender should slow down.

Refusals carry ``Retry-After``. A publish that Kafka does not acknowledge within ``publish_timeout`` seconds is
answered 503 (never 2xx for what is not durable); the sender's retry is de-duplicated by event id, so a record
that reached Kafka after all is applied once. Framework-free: the HTTP layer maps :class:`Overloaded`.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import AsyncIterator, Awaitable, Callable


class Overloaded(Exception):
    """The request was refused to protect the system; retry after ``retry_after`` seconds."""

    def __init__(self, status: int, reason: str, detail: str, retry_after: int) -> None:
        super().__init__(reason)
        self.status, self.reason, self.detail, self.retry_after = status, reason, detail, retry_after


@dataclass
class AdmissionLimits:
    max_in_flight: int = 256
    max_lag: int = 0  # 0 = no lag limit
    publish_timeout: float = 10.0
    retry_after: int = 5


class Admission:
    """Admits a publish only while the in-flight and lag limits hold; bounds how long it may take."""

    def __init__(self, limits: AdmissionLimits) -> None:
        self.limits = limits
        self.in_flight = 0
        self.lag: int | None = None  # last probe result; None = unknown (no probe yet, or it failed)
        self.refused = {"in_flight": 0, "lag": 0, "timeout": 0}

    @asynccontextmanager
    async def publishing(self) -> AsyncIterator[None]:
        """Hold one in-flight slot for the body of the block. Raises :class:`Overloaded` when refused."""
        limits = self.limits
        if limits.max_lag and self.lag is not None and self.lag > limits.max_lag:
            self.refused["lag"] += 1
            raise Overloaded(429, "backlog", f"the pipeline is {self.lag} events behind; slow down",
                             limits.retry_after)
        if self.in_flight >= limits.max_in_flight:
            self.refused["in_flight"] += 1
            raise Overloaded(503, "overloaded", "too many requests are waiting for storage; retry later",
                             limits.retry_after)
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1

    async def bounded(self, publish: Awaitable[None]) -> None:
        """Await ``publish`` for at most ``publish_timeout`` seconds; a timeout is a 503."""
        try:
            await asyncio.wait_for(publish, self.limits.publish_timeout)
        except asyncio.TimeoutError:
            self.refused["timeout"] += 1
            raise Overloaded(503, "unavailable", "storage did not confirm in time; retry later",
                             self.limits.retry_after) from None


async def watch_lag(admission: Admission, probe: Callable[[], Awaitable[int]], every: float,
                    on_error: Callable[[BaseException], None]) -> None:
    """Refresh ``admission.lag`` every ``every`` seconds. A failing probe leaves the lag unknown (no 429:
    a broker that cannot be asked is caught by the publish timeout instead)."""
    while True:
        try:
            admission.lag = await probe()
        except Exception as exc:  # noqa: BLE001 - the probe is advisory; report and keep watching
            admission.lag = None
            on_error(exc)
        await asyncio.sleep(every)
