"""Background loops of a service process (timers, schedulers)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable

from shared.retry import is_transient

log = logging.getLogger(__name__)
MAX_BACKOFF_S = 10.0


async def run_every(step: Callable[[], Awaitable[Any]], interval_s: float, what: str,
                    stop: asyncio.Event | None = None) -> None:
    """Await ``step`` every ``interval_s`` seconds until ``stop`` is set (or the task is cancelled).

    A failing step never ends the loop and never makes it spin: the pause doubles after each consecutive
    failure, up to 10 s, and returns to ``interval_s`` after the next success. Transient failures (the database
    or Kafka briefly away) are logged as warnings, anything else as an error with its traceback.
    """
    delay = interval_s
    while stop is None or not stop.is_set():
        try:
            await step()
            delay = interval_s
        except Exception as exc:  # noqa: BLE001 - the loop must survive; non-transient errors are logged loudly
            delay = min(max(delay, 0.1) * 2, MAX_BACKOFF_S)
            transient = is_transient(exc)
            log.log(logging.WARNING if transient else logging.ERROR, "%s failed", what,
                    extra={"error": type(exc).__name__, "retry_in_s": delay}, exc_info=not transient)
        await asyncio.sleep(delay)


async def together(*steps: Awaitable[Any]) -> None:
    """Await ``steps`` concurrently. The first failure cancels the others, waits for them to end, and is raised
    as itself (not wrapped in an ``ExceptionGroup``: callers tell transient errors from others by type)."""
    tasks = [asyncio.ensure_future(s) for s in steps]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
