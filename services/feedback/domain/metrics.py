"""NPS, CSAT and CES estimates with 95 % confidence intervals.

- NPS: percent promoters (9-10) minus percent detractors (0-6), from -100 to 100. Interval: the normal
  approximation of the mean of per-answer scores (+100 promoter, 0 passive, -100 detractor) with the sample
  variance (n - 1), clipped to [-100, 100].
- CSAT: the share of answers 4-5, in percent. Interval: Wilson score interval, in percent.
- CES: the mean answer, 1-7. Interval: mean ± 1.96 · s / √n with the sample standard deviation s, clipped to
  [1, 7].

No answers give value, low and high None with count 0. The sample variance needs two answers: for a single NPS
or CES answer the interval is the point itself (low = high = value), as it is for any set of identical answers
(all promoters, a constant CES): a normal-approximation interval cannot express uncertainty it has no variance
for, so readers must weigh an estimate by its ``count``. The Wilson interval has no such gap.

Each estimate can be computed from the answers (:func:`nps`, :func:`csat`, :func:`ces`) or from aggregates a
database computes (:func:`nps_from_counts` and :func:`csat_from_counts` from per-score counts,
:func:`ces_from_sums` from n, sum and sum of squares; :func:`from_counts` for any kind from per-score counts).
Both paths do exact integer arithmetic up to the final division, so they give identical results.
Invalid scores or counts raise ValueError.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Z = 1.96                              # two-sided 95 % normal quantile
NPS_RANGE, CSAT_RANGE, CES_RANGE = (0, 10), (1, 5), (1, 7)


@dataclass(frozen=True)
class Estimate:
    value: float | None
    count: int
    low: float | None
    high: float | None


NO_ANSWERS = Estimate(value=None, count=0, low=None, high=None)


def nps(scores: Sequence[int]) -> Estimate:
    return nps_from_counts(_tally(scores, NPS_RANGE, "nps"))


def csat(scores: Sequence[int]) -> Estimate:
    return csat_from_counts(_tally(scores, CSAT_RANGE, "csat"))


def ces(scores: Sequence[int]) -> Estimate:
    checked = [_score(score, CES_RANGE, "ces") for score in scores]
    return ces_from_sums(len(checked), sum(checked), sum(score * score for score in checked))


def estimate(kind: str, scores: Sequence[int]) -> Estimate:
    """The estimate of metric ``kind`` (nps, csat or ces) from its answers."""
    return _by_kind(kind, (nps, csat, ces))(scores)


def nps_from_counts(counts: Mapping[int, int]) -> Estimate:
    """NPS from {score 0-10: number of answers}."""
    counts = _checked_counts(counts, NPS_RANGE, "nps")
    n = sum(counts.values())
    if n == 0:
        return NO_ANSWERS
    promoters = counts[9] + counts[10]
    detractors = sum(counts[score] for score in range(7))
    value = 100 * (promoters - detractors) / n
    if n == 1:
        return Estimate(value, n, value, value)
    # Sample variance of per-answer values in {+100, 0, -100}, as an exact integer fraction times 100².
    variance = 10_000 * (n * (promoters + detractors) - (promoters - detractors) ** 2) / (n * (n - 1))
    half = Z * math.sqrt(variance / n)
    return Estimate(value, n, max(-100.0, value - half), min(100.0, value + half))


def csat_from_counts(counts: Mapping[int, int]) -> Estimate:
    """CSAT from {score 1-5: number of answers}."""
    counts = _checked_counts(counts, CSAT_RANGE, "csat")
    n = sum(counts.values())
    if n == 0:
        return NO_ANSWERS
    satisfied = counts[4] + counts[5]
    low, high = _wilson(satisfied, n)
    return Estimate(100 * satisfied / n, n, low, high)


def ces_from_sums(n: int, total: int, total_squares: int) -> Estimate:
    """CES from the number of answers, their sum and the sum of their squares (integers, or integral values
    such as the Decimal PostgreSQL returns for ``sum`` of a bigint)."""
    n, total, total_squares = (_whole(value, name) for value, name in
                               ((n, "n"), (total, "sum"), (total_squares, "sum of squares")))
    if n < 0:
        raise ValueError(f"ces: n must not be negative, got {n}")
    if n == 0:
        if total or total_squares:
            raise ValueError(f"ces: no answers but sum {total} and sum of squares {total_squares}")
        return NO_ANSWERS
    spread = n * total_squares - total * total          # n² times the population variance: never negative
    low_end, high_end = CES_RANGE
    if not (low_end * n <= total <= high_end * n and low_end ** 2 * n <= total_squares <= high_end ** 2 * n
            and spread >= 0):
        raise ValueError(f"ces: n {n}, sum {total} and sum of squares {total_squares} are not answers 1-7")
    value = total / n
    if n == 1:
        return Estimate(value, n, value, value)
    half = Z * math.sqrt(spread / (n * (n - 1)) / n)
    return Estimate(value, n, max(float(low_end), value - half), min(float(high_end), value + half))


def ces_from_counts(counts: Mapping[int, int]) -> Estimate:
    """CES from {score 1-7: number of answers}."""
    counts = _checked_counts(counts, CES_RANGE, "ces")
    return ces_from_sums(sum(counts.values()), sum(score * k for score, k in counts.items()),
                         sum(score * score * k for score, k in counts.items()))


def from_counts(kind: str, counts: Mapping[int, int]) -> Estimate:
    """The estimate of metric ``kind`` (nps, csat or ces) from {score: number of answers}, as a
    ``GROUP BY score`` returns it."""
    return _by_kind(kind, (nps_from_counts, csat_from_counts, ces_from_counts))(counts)


def product_alert(avg: float, count: int, threshold: float, min_count: int) -> bool:
    """True when a product with at least ``min_count`` ratings averages below ``threshold``: fewer ratings are
    too few to judge a product by."""
    return count >= min_count and avg < threshold


def _wilson(successes: int, n: int) -> tuple[float, float]:
    """The Wilson score interval of successes / n, in percent; exact at the ends of the range."""
    p = successes / n
    denominator = 1 + Z * Z / n
    centre = (p + Z * Z / (2 * n)) / denominator
    half = Z * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n)) / denominator
    low = 0.0 if successes == 0 else max(0.0, 100 * (centre - half))
    high = 100.0 if successes == n else min(100.0, 100 * (centre + half))
    return low, high


def _by_kind(kind: str, functions: tuple[Any, Any, Any]) -> Any:
    try:
        return dict(zip(("nps", "csat", "ces"), functions))[kind]
    except KeyError:
        raise ValueError(f"unknown metric {kind!r} (known: nps, csat, ces)") from None


def _tally(scores: Iterable[int], bounds: tuple[int, int], kind: str) -> Counter[int]:
    return Counter(_score(score, bounds, kind) for score in scores)


def _score(score: Any, bounds: tuple[int, int], kind: str) -> int:
    if isinstance(score, bool) or not isinstance(score, int) or not bounds[0] <= score <= bounds[1]:
        raise ValueError(f"{kind} score must be a whole number from {bounds[0]} to {bounds[1]}, got {score!r}")
    return score


def _checked_counts(counts: Mapping[int, int], bounds: tuple[int, int], kind: str) -> Counter[int]:
    checked: Counter[int] = Counter()
    for score, k in counts.items():
        k = _whole(k, f"{kind} count of score {score!r}")
        if k < 0:
            raise ValueError(f"{kind} count of score {score!r} must not be negative, got {k}")
        checked[_score(score, bounds, kind)] += k
    return checked


def _whole(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    if isinstance(value, int):
        return value
    try:
        whole = int(value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{name} must be a whole number, got {value!r}") from None
    if whole != value:
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    return whole
