"""A ceiling on the dead-letter rate: a consumer that starts dead-lettering most of what it reads stops.

A poison record now and then belongs in ``<topic>.dlq``. A deployment bug (a new contract version the service
cannot read, a wrong schema) would instead send a whole topic there and commit past it. The ceiling stops that:
among the last ``window`` records a subscription read, at most ``max_share`` may be dead-lettered. The batch
that would cross it is neither dead-lettered nor committed, and the service shuts down with a clear log line,
so an operator looks before anything more is parked (``touchpoint dlq inspect``). On restart the same batch
trips the ceiling again until the cause is fixed or the ceiling raised.
"""

from __future__ import annotations

from collections import deque


class DeadLetterCeilingExceeded(Exception):
    """Dead-lettering the current batch would exceed the configured share; nothing of it was sent."""

    def __init__(self, topic: str, dead: int, window: int, max_share: float) -> None:
        super().__init__(f"{dead} of the last {window} records of {topic} would be dead letters "
                         f"(ceiling {max_share:.0%})")
        self.topic, self.dead, self.window, self.max_share = topic, dead, window, max_share


class DeadLetterCeiling:
    """Sliding count, per source topic, of records read and dead-lettered. ``max_share`` 1.0 switches it off."""

    def __init__(self, max_share: float, window: int) -> None:
        self.max_share, self.window = max_share, window
        self._batches: dict[str, deque[list[int]]] = {}

    def read(self, topic: str, records: int) -> None:
        """A batch of ``records`` from ``topic`` is about to be processed."""
        batches = self._batches.setdefault(topic, deque())
        batches.append([records, 0])
        total = sum(b[0] for b in batches)
        while len(batches) > 1 and total - batches[0][0] >= self.window:
            total -= batches.popleft()[0]

    def admit(self, dead_per_topic: dict[str, int]) -> None:
        """Count dead letters about to be sent (keyed by their source topic), or raise if one would cross the
        ceiling. Checked before anything is sent, so a refused batch leaves nothing in the dead-letter topic."""
        if self.max_share >= 1.0:
            return
        for topic, dead in dead_per_topic.items():
            batches = self._batches.get(topic)
            already = sum(b[1] for b in batches) if batches else 0
            if already + dead > self.max_share * self.window:
                raise DeadLetterCeilingExceeded(topic, already + dead, self.window, self.max_share)
        for topic, dead in dead_per_topic.items():
            batches = self._batches.get(topic)
            if batches:
                batches[-1][1] += dead
