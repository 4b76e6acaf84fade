"""Workflows: which queue a conversation waits in, which agents may take it, and how that relaxes over time.

A workflow is an ordered list of filters and a list of default targets. The first filter whose ``match``
expression holds for the task supplies the targets; when none matches, the default targets apply. Targets are
tried in order and each may carry a ``timeout_s``: target *i* is in force from the sum of the timeouts before it
until that sum plus its own timeout, so requirements relax the longer a conversation waits. A target without a
timeout stays in force for good; once every timeout has passed, the last target stays in force.

While a target is in force, later targets are only tried when it carries ``skip_if: no_available_agents`` and
nobody is eligible for it; otherwise the conversation waits for that target (its agents may free up) until the
timeout moves it on. :func:`choose_agent` implements that rule over the list :meth:`Workflow.current` returns.

Pure values; task and agent attributes are plain mappings (see :mod:`services.routing.domain.expressions`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Mapping, Sequence

from services.routing.domain.expressions import TRUE, Expression

ROUTING_MODELS = ("most_available", "least_active", "round_robin")
SKIP_NO_AVAILABLE_AGENTS = "no_available_agents"
ONLINE = "online"


@dataclass(frozen=True)
class Target:
    """Where a conversation waits (``queue``, at ``priority``) and which agents may take it (``expression``
    over the agent's attributes, with ``task.*`` names resolving in the task)."""

    queue: str
    expression: Expression = TRUE
    priority: int = 0
    timeout_s: float | None = None
    skip_if: str | None = None


@dataclass(frozen=True)
class Filter:
    """Targets for the tasks ``match`` holds for (names resolve in the task, no ``task.`` prefix needed)."""

    name: str
    match: Expression
    targets: tuple[Target, ...]


@dataclass
class AgentView:
    """What routing needs to know about one agent at one instant. ``attributes`` holds ``skills``
    ({name: level}), ``languages``, ``teams`` and any other profile attributes; ``last_assigned_at`` is
    timezone-aware (ValueError otherwise) or None when the agent was never assigned anything."""

    agent_id: str
    presence: str
    attributes: dict = field(default_factory=dict)
    capacity_total: int = 100
    used: int = 0
    last_assigned_at: datetime | None = None

    def __post_init__(self) -> None:
        if self.last_assigned_at is not None and self.last_assigned_at.tzinfo is None:
            raise ValueError(f"agent {self.agent_id}: last_assigned_at must be timezone-aware")

    @property
    def free(self) -> int:
        return self.capacity_total - self.used


@dataclass(frozen=True)
class Workflow:
    filters: tuple[Filter, ...] = ()
    default_targets: tuple[Target, ...] = (Target(queue="general"),)

    def stages(self, task: Mapping) -> list[Target]:
        """The targets of the first filter that matches ``task``, else the default targets."""
        for candidate in self.filters:
            if candidate.match.evaluate(task, task):
                return list(candidate.targets)
        return list(self.default_targets)

    def current(self, task: Mapping, waited_s: float) -> list[Target]:
        """The target in force after ``waited_s`` seconds in the queue, followed by the later ones."""
        stages = self.stages(task)
        return stages[_in_force(stages, waited_s):]

    def next_change_s(self, task: Mapping, waited_s: float) -> float | None:
        """Seconds from ``waited_s`` until the next target comes into force; None when none ever will."""
        stages = self.stages(task)
        index = _in_force(stages, waited_s)
        if index >= len(stages) - 1 or stages[index].timeout_s is None:
            return None
        ends = sum(t.timeout_s or 0.0 for t in stages[: index + 1])
        return max(0.0, ends - max(0.0, waited_s))


def _in_force(stages: Sequence[Target], waited_s: float) -> int:
    """Index of the target in force after ``waited_s`` seconds (0 for an empty list)."""
    elapsed = 0.0
    for index, target in enumerate(stages[:-1]):
        elapsed += target.timeout_s if target.timeout_s is not None else math.inf
        if max(0.0, waited_s) < elapsed:
            return index
    return max(0, len(stages) - 1)


def choose_agent(targets: Sequence[Target], task: Mapping, agents: Sequence[AgentView], cost: int,
                 model: str, exclude: set[str], rr_cursor: int = 0) -> tuple[AgentView, Target] | None:
    """The agent to offer a conversation costing ``cost`` capacity units, and the target that selected them.

    An agent is eligible for a target when online, with ``free >= cost``, not in ``exclude`` and the target's
    expression holds. Targets are tried in order; the walk stops at the first target nobody is eligible for
    unless it carries ``skip_if: no_available_agents`` (then the next target is tried). None means: wait.

    Among eligible agents, ``most_available`` takes the most free capacity, then the longest since the last
    assignment (never assigned first), then the smallest agent id; ``least_active`` the least used capacity
    with the same tie-breaks. ``round_robin`` ignores the expressions (only presence, capacity and ``exclude``
    count), orders agents by id and takes position ``rr_cursor`` modulo their number, returning the first
    target; the caller advances the cursor after each offer.
    Raises ValueError for an unknown ``model``.
    """
    if model not in ROUTING_MODELS:
        raise ValueError(f"unknown routing model {model!r}; expected one of {', '.join(ROUTING_MODELS)}")
    available = [a for a in agents if a.presence == ONLINE and a.free >= cost and a.agent_id not in exclude]
    if model == "round_robin":
        return _round_robin(targets, available, rr_cursor)
    for target in targets:
        eligible = [a for a in available if target.expression.evaluate(a.attributes, task)]
        if eligible:
            return min(eligible, key=_most_available if model == "most_available" else _least_active), target
        if target.skip_if != SKIP_NO_AVAILABLE_AGENTS:
            return None
    return None


def _round_robin(targets: Sequence[Target], available: list[AgentView],
                 rr_cursor: int) -> tuple[AgentView, Target] | None:
    if not targets or not available:
        return None
    ordered = sorted(available, key=lambda a: a.agent_id)
    return ordered[rr_cursor % len(ordered)], targets[0]


def _since(agent: AgentView) -> float:
    return agent.last_assigned_at.timestamp() if agent.last_assigned_at is not None else -math.inf


def _most_available(agent: AgentView) -> tuple:
    return (-agent.free, _since(agent), agent.agent_id)


def _least_active(agent: AgentView) -> tuple:
    return (agent.used, _since(agent), agent.agent_id)
