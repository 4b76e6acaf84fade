"""Bounded retries with exponential backoff and full jitter for transient dependency failures.

Only errors that can heal by themselves (connection loss, deadlock, Kafka unavailable) are retried; anything
else propagates at once. After the last attempt the error propagates, so the consumer hands the batch back
to Kafka (nack) instead of committing past it, and the next delivery starts the backoff again: no hot loop.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Awaitable, Callable, TypeVar

import asyncpg
from aiokafka.errors import KafkaError

log = logging.getLogger(__name__)
T = TypeVar("T")

TRANSIENT: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
    asyncpg.TooManyConnectionsError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    KafkaError,
)


def is_transient(exc: BaseException) -> bool:
    """Errors that can heal by themselves. A closed connection is one; other ``InterfaceError``s (wrong
    arguments, misuse) are bugs and must surface instead of being retried."""
    if isinstance(exc, TRANSIENT):
        return True
    return isinstance(exc, asyncpg.InterfaceError) and "closed" in str(exc)


def backoff(attempt: int, base: float, cap: float) -> float:
    return random.uniform(0, min(cap, base * (2 ** attempt)))


async def with_retries(fn: Callable[[], Awaitable[T]], attempts: int, base: float, cap: float, what: str) -> T:
    for attempt in range(attempts):
        try:
            return await fn()
        except Exception as exc:
            if not is_transient(exc) or attempt == attempts - 1:
                raise
            delay = backoff(attempt, base, cap)
            log.warning("transient failure, retrying", extra={"what": what, "attempt": attempt + 1,
                                                              "error": type(exc).__name__, "delay_s": round(delay, 3)})
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")
