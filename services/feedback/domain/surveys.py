"""Surveys, their questions, and the checking of a customer's answers.

A :class:`Survey` is a versioned list of :class:`Question`. The first question of kind ``nps``, ``csat`` or
``ces`` is the survey's *primary* question: its score is the one metrics, detractor detection and attribution
use. Question kinds and their answers:

- ``nps``: a whole number 0-10; ``csat``: 1-5; ``ces``: 1-7; ``scale``: ``min``..``max`` (both required);
- ``text``: free text, stripped, at most ``max_length`` characters;
- ``choice``: exactly one of ``choices``.

:func:`validate_answers` accepts what a JSON body or an HTML form sends. Numbers may be JSON integers or
strings of ASCII digits with an optional leading minus (forms post ``"7"``); ``"7.5"``, ``""``, ``"abc"``,
floats and booleans are rejected (``True`` is an ``int`` in Python, but not an answer). A missing key and
``None`` both mean "not answered"; so does text that is empty after stripping. It raises :class:`AnswerError`
naming the first offending question. Construction of a :class:`Question` or :class:`Survey` that breaks an
invariant raises ``ValueError``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

METRIC_KINDS = ("nps", "csat", "ces")
KINDS = METRIC_KINDS + ("scale", "text", "choice")
RANGES = {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7)}
DEFAULT_MAX_LENGTH = 2000         # characters of a text answer unless the question says otherwise
MAX_TEXT_LENGTH = 10_000          # the most a question may allow
_WHOLE_NUMBER = re.compile(r"-?[0-9]{1,9}")

# Score bands per metric kind: (label, lowest score of the band), from the top band down.
_BANDS = {
    "nps": (("promoter", 9), ("passive", 7), ("detractor", 0)),
    "csat": (("satisfied", 4), ("neutral", 3), ("dissatisfied", 1)),
    "ces": (("easy", 5), ("neutral", 4), ("hard", 1)),
}
_DETRACTOR_BANDS = frozenset({"detractor", "dissatisfied", "hard"})


class AnswerError(ValueError):
    """An answer that cannot be accepted: ``field`` is the question id, ``reason`` says why, for the
    customer's form and the 400 response."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def question_problems(kind: str, min: int | None = None, max: int | None = None, choices: tuple[str, ...] = (),
                      max_length: int = DEFAULT_MAX_LENGTH) -> list[tuple[str, str]]:
    """(field, message) for each invariant a question with these settings breaks; empty when it is valid.
    Shared by :class:`Question` and the configuration, which reports the messages with their paths."""
    if kind not in KINDS:
        return [("kind", f"unknown kind {kind!r} (known: {', '.join(KINDS)})")]
    problems = []
    if kind == "scale":
        problems += [(name, "required for kind scale") for name, value in (("min", min), ("max", max))
                     if value is None]
        if min is not None and max is not None and min >= max:
            problems.append(("max", f"must be greater than min ({min}), got {max}"))
    else:
        problems += [(name, "only for kind scale") for name, value in (("min", min), ("max", max))
                     if value is not None]
    if kind == "choice" and not choices:
        problems.append(("choices", "required for kind choice: at least one"))
    if kind != "choice" and choices:
        problems.append(("choices", "only for kind choice"))
    if len(set(choices)) != len(choices):
        problems.append(("choices", "listed twice: " + ", ".join(sorted({c for c in choices if choices.count(c) > 1}))))
    if not 1 <= max_length <= MAX_TEXT_LENGTH:
        problems.append(("max_length", f"must be from 1 to {MAX_TEXT_LENGTH}, got {max_length}"))
    return problems


@dataclass(frozen=True)
class Question:
    """One question; ``text`` maps a language to its wording, ``choice_text`` a choice to its label per
    language (a choice without a label shows as itself)."""

    id: str
    kind: str
    text: Mapping[str, str]
    required: bool = True
    min: int | None = None
    max: int | None = None
    choices: tuple[str, ...] = ()
    max_length: int = DEFAULT_MAX_LENGTH
    choice_text: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "choices", tuple(self.choices))
        problems = question_problems(self.kind, self.min, self.max, self.choices, self.max_length)
        if problems:
            raise ValueError(f"question {self.id!r}: " + "; ".join(f"{name}: {text}" for name, text in problems))

    @property
    def is_metric(self) -> bool:
        return self.kind in METRIC_KINDS

    def bounds(self) -> tuple[int, int] | None:
        """The lowest and highest accepted score; None for text and choice."""
        if self.kind == "scale":
            return self.min, self.max  # type: ignore[return-value]  # set for scale (checked at construction)
        return RANGES.get(self.kind)

    def choice_label(self, choice: str, language: str) -> str:
        return self.choice_text.get(choice, {}).get(language, choice)


