"""Erlang C staffing figures for an M/M/N queue (Poisson arrivals, exponential handling, N agents, no
abandonment).

Units: ``arrival_rate`` in conversations per second, times in seconds; the offered load is
``A = arrival_rate * mean_handle_s`` Erlangs. The blocking probability is computed with the Erlang B recursion
``B(k) = A·B(k-1) / (k + A·B(k-1))``, which stays within [0, 1] and needs no factorials or powers, so it is
stable for thousands of agents. When ``A >= agents`` the queue grows without bound: every arrival waits,
nobody is served within any target, and the average wait is infinite. Invalid inputs raise ValueError.
"""

from __future__ import annotations

import math


def erlang_b(agents: int, load: float) -> float:
    """Probability that an arrival finds all ``agents`` busy in a loss system offered ``load`` Erlangs."""
    if agents < 0 or load < 0:
        raise ValueError("agents and load must not be negative")
    blocking = 1.0
    for k in range(1, agents + 1):
        blocking = load * blocking / (k + load * blocking)
    return blocking


def erlang_c(agents: int, arrival_rate: float, mean_handle_s: float) -> float:
    """P(wait > 0): the probability that an arrival has to queue; 1.0 when the load is at least ``agents``."""
    load = _load(agents, arrival_rate, mean_handle_s)
    if load >= agents:
        return 1.0
    blocking = erlang_b(agents, load)
    return agents * blocking / (agents - load * (1 - blocking))


def service_level(agents: int, arrival_rate: float, mean_handle_s: float, target_s: float) -> float:
    """P(wait <= target_s) = 1 - C·exp(-(N - A)·target_s / mean_handle_s); 0.0 when the load is at least
    ``agents``."""
    if target_s < 0:
        raise ValueError("target_s must not be negative")
    load = _load(agents, arrival_rate, mean_handle_s)
    if load >= agents:
        return 0.0
    waiting = erlang_c(agents, arrival_rate, mean_handle_s)
    return 1.0 - waiting * math.exp(-(agents - load) * target_s / mean_handle_s)


def average_wait(agents: int, arrival_rate: float, mean_handle_s: float) -> float:
    """Average speed of answer in seconds over all arrivals, C·h / (N - A); ``math.inf`` when the load is at
    least ``agents``."""
    load = _load(agents, arrival_rate, mean_handle_s)
    if load >= agents:
        return math.inf
    return erlang_c(agents, arrival_rate, mean_handle_s) * mean_handle_s / (agents - load)


def _load(agents: int, arrival_rate: float, mean_handle_s: float) -> float:
    if not isinstance(agents, int) or agents < 0:
        raise ValueError(f"agents must be a whole number >= 0, got {agents!r}")
    if not (math.isfinite(arrival_rate) and arrival_rate >= 0):
        raise ValueError(f"arrival_rate must be finite and >= 0, got {arrival_rate!r}")
    if not (math.isfinite(mean_handle_s) and mean_handle_s > 0):
        raise ValueError(f"mean_handle_s must be finite and > 0, got {mean_handle_s!r}")
    return arrival_rate * mean_handle_s
