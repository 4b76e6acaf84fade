"""Garbage-collector settings for a long-running batch consumer, and the time the collector takes.

CPython starts a young collection every 700 net container allocations. A batch of 1,000 events allocates
hundreds of thousands (records, headers, dicts, models), so the collector runs hundreds of times per batch, and
every so often a full collection walks every object the process holds: the imported modules, the key cache, the
pools. :func:`settle` is called once the service has started: it moves what exists then (modules, clients,
settings) out of the collector's sight with :func:`gc.freeze` and raises the young threshold, so collections
are rarer and walk only what the batches create. Reference cycles are still collected, a little later.

The collector's pauses are counted per generation (``touchpoint_gc_pause_seconds_total``), so the effect is
visible in production, not only in a profile (a profiler charges a pause to whatever line allocated last).
"""

from __future__ import annotations

import gc
import time
from typing import Callable

# Young-generation threshold once settled (CPython's default is 700); the older two keep their defaults.
# 0 leaves the interpreter's thresholds as they are.
DEFAULT_YOUNG_THRESHOLD = 20_000


class PauseClock:
    """Adds each collection's duration to ``record(generation, seconds)``; installed in ``gc.callbacks``."""

    def __init__(self, record: Callable[[int, float], None], clock: Callable[[], float] = time.perf_counter) -> None:
        self._record = record
        self._clock = clock
        self._started = 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = self._clock()
        else:
            self._record(info["generation"], self._clock() - self._started)


def settle(young_threshold: int = DEFAULT_YOUNG_THRESHOLD,
           record: Callable[[int, float], None] | None = None) -> None:
    """Freeze what the process holds after start-up and apply ``young_threshold``; time collections from now on.

    Call once, after start-up (everything allocated before is then never scanned again). A second call (several
    apps in one process, as in tests) freezes what has been allocated since and replaces the clock: pauses are
    then recorded by the latest ``record`` only, never twice."""
    gc.collect()
    gc.freeze()
    if young_threshold > 0:
        _, older, oldest = gc.get_threshold()
        gc.set_threshold(young_threshold, older, oldest)
    if record is not None:
        gc.callbacks[:] = [c for c in gc.callbacks if not isinstance(c, PauseClock)]
        gc.callbacks.append(PauseClock(record))
