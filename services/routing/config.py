"""Routing configuration: per-tenant workflows, capacity, calendars, SLA policies and escalation.

The file (YAML, or JSON when its name ends in ``.json``) has one top-level key, ``tenants``; see
``deploy/routing/routing.yaml`` for an annotated example with every setting. Each tenant carries a ``version``
so that what routing did can be traced back to the configuration in force.

Validation happens once, at load: every expression is compiled and every calendar parsed, and unknown keys are
rejected, so a typo fails loudly instead of silently routing differently. Errors:
- :class:`ConfigError` (a ``ValueError``) from :func:`load_config` and :func:`parse_config`: one line per
  problem, each naming the path in the file (``tenants.acme.workflow.filters[0].match``) and, for expressions,
  the character position.
- ``pydantic.ValidationError`` (also a ``ValueError``) from ``RoutingConfig.model_validate`` on raw data.

:class:`ConfigSource` re-reads the file when it changes and keeps serving the previous configuration when the
new file is invalid, so a bad edit never takes routing down.
"""

from __future__ import annotations

import json
import logging
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping

import yaml
from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, PlainValidator, PrivateAttr, ValidationError
from pydantic import field_validator, model_validator

from services.routing.domain.calendar import BusinessCalendar
from services.routing.domain.expressions import TRUE, Expression, compile_expression
from services.routing.domain.sla import SlaPolicy
from services.routing.domain.workflow import Filter, Target, Workflow
from shared.config_file import ReloadingFile

log = logging.getLogger(__name__)

DEFAULT_TENANT = "default"
DEFAULT_COSTS = {"phone": 100, "chat": 20, "whatsapp": 20, "sms": 20, "email": 10, "default": 20}
FALLBACK_COST = 20


class ConfigError(ValueError):
    """A configuration file that cannot be read or is invalid; the message lists every problem found."""


class _PathError(ValueError):
    """A validation error about a location below the model that detects it (cross-field checks)."""

    def __init__(self, path: tuple[str | int, ...], message: str) -> None:
        super().__init__(f"{_dotted(path)}: {message}")
        self.path, self.message = path, message


def _expression(value: Any) -> Expression:
    if isinstance(value, Expression):
        return value
    if isinstance(value, bool):  # YAML reads an unquoted `true` as a boolean
        return compile_expression("true" if value else "false")
    return compile_expression(value)


ExpressionText = Annotated[Expression, PlainValidator(_expression),
                           PlainSerializer(lambda e: e.source, return_type=str)]
