"""Survey fatigue: may this customer be invited to this survey now?

:func:`check` applies the rules below in order; the first that says no decides and gives its reason code:

1. ``duplicate_conversation``: the customer was already invited (to any survey) about the same conversation or
   case (``conversation_key``); one interaction is surveyed once;
2. ``duplicate_window``: any invitation within ``duplicate_window_h`` hours; a floor that holds even when
   ``min_days_between`` is 0, so two triggers fired by one interaction do not both go out;
3. ``recontact_days``: an invitation to the same survey within the survey's ``recontact_days``;
4. ``customer_fatigue``: any invitation, on any channel, within ``min_days_between`` days;
5. ``not_sampled``: the deterministic sample (:func:`sampled`) leaves this invitation out;
6. otherwise ``ok``.

"Within" is measured in both directions from ``now``, strictly (exactly 7 days apart is allowed), because
``past`` holds invitations that are scheduled but not yet due as well as those already sent. ``past`` must not
contain the invitation being decided. A window of 0 switches its rule off. Everything is pure: the same inputs
give the same verdict, so deciding again when the invitation is due (with ``now`` then) is safe, and a replayed
trigger is sampled the same way.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

REASONS = ("ok", "duplicate_conversation", "duplicate_window", "recontact_days", "customer_fatigue",
           "not_sampled")
_KEY_SEPARATOR = "\x1f"   # the ASCII unit separator: cannot occur in the ids, so keys never collide


@dataclass(frozen=True)
class FatigueRules:
    """Per-tenant limits; ``sampling_pct`` is the share of allowed invitations that actually go out."""

    min_days_between: int = 7
    duplicate_window_h: int = 12
    sampling_pct: float = 100.0

    def __post_init__(self) -> None:
        if self.min_days_between < 0 or self.duplicate_window_h < 0:
            raise ValueError(f"fatigue windows must not be negative, got {self.min_days_between} days and "
                             f"{self.duplicate_window_h} h")
        _require_pct(self.sampling_pct)


@dataclass(frozen=True)
class PastInvitation:
    """An invitation the customer got or is scheduled to get: ``at`` is when it went or goes out."""

    at: datetime
    survey_id: str
    conversation_key: str | None


class Verdict(NamedTuple):
    allowed: bool
    reason: str               # one of REASONS
    detail: str               # for the suppressed event and logs


def check(rules: FatigueRules, survey_recontact_days: int, past: Sequence[PastInvitation], survey_id: str,
          conversation_key: str | None, now: datetime, sample_key: str) -> Verdict:
    """The verdict on inviting the customer whose invitations are ``past`` to ``survey_id`` at ``now``
    (timezone-aware, as the ``at`` of ``past``). Raises ValueError for a negative ``survey_recontact_days``."""
    if survey_recontact_days < 0:
        raise ValueError(f"recontact days must not be negative, got {survey_recontact_days}")
    if conversation_key is not None:
        same = [p for p in past if p.conversation_key == conversation_key]
        if same:
            return Verdict(False, "duplicate_conversation",
                           f"already invited to {same[0].survey_id} about {conversation_key}")
    for reason, window, candidates in (
            ("duplicate_window", timedelta(hours=rules.duplicate_window_h), past),
            ("recontact_days", timedelta(days=survey_recontact_days), [p for p in past if p.survey_id == survey_id]),
            ("customer_fatigue", timedelta(days=rules.min_days_between), past)):
        near = _nearest_within(candidates, now, window)
        if near is not None:
            return Verdict(False, reason, f"invited to {near.survey_id} at {near.at.isoformat()}, "
                                          f"less than {_span(window)} from {now.isoformat()}")
    if not sampled(sample_key, rules.sampling_pct):
        return Verdict(False, "not_sampled", f"outside the {rules.sampling_pct:g} % sample")
    return Verdict(True, "ok", "")


def _nearest_within(past: Sequence[PastInvitation], now: datetime, window: timedelta) -> PastInvitation | None:
    if window <= timedelta(0):
        return None
    inside = [p for p in past if abs(p.at - now) < window]
    return min(inside, key=lambda p: abs(p.at - now), default=None)


def _span(window: timedelta) -> str:
    if window % timedelta(days=1):
        return f"{window / timedelta(hours=1):g} h"
    return f"{window.days} day" + ("s" if window.days != 1 else "")


def sampled(sample_key: str, pct: float) -> bool:
    """True when ``sample_key`` falls in the first ``pct`` percent (0-100) of the hash space: the same key
    always decides the same way, and over many keys the share is ``pct``. ValueError outside 0-100."""
    _require_pct(pct)
    if pct >= 100:
        return True
    position = int.from_bytes(hashlib.sha256(sample_key.encode("utf-8")).digest()[:8], "big") / 2**64
    return position * 100 < pct


def sample_key(tenant: str, customer_id: str, survey_id: str, conversation_key: str | None) -> str:
    """The key :func:`sampled` decides on: one invitation's identity, so replays and re-checks agree."""
    return _KEY_SEPARATOR.join((tenant, customer_id, survey_id, conversation_key or ""))


def _require_pct(pct: float) -> None:
    if isinstance(pct, bool) or not 0 <= pct <= 100:
        raise ValueError(f"sampling percentage must be from 0 to 100, got {pct!r}")
