"""Live updates for open console pages: PostgreSQL notifications fanned out to the pages watching a customer.

The projections send ``pg_notify('touchpoint_timeline', '<tenant> <customer id>')`` inside the transaction that
changes a customer, so a notification arrives only after the change is committed, and every timeline instance
hears every change whichever instance consumed it. One connection per process listens; each open page holds a
``Watch`` and is woken when its customer changes. A lost listener connection is re-opened; pages also wake on
their own every ``idle_seconds`` and read what changed, so a missed notification delays an update, never loses
it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

import asyncpg

from services.timeline.repository import NOTIFY_CHANNEL

log = logging.getLogger(__name__)


class Watch:
    """One page's interest in one customer; ``wait`` returns when it changed (or after ``timeout``)."""

    def __init__(self, hub: "LiveHub", key: tuple[str, str]) -> None:
        self._hub = hub
        self.key = key
        self._event = asyncio.Event()

    def wake(self) -> None:
        self._event.set()

    async def wait(self, timeout: float) -> bool:
        """True if woken by a change, False on timeout."""
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            return False
        self._event.clear()
        return True

    def close(self) -> None:
        self._hub._remove(self)


class LiveHub:
    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._watches: dict[tuple[str, str], set[Watch]] = defaultdict(set)
        self._conn: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()

    async def watch(self, tenant: str, customer_id: str) -> Watch:
        await self.ensure_listening()
        w = Watch(self, (tenant, customer_id))
        self._watches[w.key].add(w)
        return w

    def watching(self) -> int:
        return sum(len(ws) for ws in self._watches.values())

    async def close(self) -> None:
        if self._conn is not None and not self._conn.is_closed():
            await self._conn.close()

    async def ensure_listening(self) -> None:
        async with self._lock:
            if self._conn is not None and not self._conn.is_closed():
                return
            try:
                self._conn = await asyncpg.connect(self._dsn)
                await self._conn.add_listener(NOTIFY_CHANNEL, self._on_notify)
                self._conn.add_termination_listener(lambda _: self._wake_all())
            except (OSError, asyncpg.PostgresError) as exc:
                # Pages fall back to their idle wake-ups until the next watch re-opens the listener.
                log.warning("live updates unavailable", extra={"error": type(exc).__name__})
                self._conn = None

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        tenant, _, customer_id = payload.partition(" ")
        for w in list(self._watches.get((tenant, customer_id), ())):
            w.wake()

    def _wake_all(self) -> None:
        for ws in list(self._watches.values()):
            for w in list(ws):
                w.wake()

    def _remove(self, w: Watch) -> None:
        ws = self._watches.get(w.key)
        if ws is not None:
            ws.discard(w)
            if not ws:
                del self._watches[w.key]
