"""Identity rules: what may link an event to a customer, per tenant, from a versioned, reloadable YAML file
(``TOUCHPOINT_IDENTITY_CONFIG``; without one the built-in rules below apply).

    tenants:
      default:                      # any tenant without an entry of its own
        version: 3
        limits:                     # per identifier type: at most ``max`` values per customer, counting the
          user_id: {max: 1}         #   values seen within ``window`` of the event (no window: ever)
          email: {max: 5, window: 365d}
          phone: {max: 5, window: 365d}
          device_id: {max: 5, window: 30d}
          cookie_id: {max: 5, window: 7d}
        priority: [user_id, account_id, contract_id, email, phone]   # highest first; unlisted types rank lower
        blocked:
          exact: ["-1", "null", "none", "anonymous", "unknown", "n/a", "test"]
          patterns: ["^[0-]*$", "^(no-?reply|noemail|none|test|unknown|x+)@"]
        caps: {merges: 100, identifiers: 1000}
        review:                     # a merge linked only by identifiers of these types waits for a person
          types: [device_id, cookie_id]
        fuzzy:                      # profiles (name, birth date, address) matched without shared identifiers
          enabled: true
          merge_above: 0.95         #   match probability at or above which the customers are merged
          review_above: 0.5         #   at or above this (and below merge_above) the merge waits for review

Semantics (Segment Unify's, see docs/services/identity.md): blocked values never link and are recorded as
refused. When linking an event would break a limit or a cap, the lowest-priority identifier of the event is
dropped and the event is matched again, until nothing is broken; a dropped identifier is not linked and is
recorded as refused with the rule. Windows count from the event's own time, so a replay decides the same.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Mapping

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from shared.config_file import ConfigError, ModelFile  # noqa: F401 - ConfigError is part of this module's API

DEFAULT_TENANT = "default"
WINDOW = re.compile(r"^(\d+)([smhdw])$")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
DEFAULT_BLOCKED_EXACT = ("", "-1", "0", "null", "none", "nil", "undefined", "anonymous", "unknown", "n/a", "na",
                         "test", "guest")
DEFAULT_BLOCKED_PATTERNS = (r"^[0-]*$", r"^(no-?reply|noemail|no-email|none|null|test|unknown|anonymous|x+)@")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LimitConfig(_Model):
    max: int = Field(ge=1, le=100_000)
    window: str | None = Field(default=None, description="e.g. 7d, 30d, 365d, 12h; none: ever")

    @field_validator("window")
    @classmethod
    def _window(cls, value: str | None) -> str | None:
        if value is not None and not WINDOW.match(value):
            raise ValueError("a window is a number and a unit: s, m, h, d or w (e.g. 30d)")
        return value

    def seconds(self) -> float | None:
        if self.window is None:
            return None
        n, unit = WINDOW.match(self.window).groups()
        return float(int(n) * UNITS[unit])


class BlockedConfig(_Model):
    exact: list[str] = Field(default_factory=lambda: list(DEFAULT_BLOCKED_EXACT))
    patterns: list[str] = Field(default_factory=lambda: list(DEFAULT_BLOCKED_PATTERNS))

    @field_validator("patterns")
    @classmethod
    def _compiles(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{pattern!r} is not a regular expression: {exc}") from None
        return value


class CapsConfig(_Model):
    merges: int = Field(default=100, ge=0)
    identifiers: int = Field(default=1000, ge=1)


class ReviewConfig(_Model):
    types: list[str] = Field(default_factory=lambda: ["device_id", "cookie_id"])


class FuzzyConfig(_Model):
    enabled: bool = True
    merge_above: float = Field(default=0.95, gt=0, le=1)
    review_above: float = Field(default=0.5, gt=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> "FuzzyConfig":
        if self.review_above > self.merge_above:
            raise ValueError("fuzzy.review_above must not exceed fuzzy.merge_above")
        return self


def _default_limits() -> dict[str, LimitConfig]:
    return {"user_id": LimitConfig(max=1), "email": LimitConfig(max=5, window="365d"),
            "phone": LimitConfig(max=5, window="365d"), "device_id": LimitConfig(max=5, window="30d"),
            "cookie_id": LimitConfig(max=5, window="7d")}


class TenantRulesConfig(_Model):
    version: int = Field(default=0, ge=0)
    limits: dict[str, LimitConfig] = Field(default_factory=_default_limits)
    priority: list[str] = Field(default_factory=lambda: ["user_id", "account_id", "contract_id", "email", "phone"])
    blocked: BlockedConfig = Field(default_factory=BlockedConfig)
    caps: CapsConfig = Field(default_factory=CapsConfig)
    review: ReviewConfig = Field(default_factory=ReviewConfig)
    fuzzy: FuzzyConfig = Field(default_factory=FuzzyConfig)


class RulesConfig(_Model):
    tenants: dict[str, TenantRulesConfig] = Field(default_factory=dict)
    _rules: dict[str, "Rules"] = PrivateAttr(default_factory=dict)

    def tenant(self, tenant_id: str) -> "Rules":
        """The tenant's rules (its entry, else ``default``, else the built-in ones), compiled once per file."""
        rules = self._rules.get(tenant_id)
        if rules is None:
            config = self.tenants.get(tenant_id) or self.tenants.get(DEFAULT_TENANT) or TenantRulesConfig()
            rules = self._rules[tenant_id] = Rules.of(config)
        return rules


@dataclass(frozen=True)
class Rules:
    """One tenant's rules in the form the resolver uses."""

    version: int = 0
    limits: Mapping[str, tuple[int, timedelta | None]] = field(default_factory=dict)
    priority: tuple[str, ...] = ()
    blocked_exact: frozenset[str] = frozenset()
    blocked_patterns: tuple[re.Pattern, ...] = ()
    max_merges: int = 100
    max_identifiers: int = 1000
    review_types: frozenset[str] = frozenset()
    # Match probabilities of profiles: merge at or above the first, review at or above the second (None: off).
    fuzzy_merge_above: float | None = 0.95
    fuzzy_review_above: float | None = 0.5

    @classmethod
    def of(cls, c: TenantRulesConfig) -> "Rules":
        limits = {t: (lim.max, timedelta(seconds=lim.seconds()) if lim.window else None) for t, lim in c.limits.items()}
        return cls(c.version, limits, tuple(c.priority), frozenset(v.lower() for v in c.blocked.exact),
                   tuple(re.compile(p, re.IGNORECASE) for p in c.blocked.patterns), c.caps.merges,
                   c.caps.identifiers, frozenset(c.review.types),
                   c.fuzzy.merge_above if c.fuzzy.enabled else None, c.fuzzy.review_above if c.fuzzy.enabled else None)

    def blocked(self, value: str) -> bool:
        v = value.strip().lower()
        return v in self.blocked_exact or any(p.search(v) for p in self.blocked_patterns)

    def rank(self, id_type: str) -> int:
        """Lower is more important; unlisted types rank after every listed one (ties: by type name)."""
        return self.priority.index(id_type) if id_type in self.priority else len(self.priority)


DEFAULT_RULES = Rules.of(TenantRulesConfig())


class RulesSource(ModelFile[RulesConfig]):
    """The rules in force, re-read when the file changes; a bad new file keeps the previous rules in force."""

    model = RulesConfig
    what = "identity rules"


load_rules = RulesSource.load
parse_rules = RulesSource.parse
