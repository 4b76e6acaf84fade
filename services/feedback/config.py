"""Feedback configuration: per-tenant surveys, the triggers that send them, fatigue rules, detractor follow-up
and product alerts.

The file (YAML, or JSON when its name ends in ``.json``; its path is in ``TOUCHPOINT_FEEDBACK_CONFIG``) has one
top-level key, ``tenants``; see ``deploy/feedback/feedback.yaml`` for an annotated example with every setting.
A tenant without its own entry uses ``default``; entries do not inherit from each other. Each tenant carries a
``version`` so that what was asked can be traced back to the configuration in force.

Validation happens once, at load, so a typo fails loudly instead of silently surveying nobody: unknown keys,
question kinds and their settings (a scale needs ``min`` and ``max``), sampling percentages outside 0-100,
triggers naming an unknown survey, and wording (titles, questions, choice labels) in exactly the tenant's
languages. Errors:
- :class:`ConfigError` (a ``ValueError``) from :func:`load_config` and :func:`parse_config`: one line per
  problem, each naming the path in the file (``tenants.acme.surveys.nps.questions[0].text``).
- ``pydantic.ValidationError`` (also a ``ValueError``) from ``FeedbackConfig.model_validate`` on raw data.

YAML is read with only ``true``/``false`` as booleans: YAML 1.1 would read the trigger key ``on`` (and
``yes``/``no``) as booleans.

:class:`ConfigSource` re-reads the file when it changes and keeps serving the previous configuration when the
new file is invalid, so a bad edit never stops feedback.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.feedback.domain.fatigue import FatigueRules
from services.feedback.domain.surveys import DEFAULT_MAX_LENGTH, Question, Survey, question_problems
from shared.config_file import ConfigError, Path_, ModelFile, dotted, raise_any  # noqa: F401 - ConfigError is part of this module's API

DEFAULT_TENANT = "default"
CASE_RESOLVED = "touchpoint.case.resolved.v1"
CONVERSATION_RESOLVED = "touchpoint.routing.conversation_resolved.v1"
CALL = "call"       # an interaction.resolved event on the phone channel (identity topic)
TRIGGER_SOURCES = (CASE_RESOLVED, CONVERSATION_RESOLVED, CALL)



Language = Annotated[str, Field(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")]
Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
Wording = dict[Language, Annotated[str, Field(min_length=1)]]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChoiceConfig(_Model):
    """One answer of a choice question: ``id`` is what is stored and posted, ``text`` its label per language."""

    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")]
    text: Wording


class QuestionConfig(_Model):
    """One question; see :mod:`services.feedback.domain.surveys` for kinds and answers."""

    id: Name
    kind: Literal["nps", "csat", "ces", "scale", "text", "choice"]
    text: Wording
    required: bool = True
    min: int | None = None
    max: int | None = None
    choices: list[ChoiceConfig] = Field(default_factory=list)
    max_length: int | None = None      # text only; default 2000

    @model_validator(mode="after")
    def _consistent(self) -> QuestionConfig:
        problems: list[tuple[Path_, str]] = [
            ((field,), message) for field, message in
            question_problems(self.kind, self.min, self.max, self._choice_ids(), self._max_length())]
        if self.max_length is not None and self.kind != "text":
            problems.append((("max_length",), "only for kind text"))
        raise_any(problems)
        return self

    def _max_length(self) -> int:
        return DEFAULT_MAX_LENGTH if self.max_length is None else self.max_length

    def _choice_ids(self) -> tuple[str, ...]:
        return tuple(choice.id for choice in self.choices)

    def question(self) -> Question:
        return Question(id=self.id, kind=self.kind, text=dict(self.text), required=self.required, min=self.min,
                        max=self.max, choices=self._choice_ids(), max_length=self._max_length(),
                        choice_text={choice.id: dict(choice.text) for choice in self.choices})


class SurveyConfig(_Model):
    """A survey: ``recontact_days`` is the least time between two invitations of a customer to it (0: none
    beyond the tenant's fatigue rules)."""

    version: int = Field(1, ge=1)
    title: Wording
    recontact_days: int = Field(0, ge=0)
    questions: list[QuestionConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_ids(self) -> SurveyConfig:
        ids = [question.id for question in self.questions]
        raise_any([(("questions", index, "id"), f"{qid!r} listed twice")
                    for index, qid in enumerate(ids) if qid in ids[:index]])
        return self

    def survey(self, survey_id: str) -> Survey:
        return Survey(id=survey_id, version=self.version, title=dict(self.title),
                      questions=tuple(question.question() for question in self.questions))


class FatigueConfig(_Model):
    """At most one invitation per customer in ``min_days_between`` days, never two in ``duplicate_window_h``."""

    min_days_between: int = Field(7, ge=0)
    duplicate_window_h: int = Field(12, ge=0)


class DetractorFollowUpConfig(_Model):
    """The follow-up conversation routing opens for a detractor, and the optional re-survey once it closes."""

    sla_s: int = Field(172_800, gt=0)
    priority: int = Field(10, ge=0)
    resurvey: bool = True
    resurvey_delay_s: float = Field(86_400.0, ge=0)


class ProductAlertConfig(_Model):
    """Alert when a product with at least ``min_count`` ratings averages below ``threshold`` (ratings 1-5)."""

    threshold: float = Field(2.0, ge=1, le=5)
    min_count: int = Field(5, ge=1)


class TriggerConfig(_Model):
    """What sends a survey: ``on`` one of :data:`TRIGGER_SOURCES`, ``delay_s`` after the event, to
    ``sampling_pct`` percent of the customers fatigue allows."""

    on: Literal["touchpoint.case.resolved.v1", "touchpoint.routing.conversation_resolved.v1", "call"]
    survey: Name
    delay_s: float = Field(86_400.0, ge=0)
    sampling_pct: float = Field(100.0, ge=0, le=100)
    enabled: bool = True

    @model_validator(mode="before")
    @classmethod
    def _on_read_as_true(cls, data: Any) -> Any:
        """Data read by a YAML 1.1 loader elsewhere has the key ``on`` as the boolean True."""
        if isinstance(data, dict) and True in data and "on" not in data:
            return {("on" if key is True else key): value for key, value in data.items()}
        return data


class TenantConfig(_Model):
    """Everything feedback needs for one tenant; ``survey_link_base`` is the public URL of the survey form
    (``<base>/<token>``), valid for ``token_ttl_s`` seconds."""

    version: int = 0
    languages: list[Language] = Field(default_factory=lambda: ["de", "en"], min_length=1)
    default_language: Language = "en"
    survey_link_base: str = Field("http://localhost:8006/v1/surveys", pattern=r"^https?://\S+$")
    token_ttl_s: int = Field(1_209_600, gt=0)
    fatigue: FatigueConfig = FatigueConfig()
    detractor_follow_up: DetractorFollowUpConfig = DetractorFollowUpConfig()
    product_alert: ProductAlertConfig = ProductAlertConfig()
    surveys: dict[Name, SurveyConfig] = Field(default_factory=dict)
    triggers: dict[Name, TriggerConfig] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> TenantConfig:
        problems: list[tuple[Path_, str]] = []
        twice = sorted({language for language in self.languages if self.languages.count(language) > 1})
        if twice:
            problems.append((("languages",), f"listed twice: {', '.join(twice)}"))
        if self.default_language not in self.languages:
            problems.append((("default_language",), (f"{self.default_language!r} is not one of languages "
                                                     f"({', '.join(self.languages)})")))
        for name, trigger in self.triggers.items():
            if trigger.survey not in self.surveys:
                known = ", ".join(self.surveys) or "none"
                problems.append((("triggers", name, "survey"), f"unknown survey {trigger.survey!r} (known: {known})"))
        for survey_id, survey in self.surveys.items():
            problems += [(("surveys", survey_id) + path, message) for path, message in self._wording_problems(survey)]
        raise_any(problems)
        return self

    def _wording_problems(self, survey: SurveyConfig) -> list[tuple[Path_, str]]:
        """Every title, question and choice label in each tenant language, and in no other."""
        wordings: list[tuple[Path_, Mapping[str, str]]] = [(("title",), survey.title)]
        for index, question in enumerate(survey.questions):
            wordings.append((("questions", index, "text"), question.text))
            wordings += [(("questions", index, "choices", number, "text"), choice.text)
                         for number, choice in enumerate(question.choices)]
        listed = ", ".join(self.languages)
        problems: list[tuple[Path_, str]] = []
        for path, wording in wordings:
            problems += [(path, f"missing wording for language {language!r}")
                         for language in self.languages if language not in wording]
            problems += [(path + (language,), f"language {language!r} is not one of languages ({listed})")
                         for language in wording if language not in self.languages]
        return problems

    def triggers_for(self, event_type: str) -> list[tuple[str, TriggerConfig]]:
        """The enabled triggers reacting to ``event_type`` (or ``call``), in file order."""
        return [(name, trigger) for name, trigger in self.triggers.items()
                if trigger.enabled and trigger.on == event_type]

    def survey(self, survey_id: str) -> Survey:
        """Survey ``survey_id`` as a domain value (KeyError when unknown)."""
        return self.surveys[survey_id].survey(survey_id)

    def recontact_days(self, survey_id: str) -> int:
        """Survey ``survey_id``'s recontact days (KeyError when unknown)."""
        return self.surveys[survey_id].recontact_days

    def fatigue_rules(self, trigger: str | None = None) -> FatigueRules:
        """The tenant's fatigue rules with trigger ``trigger``'s sampling percentage (KeyError when unknown);
        without a trigger (an invitation on demand) everyone allowed is invited."""
        pct = self.triggers[trigger].sampling_pct if trigger is not None else 100.0
        return FatigueRules(min_days_between=self.fatigue.min_days_between,
                            duplicate_window_h=self.fatigue.duplicate_window_h, sampling_pct=pct)

    def language_for(self, preferred: str | None) -> str:
        """``preferred`` when it is one of languages (``de-AT`` matches ``de``), else ``default_language``."""
        if preferred:
            wanted = preferred.strip().lower()
            for candidate in (wanted, wanted.split("-")[0]):
                if candidate in self.languages:
                    return candidate
        return self.default_language


BUILT_IN = TenantConfig()


class FeedbackConfig(_Model):
    tenants: dict[str, TenantConfig] = Field(default_factory=dict)

    def tenant(self, tenant_id: str) -> TenantConfig:
        """The tenant's configuration, else the ``default`` entry, else the built-in defaults (no surveys)."""
        return self.tenants.get(tenant_id) or self.tenants.get(DEFAULT_TENANT) or BUILT_IN


class ConfigSource(ModelFile[FeedbackConfig]):
    """The feedback configuration in force, re-read when the file changes; a bad new file keeps the previous one
    in force (see ``shared.config_file.ReloadingFile``). ``tenant(id)`` gives a tenant's configuration."""

    model = FeedbackConfig
    what = "feedback config"


load_config = ConfigSource.load
parse_config = ConfigSource.parse