Seconds = Annotated[float, Field(gt=0)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ContinuitySettings(_Model):
    """Prefer the agent who last served the customer within ``window_s`` (0 disables), waiting up to
    ``wait_s`` for them while they are online or away before routing to anyone."""

    window_s: float = Field(2_592_000, ge=0)
    wait_s: float = Field(15, ge=0)


class CapacitySettings(_Model):
    """``total``: capacity units of an agent whose profile states none; ``cost``: units a conversation holds
    per channel, ``default`` for channels not listed."""

    total: int = Field(100, ge=1)
    cost: dict[str, Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: dict(DEFAULT_COSTS))


class EscalationSettings(_Model):
    """On an SLA breach a queued conversation moves to ``queue`` (None: it stays) and gains ``priority_bump``."""

    queue: str | None = None
    priority_bump: int = 10


class CalendarSpec(_Model):
    tz: str
    hours: dict[str, list[str]]
    holidays: list[date] = Field(default_factory=list)
    _calendar: BusinessCalendar = PrivateAttr()

    @model_validator(mode="after")
    def _build(self) -> "CalendarSpec":
        calendar = BusinessCalendar.parse(self.tz, self.hours, [d.isoformat() for d in self.holidays])
        if not any(calendar.hours.values()):
            raise ValueError("the calendar has no business hours")
        self._calendar = calendar
        return self

    @property
    def calendar(self) -> BusinessCalendar:
        return self._calendar


class SlaRule(_Model):
    """An SLA policy for the tasks ``match`` holds for; ``calendar`` names one of the tenant's calendars
    (None: around the clock). Targets are business seconds; ``warn_before_s`` lists warning lead times."""

    name: str | None = None
    match: ExpressionText = TRUE
    calendar: str | None = None
    first_response_s: int | None = Field(None, gt=0)
    next_response_s: int | None = Field(None, gt=0)
    resolution_s: int | None = Field(None, gt=0)
    warn_before_s: list[Annotated[int, Field(gt=0)]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _has_a_target(self) -> "SlaRule":
        if self.first_response_s is None and self.next_response_s is None and self.resolution_s is None:
            raise ValueError("needs at least one of first_response_s, next_response_s, resolution_s")
        return self


class TargetSpec(_Model):
    queue: str = Field(min_length=1)
    expression: ExpressionText = TRUE
    priority: int = 0
    timeout_s: Seconds | None = None
    skip_if: Literal["no_available_agents"] | None = None

    def target(self) -> Target:
        return Target(queue=self.queue, expression=self.expression, priority=self.priority,
                      timeout_s=self.timeout_s, skip_if=self.skip_if)


class FilterSpec(_Model):
    name: str = Field(min_length=1)
    match: ExpressionText
    targets: list[TargetSpec] = Field(min_length=1)


class WorkflowSpec(_Model):
    filters: list[FilterSpec] = Field(default_factory=list)
    default_targets: list[TargetSpec] = Field(default_factory=lambda: [TargetSpec(queue="general")], min_length=1)

    @field_validator("filters")
    @classmethod
    def _unique_names(cls, filters: list[FilterSpec]) -> list[FilterSpec]:
        seen: set[str] = set()
        for index, spec in enumerate(filters):
            if spec.name in seen:
                raise _PathError((index, "name"), f"duplicate filter name {spec.name!r}")
            seen.add(spec.name)
        return filters

    def build(self) -> Workflow:
        filters = tuple(Filter(f.name, f.match, tuple(t.target() for t in f.targets)) for f in self.filters)
        return Workflow(filters=filters, default_targets=tuple(t.target() for t in self.default_targets))


class TenantConfig(_Model):
    """Everything routing needs for one tenant. ``reassign_after_s`` of None or 0 never takes a conversation
    back from an agent who does not reply; ``ageing_s`` of 0 disables ageing."""

    version: int = 0
    offer_timeout_s: Seconds = 120
    reassign_after_s: float | None = Field(900, ge=0)
    auto_accept: bool = False
    routing_model: Literal["most_available", "least_active", "round_robin"] = "most_available"
    ageing_s: float = Field(60, ge=0)
    continuity: ContinuitySettings = Field(default_factory=ContinuitySettings)
    capacity: CapacitySettings = Field(default_factory=CapacitySettings)
    calendars: dict[str, CalendarSpec] = Field(default_factory=dict)
    sla: list[SlaRule] = Field(default_factory=list)
    escalation: EscalationSettings = Field(default_factory=EscalationSettings)
    workflow_spec: WorkflowSpec = Field(default_factory=WorkflowSpec, alias="workflow")
    _workflow: Workflow = PrivateAttr()
    _policies: tuple[SlaPolicy, ...] = PrivateAttr()

    @model_validator(mode="after")
    def _build(self) -> "TenantConfig":
        self._policies = tuple(self._policy(index, rule) for index, rule in enumerate(self.sla))
        self._workflow = self.workflow_spec.build()
        return self

    def _policy(self, index: int, rule: SlaRule) -> SlaPolicy:
        if rule.calendar is not None and rule.calendar not in self.calendars:
            known = ", ".join(sorted(self.calendars)) or "none"
            raise _PathError(("sla", index, "calendar"), f"unknown calendar {rule.calendar!r} (known: {known})")
        return SlaPolicy(name=rule.name or f"sla-{index + 1}", first_response_s=rule.first_response_s,
                         next_response_s=rule.next_response_s, resolution_s=rule.resolution_s,
                         warn_before_s=tuple(sorted(set(rule.warn_before_s), reverse=True)),
                         calendar=self.calendar(rule.calendar))

    def workflow(self) -> Workflow:
        return self._workflow

    def sla_policy(self, task: Mapping) -> SlaPolicy | None:
        """The policy of the first SLA rule whose ``match`` holds for ``task``; None when none does."""
        for rule, policy in zip(self.sla, self._policies):
            if rule.match.evaluate(task, task):
                return policy
        return None

    def cost(self, channel: str) -> int:
        """Capacity units a conversation on ``channel`` holds of its agent."""
        costs = self.capacity.cost
        return costs.get(channel, costs.get("default", FALLBACK_COST))

    def calendar(self, name: str | None) -> BusinessCalendar:
        """The named calendar (KeyError when unknown); None means around the clock."""
        return BusinessCalendar.always_open() if name is None else self.calendars[name].calendar


BUILT_IN = TenantConfig()


class RoutingConfig(_Model):
    tenants: dict[str, TenantConfig] = Field(default_factory=dict)

    def tenant(self, tenant: str) -> TenantConfig:
        """The tenant's configuration, else the ``default`` entry, else the built-in defaults."""
        return self.tenants.get(tenant) or self.tenants.get(DEFAULT_TENANT) or BUILT_IN


def load_config(path: str | Path | None) -> RoutingConfig:
    """The configuration in the file at ``path``; None gives the built-in defaults for every tenant.
    Raises :class:`ConfigError` when the file cannot be read or is invalid."""
    if path is None:
        return RoutingConfig()
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"routing config {path}: cannot read: {exc}") from exc
    return parse_config(text, source=str(path), json_format=path.suffix.lower() == ".json")


def parse_config(text: str, source: str = "<routing config>", json_format: bool = False) -> RoutingConfig:
    """The configuration in ``text`` (YAML, or JSON with ``json_format``); ConfigError when invalid."""
    data = _read_json(text, source) if json_format else _read_yaml(text, source)
    if not isinstance(data, dict):
        found = "an empty file" if data is None else f"a {type(data).__name__}"
        raise ConfigError(f"routing config {source}: expected a mapping with a 'tenants' key, found {found}")
    try:
        return RoutingConfig.model_validate(data)
    except ValidationError as exc:
        lines = [_describe(error) for error in exc.errors()]
        raise ConfigError(f"routing config {source} is invalid:\n" + "\n".join(lines)) from exc


def _read_yaml(text: str, source: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        reason = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"routing config {source}: not valid YAML{where}: {reason}") from exc


def _read_json(text: str, source: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"routing config {source}: not valid JSON at line {exc.lineno}, "
                          f"column {exc.colno}: {exc.msg}") from exc


def _describe(error: Mapping[str, Any]) -> str:
    path, message = tuple(error["loc"]), error["msg"]
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, _PathError):
        path, message = path + cause.path, cause.message
    elif isinstance(cause, ValueError):
        message = str(cause)
    return f"  {_dotted(path)}: {message}"


def _dotted(path: tuple[str | int, ...]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


class ConfigSource(ReloadingFile[RoutingConfig]):
    """The configuration in force, re-read whenever the file's modification time or size changes.

    The first load raises :class:`ConfigError` (a service must not start on a bad file). Later, a file that
    fails to load leaves the previous configuration in force and its message in :attr:`last_error` (cleared by
    the next good load); the same bad file is not re-read until it changes again. Not thread-safe: one
    event loop calls :meth:`current`.
    """

    def __init__(self, path: str | Path | None) -> None:
        super().__init__(path, load_config, ConfigError, "routing config")
