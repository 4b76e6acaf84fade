"""SLA clocks of one conversation as a pure state machine whose state is a plain JSON-serialisable dict.

Three metrics, each a clock of *business* time measured with the policy's calendar:

- ``first_response``: from opening to the first agent reply;
- ``next_response``: from a customer message (after the first agent reply) to the next agent reply;
- ``resolution``: from opening to resolution, resumed by a reopen.

A clock is ``running`` or ``paused`` (waiting on the customer) until it stops as ``hit`` or ``missed``. When its
due instant passes, :meth:`SlaClocks.breached` makes it ``missed_running``: it keeps counting (for reporting how
far over it went) until stopped, and then it is ``missed``. A stopped clock is judged by its consumed business
time: missed when it reached the target, so a reply exactly at the due instant is a miss, as is the timer.

Targets are copied into the state when a clock starts, so a policy edited later does not move running clocks;
the calendar is taken from the policy on every call. Events for a phase they do not apply to (a reply before
opening or after resolution, a reopen of an open conversation, a second opening) change nothing, which makes
redelivered events harmless. Naive datetimes raise ValueError.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal, get_args

from services.routing.domain.calendar import BusinessCalendar, require_aware

Metric = Literal["first_response", "next_response", "resolution"]
METRICS: tuple[Metric, ...] = get_args(Metric)
Outcome = tuple[str, Metric]
STATE_VERSION = 1
ACTIVE = ("running", "paused", "missed_running")
PHASES = ("new", "open", "resolved")


@dataclass(frozen=True)
class SlaPolicy:
    """Targets in business seconds (None: the metric is not measured) and warning offsets before each due
    instant, also in business seconds. ``warn_before_s`` is normalised to distinct values, largest first."""

    name: str
    first_response_s: int | None
    next_response_s: int | None
    resolution_s: int | None
    warn_before_s: tuple[int, ...] = ()
    calendar: BusinessCalendar = field(default_factory=BusinessCalendar.always_open)

    def __post_init__(self) -> None:
        for metric in METRICS:
            target = self.target(metric)
            if target is not None and not target > 0:
                raise ValueError(f"{metric}_s must be positive or None, got {target!r}")
        if any(not before > 0 for before in self.warn_before_s):
            raise ValueError(f"warn_before_s must be positive, got {self.warn_before_s!r}")
        object.__setattr__(self, "warn_before_s", tuple(sorted(set(self.warn_before_s), reverse=True)))

    def target(self, metric: Metric) -> int | None:
        return getattr(self, f"{metric}_s")


@dataclass
class _Clock:
    target_s: float
    consumed_s: float = 0.0
    running_since: datetime | None = None
    state: str = "running"

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    def elapsed(self, calendar: BusinessCalendar, at: datetime | None) -> float:
        if self.running_since is None or at is None:
            return self.consumed_s
        return self.consumed_s + calendar.between(self.running_since, at)

    def due(self, calendar: BusinessCalendar) -> datetime | None:
        if self.state != "running" or self.running_since is None:
            return None
        return calendar.add(self.running_since, max(0.0, self.target_s - self.consumed_s))

    def pause(self, calendar: BusinessCalendar, at: datetime) -> None:
        self.consumed_s = self.elapsed(calendar, at)
        self.running_since = None
        if self.state == "running":
            self.state = "paused"

    def resume(self, at: datetime) -> None:
        if self.state in ("paused", "hit"):
            self.state = "running"
        elif self.state == "missed":
            self.state = "missed_running"
        if self.running_since is None:
            self.running_since = at

    def stop(self, calendar: BusinessCalendar, at: datetime) -> str:
        self.pause(calendar, at)
        missed = self.state == "missed_running" or self.consumed_s >= self.target_s
        self.state = "missed" if missed else "hit"
        return self.state

    def to_state(self) -> dict[str, Any]:
        since = self.running_since.isoformat() if self.running_since else None
        return {"target_s": self.target_s, "consumed_s": self.consumed_s, "running_since": since,
                "state": self.state}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "_Clock":
        since = state.get("running_since")
        clock = cls(float(state["target_s"]), float(state["consumed_s"]),
                    _utc(datetime.fromisoformat(since)) if since else None, str(state["state"]))
        if clock.state not in ACTIVE + ("hit", "missed"):
            raise ValueError(f"unknown clock state {clock.state!r}")
        return clock


class SlaClocks:
    """Per-conversation clocks. Each metric clock: target seconds of *business* time, consumed business seconds
    so far, running_since (None when paused/stopped), state in {"running","paused","hit","missed_running","missed"}.
    Status of the whole: "active" (something not stopped, nothing missed), "hit" (all stopped, none missed),
    "missed" (all stopped, some missed), "active_with_misses".

    Event methods mutate the clocks and return the outcomes of the clocks they stopped, as ``("hit", metric)`` or
    ``("missed", metric)``; callers persist :meth:`to_state` afterwards and reschedule timers from :meth:`due`
    and :meth:`warnings`. A ``("missed", metric)`` outcome may come without an earlier :meth:`breached` when the
    stopping event arrived before the due timer fired.
    """

    def __init__(self, policy: SlaPolicy, state: dict | None = None) -> None:
        self.policy = policy
        self._phase, self._responded = "new", False
        self._clocks: dict[Metric, _Clock] = {}
        self._earlier_misses: dict[Metric, int] = {}
        if state is not None:
            self._load(state)

    @property
    def calendar(self) -> BusinessCalendar:
        return self.policy.calendar

    def to_state(self) -> dict:
        """A JSON-serialisable snapshot (datetimes as ISO strings) that ``SlaClocks(policy, state)`` restores."""
        return {"version": STATE_VERSION, "phase": self._phase, "responded": self._responded,
                "clocks": {metric: clock.to_state() for metric, clock in self._clocks.items()},
                "earlier_misses": dict(self._earlier_misses)}

    def opened(self, at: datetime) -> list[Outcome]:
        """Starts first_response and resolution (those with a target)."""
        at = _utc(at)
        if self._phase != "new":
            return []
        self._phase = "open"
        self._start("first_response", at)
        self._start("resolution", at)
        return []

    def agent_replied(self, at: datetime) -> list[Outcome]:
        """Stops first_response, or else a next_response that is not stopped."""
        at = _utc(at)
        if self._phase != "open":
            return []
        self._responded = True
        for metric in ("first_response", "next_response"):
            clock = self._clocks.get(metric)
            if clock is not None and clock.active:
                return [(clock.stop(self.calendar, at), metric)]
        return []

    def customer_replied(self, at: datetime) -> list[Outcome]:
        """Resumes paused clocks; after the first agent reply, starts next_response unless one is not stopped
        (it measures from the first unanswered customer message)."""
        at = _utc(at)
        if self._phase != "open":
            return []
        for clock in self._clocks.values():
            if clock.active:
                clock.resume(at)
        next_response = self._clocks.get("next_response")
        if self._responded and (next_response is None or not next_response.active):
            self._start("next_response", at)
        return []

    def waiting_on_customer(self, at: datetime) -> list[Outcome]:
        """Pauses every clock that is not stopped, adding the business time it ran."""
        at = _utc(at)
        if self._phase == "open":
            for clock in self._clocks.values():
                if clock.active:
                    clock.pause(self.calendar, at)
        return []

    def resolved(self, at: datetime) -> list[Outcome]:
        """Stops every clock; a resolution also answers the customer, so response clocks are judged too."""
        at = _utc(at)
        if self._phase != "open":
            return []
        self._phase, self._responded = "resolved", True
        return [(clock.stop(self.calendar, at), metric) for metric, clock in self._clocks.items() if clock.active]

    def reopened(self, at: datetime) -> list[Outcome]:
        """Resumes resolution with the business time it had consumed, and starts a fresh next_response."""
        at = _utc(at)
        if self._phase != "resolved":
            return []
        self._phase = "open"
        if "resolution" in self._clocks:
            self._clocks["resolution"].resume(at)
        self._start("next_response", at)
        return []

    def breached(self, metric: Metric, at: datetime) -> bool:
        """A due timer fired: marks the clock missed (it keeps counting) when it is not stopped, not yet missed
        and really due at ``at``. True when something changed; a second call, an early or stale timer, or a
        stopped clock gives False, so timers may fire more than once."""
        at = _utc(at)
        clock = self._clocks.get(_metric(metric))
        if clock is None or clock.state not in ("running", "paused"):
            return False
        due = clock.due(self.calendar)
        overdue = due <= at if due is not None else clock.consumed_s >= clock.target_s
        if overdue:
            clock.state = "missed_running"
        return overdue

    def due(self) -> dict[Metric, datetime]:
        """Due instants (UTC) of the running clocks not yet missed; paused clocks have none."""
        result = {metric: clock.due(self.calendar) for metric, clock in self._clocks.items()}
        return {metric: due for metric, due in result.items() if due is not None}

    def warnings(self) -> list[tuple[Metric, int, datetime]]:
        """``(metric, warn_before_s, at)`` for each warning still ahead of a running clock, ``at`` being
        ``warn_before_s`` business seconds before the due instant; sorted by ``at``. Warnings whose moment had
        already been reached when the clock last started are left out."""
        found = []
        for metric, clock in self._clocks.items():
            if clock.due(self.calendar) is None:
                continue
            remaining = clock.target_s - clock.consumed_s
            for before in self.policy.warn_before_s:
                if remaining > before:
                    found.append((metric, before, self.calendar.add(clock.running_since, remaining - before)))
        return sorted(found, key=lambda warning: (warning[2], warning[0]))

    def status(self) -> str:
        """One of ``active``, ``active_with_misses``, ``hit``, ``missed`` (see the class); ``hit`` when nothing is
        measured."""
        active = any(clock.active for clock in self._clocks.values())
        missed = any(self._earlier_misses.values()) or any(
            clock.state in ("missed", "missed_running") for clock in self._clocks.values())
        if active:
            return "active_with_misses" if missed else "active"
        return "missed" if missed else "hit"

    def detail(self, now: datetime | None = None) -> dict:
        """Per started metric: state, target_s, consumed_s (up to ``now`` when given), due_at and running_since
        as ISO strings or None, and earlier_misses (missed next_response cycles before the current one)."""
        now = _utc(now) if now is not None else None
        result = {}
        for metric, clock in self._clocks.items():
            due = clock.due(self.calendar)
            result[metric] = {**clock.to_state(), "consumed_s": clock.elapsed(self.calendar, now),
                              "due_at": due.isoformat() if due else None,
                              "earlier_misses": self._earlier_misses.get(metric, 0)}
        return result

    def _start(self, metric: Metric, at: datetime) -> None:
        target = self.policy.target(metric)
        if target is None:
            return
        previous = self._clocks.get(metric)
        if previous is not None and previous.state == "missed":
            self._earlier_misses[metric] = self._earlier_misses.get(metric, 0) + 1
        self._clocks[metric] = _Clock(float(target), 0.0, at, "running")

    def _load(self, state: dict) -> None:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported SLA state version {state.get('version')!r}")
        try:
            self._phase, self._responded = str(state["phase"]), bool(state["responded"])
            if self._phase not in PHASES:
                raise ValueError(f"unknown SLA phase {self._phase!r}")
            self._clocks = {_metric(m): _Clock.from_state(c) for m, c in state["clocks"].items()}
            self._earlier_misses = {_metric(m): int(n) for m, n in state.get("earlier_misses", {}).items()}
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"malformed SLA state: {exc!r}") from exc


def _metric(value: str) -> Metric:
    if value not in METRICS:
        raise ValueError(f"unknown SLA metric {value!r}: expected one of {', '.join(METRICS)}")
    return value  # type: ignore[return-value]


def _utc(at: datetime) -> datetime:
    return require_aware(at, "at").astimezone(timezone.utc)