@dataclass(frozen=True)
class Survey:
    """A versioned questionnaire; ``title`` maps a language to the title shown in the invitation and form."""

    id: str
    version: int
    title: Mapping[str, str]
    questions: tuple[Question, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "questions", tuple(self.questions))
        if not self.questions:
            raise ValueError(f"survey {self.id!r} has no questions")
        ids = [question.id for question in self.questions]
        twice = sorted({qid for qid in ids if ids.count(qid) > 1})
        if twice:
            raise ValueError(f"survey {self.id!r}: question ids listed twice: {', '.join(twice)}")

    def primary(self) -> Question | None:
        """The first nps/csat/ces question: the one whose score is the survey's metric."""
        return next((question for question in self.questions if question.is_metric), None)


def validate_answers(survey: Survey, answers: Mapping[str, Any]) -> dict[str, Any]:
    """The accepted answers in question order, numbers as ``int`` and text stripped; unanswered optional
    questions are left out. Raises :class:`AnswerError` for an unknown question id (checked first, so a form
    must not post fields of its own), a missing required answer, or a value of the wrong type or range."""
    known = {question.id for question in survey.questions}
    unknown = sorted(str(key) for key in answers if key not in known)
    if unknown:
        raise AnswerError(unknown[0], "unknown question")
    accepted: dict[str, Any] = {}
    for question in survey.questions:
        value = _answer(question, answers.get(question.id))
        if value is None and question.required:
            raise AnswerError(question.id, "required")
        if value is not None:
            accepted[question.id] = value
    return accepted


def _answer(question: Question, value: Any) -> int | str | None:
    if value is None:
        return None
    if question.kind == "text":
        return _text(question, value)
    if question.kind == "choice":
        return _choice(question, value)
    return _number(question, value)


def _number(question: Question, value: Any) -> int:
    low, high = question.bounds()  # type: ignore[misc]  # numeric kinds always have bounds
    expected = f"expected a whole number from {low} to {high}"
    if isinstance(value, str) and _WHOLE_NUMBER.fullmatch(value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise AnswerError(question.id, f"{expected}, got {_shown(value)}")
    if not low <= value <= high:
        raise AnswerError(question.id, f"out of range: {expected}, got {value}")
    return value


def _text(question: Question, value: Any) -> str | None:
    if not isinstance(value, str):
        raise AnswerError(question.id, f"expected text, got {_shown(value)}")
    value = value.strip()
    if "\x00" in value:
        raise AnswerError(question.id, "contains a NUL character")
    if len(value) > question.max_length:
        raise AnswerError(question.id, f"too long: at most {question.max_length} characters, got {len(value)}")
    return value or None


def _choice(question: Question, value: Any) -> str:
    if not isinstance(value, str) or value not in question.choices:
        raise AnswerError(question.id, f"expected one of {', '.join(question.choices)}, got {_shown(value)}")
    return value


def _shown(value: Any) -> str:
    """The offending value for a message, short: it goes back to the customer and into logs."""
    text = repr(value) if isinstance(value, (str, int, float)) else type(value).__name__
    return text if len(text) <= 40 else text[:37] + "..."


def metric_of(kind: str, value: int) -> str:
    """The band of a score: ``promoter``/``passive``/``detractor`` for nps (9-10, 7-8, 0-6),
    ``satisfied``/``neutral``/``dissatisfied`` for csat (4-5, 3, 1-2), ``easy``/``neutral``/``hard`` for ces
    (5-7, 4, 1-3). ValueError for another kind or a score outside the kind's range."""
    if kind not in _BANDS:
        raise ValueError(f"no score bands for kind {kind!r} (only {', '.join(METRIC_KINDS)})")
    low, high = RANGES[kind]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{kind} score must be a whole number from {low} to {high}, got {value!r}")
    return next(label for label, lowest in _BANDS[kind] if value >= lowest)


def is_detractor(kind: str, value: int) -> bool:
    """True for nps 0-6, csat 1-2 and ces 1-3: the answers that open a follow-up. Raises like :func:`metric_of`."""
    return metric_of(kind, value) in _DETRACTOR_BANDS
