"""Notification configuration: per-tenant triggers, templates, frequency caps, quiet hours and channels.

The file (YAML, or JSON when its name ends in ``.json``) has one top-level key, ``tenants``; see
``deploy/notification/notification.yaml`` for an annotated example with every setting. A tenant without its
own entry uses ``default``; entries do not inherit from each other. Each tenant carries a ``version`` so that
what was sent can be traced back to the configuration in force.

Validation happens once, at load, so a typo fails loudly instead of silently sending something else: unknown
keys, channel names, time zones, ``HH:MM`` times, cap windows (at most 30 days: the decision pipeline sees
the sends of the last 31 days), a template for every trigger in every language, and every ``$placeholder``
(only the names in :data:`services.notification.templates.KNOWN_PLACEHOLDERS`). Errors:
- :class:`ConfigError` (a ``ValueError``) from :func:`load_config` and :func:`parse_config`: one line per
  problem, each naming the path in the file (``tenants.acme.templates.case_follow_up.de.body``).
- ``pydantic.ValidationError`` (also a ``ValueError``) from ``NotificationConfig.model_validate`` on raw data.

YAML is read with only ``true``/``false`` as booleans: YAML 1.1 would read the trigger key ``on`` (and
``yes``/``no``) as booleans.

:class:`ConfigSource` re-reads the file when it changes and keeps serving the previous configuration when the
new file is invalid, so a bad edit never stops notifications.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from datetime import time
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, PlainValidator
from pydantic import model_validator

from services.notification.domain.model import CHANNELS, MAX_WINDOW_DAYS, Candidate, CapRule, QuietHours
from services.notification.templates import (KNOWN_PLACEHOLDERS, LINK_PLACEHOLDERS, choose_language, names_in,
                                              syntax_errors)
from shared.config_file import ConfigError, Path_, ModelFile, dotted, raise_any  # noqa: F401 - ConfigError is part of this module's API

log = logging.getLogger(__name__)

DEFAULT_TENANT = "default"
EVENT_CHANNEL = "event"          # trigger channel: the channel the triggering case came in on
CASE_STALE = "case_stale"        # trigger `on`: the internal timer for cases without updates



def _clock(value: Any) -> time:
    if isinstance(value, time):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError('expected a time "HH:MM" in quotes (YAML reads an unquoted 21:00 as the number 1260)')
    if not isinstance(value, str) or not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value):
        raise ValueError(f'expected a time "HH:MM" between 00:00 and 23:59, got {value!r}')
    return time(int(value[:2]), int(value[3:]))


def _time_zone(value: Any) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError(f"unknown time zone {value!r} (expected an IANA name such as Europe/Berlin)") from None
    return value


Clock = Annotated[time, PlainValidator(_clock), PlainSerializer(lambda t: t.strftime("%H:%M"), return_type=str)]
TimeZone = Annotated[str, PlainValidator(_time_zone)]
Channel = Literal["email", "sms", "whatsapp", "webhook"]
Language = Annotated[str, Field(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")]
Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ThrottleConfig(_Model):
    """At most ``max`` messages of one trigger per customer within ``window_s`` seconds."""

    max: int = Field(ge=1)
    window_s: float = Field(gt=0)


class QuietHoursConfig(_Model):
    """Local wall-clock window without messages; it may cross midnight, and start == end means none."""

    start: Clock
    end: Clock

    def quiet_hours(self) -> QuietHours:
        return QuietHours(start=self.start, end=self.end)


class CapConfig(_Model):
    """At most ``max`` non-transactional messages per customer in the window: ``calendar_day`` (``days``
    local calendar days), ``calendar_week`` (the local ISO week) or ``rolling`` (the last ``days`` days)."""

    name: Name
    max: int = Field(ge=0)
    window: Literal["calendar_day", "calendar_week", "rolling"]
    days: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _window_fits(self) -> CapConfig:
        if self.window == "calendar_week" and "days" in self.model_fields_set and self.days != 1:
            raise_any([(("days",), "does not apply to calendar_week (always one ISO week); leave it out")])
        if self.days > MAX_WINDOW_DAYS:
            raise_any([(("days",), (f"at most {MAX_WINDOW_DAYS} days: only the sends of the last 31 days "
                                          f"are looked at, got {self.days}"))])
        return self

    def rule(self) -> CapRule:
        return CapRule(name=self.name, max=self.max, window=self.window, days=self.days)


class TemplateConfig(_Model):
    """One trigger's message in one language: ``subject`` (e-mail and webhook) and ``body`` (every channel)."""

    subject: str | None = Field(None, min_length=1)
    body: str = Field(min_length=1)

    @model_validator(mode="after")
    def _known_placeholders(self) -> TemplateConfig:
        problems: list[tuple[Path_, str]] = []
        for field in ("subject", "body"):
            text = getattr(self, field)
            if text is None:
                continue
            problems += [((field,), message) for message in syntax_errors(text)]
            for unknown in sorted(names_in(text) - KNOWN_PLACEHOLDERS):
                known = ", ".join(sorted(KNOWN_PLACEHOLDERS))
                problems.append(((field,), f"unknown placeholder ${unknown} (known: {known})"))
        raise_any(problems)
        return self


class TriggerConfig(_Model):
    """What makes a message and how it is sent; see deploy/notification/notification.yaml for each key."""

    on: str = Field(pattern=r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")
    purpose: Literal["service", "marketing", "surveys"]
    topic: Name
    delay_s: float = Field(0, ge=0)
    weekend_to: Clock | None = None
    channel: Literal["event", "email", "sms", "whatsapp", "webhook"] = EVENT_CHANNEL
    answer: Literal["solved"] | None = None
    transactional: bool = False
    critical: bool = False
    marketing: bool = False
    whatsapp_template: str | None = Field(None, pattern=r"^[a-z0-9_]+$")
    ignore_quiet_hours: bool = False
    digest_s: float | None = Field(None, gt=0)
    throttle: ThrottleConfig | None = None
    stale_after_days: float | None = Field(None, gt=0)
    enabled: bool = True

    @model_validator(mode="before")
    @classmethod
    def _on_read_as_true(cls, data: Any) -> Any:
        """Data read by a YAML 1.1 loader elsewhere has the key ``on`` as the boolean True."""
        if isinstance(data, dict) and True in data and "on" not in data:
            return {("on" if key is True else key): value for key, value in data.items()}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> TriggerConfig:
        problems: list[tuple[Path_, str]] = []
        if self.on == CASE_STALE and self.stale_after_days is None:
            problems.append((("stale_after_days",), "required for on: case_stale"))
        if self.on != CASE_STALE and self.stale_after_days is not None:
            problems.append((("stale_after_days",), "only for on: case_stale"))
        if self.is_marketing and self.transactional:
            problems.append((("transactional",), "a marketing message cannot be exempt from frequency caps"))
        if self.is_marketing and self.critical:
            problems.append((("critical",), "a marketing message can always be turned off"))
        raise_any(problems)
        return self

    @property
    def is_marketing(self) -> bool:
        """Marketing content (suppressed while a complaint is open or an SLA breached)."""
        return self.marketing or self.purpose == "marketing"

    def channels(self, first_channel: str | None, tenant_channels: Sequence[str]) -> tuple[str, ...]:
        """Channels in preference order: the trigger's own channel (for ``event``, the channel the case came
        in on, when it is one notifications can use: a phone case has none), then the tenant's channels."""
        own = first_channel if self.channel == EVENT_CHANNEL else self.channel
        ordered = ([own] if own in CHANNELS else []) + list(tenant_channels)
        return tuple(dict.fromkeys(ordered))

    def candidate(self, name: str, first_channel: str | None, tenant_channels: Sequence[str]) -> Candidate:
        """The message this trigger wants to send, for the decision pipeline."""
        return Candidate(trigger=name, purpose=self.purpose, topic=self.topic,
                         channels=self.channels(first_channel, tenant_channels), critical=self.critical,
                         transactional=self.transactional, marketing=self.is_marketing,
                         whatsapp_template=self.whatsapp_template, ignore_quiet_hours=self.ignore_quiet_hours)


def _default_caps() -> list[CapConfig]:
    return [CapConfig(name="daily", max=2, window="calendar_day"),
            CapConfig(name="weekly", max=5, window="rolling", days=7),
            CapConfig(name="monthly", max=12, window="rolling", days=30)]


class TenantConfig(_Model):
    """Everything notification needs for one tenant. ``channels`` is the fallback order after a trigger's own
    channel; ``default_quiet_hours`` applies to customers who set none (None: no quiet hours)."""

    version: int = 0
    company: str = Field("Touchpoint", min_length=1)
    languages: list[Language] = Field(default_factory=lambda: ["de", "en"], min_length=1)
    default_language: Language = "en"
    default_time_zone: TimeZone = "UTC"
    default_quiet_hours: QuietHoursConfig | None = Field(
        default_factory=lambda: QuietHoursConfig(start=time(21), end=time(8)))
    channels: list[Channel] = Field(default_factory=lambda: list(CHANNELS), min_length=1)
    caps: list[CapConfig] = Field(default_factory=_default_caps)
    answer_link_base: str | None = Field(None, pattern=r"^https?://\S+$")
    answer_ttl_s: int = Field(604_800, gt=0)
    triggers: dict[Name, TriggerConfig] = Field(default_factory=dict)
    templates: dict[str, dict[str, TemplateConfig]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> TenantConfig:
        problems = self._list_problems()
        for name, trigger in self.triggers.items():
            problems += self._template_problems(name, trigger)
        problems += [(("templates", name), f"no trigger named {name!r}")
                     for name in self.templates if name not in self.triggers]
        raise_any(problems)
        return self

    def _list_problems(self) -> list[tuple[Path_, str]]:
        problems = [((field,), f"listed twice: {', '.join(twice)}")
                    for field, twice in (("languages", _twice(self.languages)), ("channels", _twice(self.channels)),
                                         ("caps", _twice([cap.name for cap in self.caps]))) if twice]
        if self.default_language not in self.languages:
            problems.append((("default_language",), (f"{self.default_language!r} is not one of languages "
                                                     f"({', '.join(self.languages)})")))
        answering = [name for name, trigger in self.triggers.items() if trigger.answer]
        if answering and self.answer_link_base is None:
            problems.append((("answer_link_base",), f"required: trigger {answering[0]!r} carries answer links"))
        return problems

    def _template_problems(self, name: str, trigger: TriggerConfig) -> list[tuple[Path_, str]]:
        by_language = self.templates.get(name)
        if by_language is None:
            return [(("templates", name), (f"missing: trigger {name!r} needs a template in each of "
                                           f"{', '.join(self.languages)}"))]
        problems = [(("templates", name, language), f"missing template for language {language!r}")
                    for language in self.languages if language not in by_language]
        for language, template in by_language.items():
            if language not in self.languages:
                problems.append((("templates", name, language),
                                 f"language {language!r} is not one of languages ({', '.join(self.languages)})"))
            problems += [(("templates", name, language) + path, message)
                         for path, message in self._fits_trigger(name, trigger, template)]
        return problems

    def _fits_trigger(self, name: str, trigger: TriggerConfig,
                      template: TemplateConfig) -> list[tuple[Path_, str]]:
        """A subject where the trigger can send e-mail; answer links exactly where the trigger asks for one."""
        problems: list[tuple[Path_, str]] = []
        if template.subject is None and self._may_email(trigger):
            problems.append((("subject",), f"required: trigger {name!r} can send e-mail"))
        if trigger.answer and not LINK_PLACEHOLDERS <= names_in(template.body):
            problems.append((("body",), f"trigger {name!r} asks for an answer: the body needs $yes_link and $no_link"))
        for field in ("subject", "body") if not trigger.answer else ():
            used = names_in(getattr(template, field) or "") & LINK_PLACEHOLDERS
            if used:
                problems.append(((field,), f"uses ${min(used)}, but trigger {name!r} has no answer"))
        return problems

    def _may_email(self, trigger: TriggerConfig) -> bool:
        return trigger.channel in ("email", EVENT_CHANNEL) or "email" in self.channels

    def triggers_for(self, event_type: str) -> list[tuple[str, TriggerConfig]]:
        """The enabled triggers reacting to ``event_type`` (or ``case_stale``), in file order."""
        return [(name, trigger) for name, trigger in self.triggers.items()
                if trigger.enabled and trigger.on == event_type]

    def candidate(self, name: str, first_channel: str | None) -> Candidate:
        """Trigger ``name``'s candidate with this tenant's fallback channels (KeyError when unknown)."""
        return self.triggers[name].candidate(name, first_channel, self.channels)

    def cap_rules(self) -> list[CapRule]:
        return [cap.rule() for cap in self.caps]

    def quiet_hours(self) -> QuietHours | None:
        """The quiet hours of customers who set none."""
        return self.default_quiet_hours.quiet_hours() if self.default_quiet_hours else None

    def language_for(self, preferred: str | None) -> str:
        """The language to write in: ``preferred`` when templated, else ``default_language``."""
        return choose_language(preferred, self.languages, self.default_language)

    def template(self, trigger: str, language: str) -> TemplateConfig:
        """Trigger ``trigger``'s template in ``language`` (KeyError when either is unknown)."""
        return self.templates[trigger][language]


def _twice(values: Sequence[str]) -> list[str]:
    return sorted({value for value in values if values.count(value) > 1})


BUILT_IN = TenantConfig()


class NotificationConfig(_Model):
    tenants: dict[str, TenantConfig] = Field(default_factory=dict)

    def tenant(self, tenant_id: str) -> TenantConfig:
        """The tenant's configuration, else the ``default`` entry, else the built-in defaults (no triggers)."""
        return self.tenants.get(tenant_id) or self.tenants.get(DEFAULT_TENANT) or BUILT_IN


class ConfigSource(ModelFile[NotificationConfig]):
    """The notification configuration in force, re-read when the file changes; a bad new file keeps the previous
    one in force (see ``shared.config_file.ReloadingFile``). ``tenant(id)`` gives a tenant's configuration."""

    model = NotificationConfig
    what = "notification config"


load_config = ConfigSource.load
parse_config = ConfigSource.parse
