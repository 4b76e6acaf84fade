import math
import statistics
from collections import Counter
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.feedback.domain.metrics import (NO_ANSWERS, Estimate, ces, ces_from_counts, ces_from_sums, csat,
                                              csat_from_counts, estimate, from_counts, nps, nps_from_counts,
                                              product_alert)

pytestmark = pytest.mark.unit

approx = pytest.approx


def reference_interval(values: list[float]) -> tuple[float, float, float]:
    """Mean ± 1.96 · s / √n, computed the textbook way, independently of the module."""
    mean = statistics.mean(values)
    half = 1.96 * statistics.stdev(values) / math.sqrt(len(values))
    return mean, mean - half, mean + half


# ---- NPS -----------------------------------------------------------------------------------------------------

def test_nps_of_a_known_set():
    scores = [10, 10, 9, 8, 7, 6, 5, 3, 10, 9]     # 5 promoters, 2 passives, 3 detractors
    result = nps(scores)
    assert (result.value, result.count) == (20.0, 10)
    half = 1.96 * math.sqrt((80_000 - 10 * 20 ** 2) / 9 / 10)   # s² = (Σx² - n·mean²) / (n - 1)
    assert (result.low, result.high) == (approx(20 - half), approx(20 + half))
    assert (result.low, result.high) == (approx(-36.956, abs=1e-3), approx(76.956, abs=1e-3))


def test_nps_without_answers_has_no_value():
    assert nps([]) == Estimate(value=None, count=0, low=None, high=None) == NO_ANSWERS


def test_nps_of_all_passives_is_zero_with_a_collapsed_interval():
    assert nps([7, 8, 8, 7]) == Estimate(0.0, 4, 0.0, 0.0)


def test_nps_of_all_promoters_is_100_with_a_collapsed_interval():
    assert nps([9, 10, 10]) == Estimate(100.0, 3, 100.0, 100.0)
    assert nps([0, 6, 3]) == Estimate(-100.0, 3, -100.0, -100.0)


@pytest.mark.parametrize("score, value", [(10, 100.0), (8, 0.0), (2, -100.0)])
def test_a_single_nps_answer_is_its_own_interval(score, value):
    assert nps([score]) == Estimate(value, 1, value, value)


def test_the_nps_interval_is_clipped_to_its_range():
    result = nps([10, 10, 10, 0])                  # mean 50, s = 100, half-width 98
    assert (result.value, result.low, result.high) == (50.0, approx(-48.0), 100.0)


# ---- CSAT ----------------------------------------------------------------------------------------------------

def test_csat_is_the_share_of_4_and_5_with_the_wilson_interval():
    result = csat([5, 5, 4, 4, 5, 4, 5, 4, 3, 1])  # 8 of 10 satisfied
    assert (result.value, result.count) == (80.0, 10)
    assert (result.low, result.high) == (approx(49.02, abs=0.01), approx(94.33, abs=0.01))


def test_csat_of_all_threes_is_zero_percent():
    result = csat([3] * 5)
    assert (result.value, result.count, result.low) == (0.0, 5, 0.0)
    assert result.high == approx(100 * 1.96 ** 2 / (5 + 1.96 ** 2))      # Wilson's upper end for 0 of n


def test_csat_of_all_satisfied_reaches_exactly_100():
    result = csat([4, 5, 5])
    assert (result.value, result.high) == (100.0, 100.0)
    assert result.low == approx(100 * 3 / (3 + 1.96 ** 2))


def test_a_single_csat_answer_still_has_a_wide_interval():
    result = csat([5])
    assert (result.value, result.count, result.high) == (100.0, 1, 100.0)
    assert result.low == approx(100 / (1 + 1.96 ** 2))


def test_csat_without_answers_has_no_value():
    assert csat([]) == NO_ANSWERS


# ---- CES -----------------------------------------------------------------------------------------------------

def test_ces_is_the_mean_with_a_normal_interval():
    result = ces([1, 7, 4, 5])                     # mean 4.25, s = 2.5, standard error 1.25
    assert (result.value, result.count) == (4.25, 4)
    assert (result.low, result.high) == (approx(4.25 - 2.45), approx(4.25 + 2.45))


def test_a_constant_ces_has_a_collapsed_interval():
    assert ces([5, 5, 5]) == Estimate(5.0, 3, 5.0, 5.0)


def test_a_single_ces_answer_is_its_own_interval():
    assert ces([6]) == Estimate(6.0, 1, 6.0, 6.0)


def test_the_ces_interval_is_clipped_to_the_scale():
    assert ces([1, 7]) == Estimate(4.0, 2, 1.0, 7.0)


def test_ces_without_answers_has_no_value():
    assert ces([]) == NO_ANSWERS == ces_from_sums(0, 0, 0)


# ---- the aggregate path equals the list path -----------------------------------------------------------------

@given(st.lists(st.integers(0, 10), max_size=300))
def test_nps_from_counts_equals_nps_of_the_answers(scores):
    counts = Counter(scores)
    assert nps_from_counts(counts) == from_counts("nps", counts) == nps(scores) == estimate("nps", scores)
    if len(scores) >= 2:
        per_answer = [100 if s >= 9 else -100 if s <= 6 else 0 for s in scores]
        mean, low, high = reference_interval(per_answer)
        result = nps(scores)
        assert result.value == approx(mean, abs=1e-9)
        assert (result.low, result.high) == (approx(max(-100, low), abs=1e-9), approx(min(100, high), abs=1e-9))


@given(st.lists(st.integers(1, 5), max_size=300))
def test_csat_from_counts_equals_csat_of_the_answers(scores):
    counts = Counter(scores)
    assert csat_from_counts(counts) == from_counts("csat", counts) == csat(scores) == estimate("csat", scores)
    if scores:
        result = csat(scores)
        assert result.low <= result.value <= result.high
        assert 0 <= result.low and result.high <= 100


@given(st.lists(st.integers(1, 7), max_size=300))
def test_ces_from_sums_equals_ces_of_the_answers(scores):
    sums = (len(scores), sum(scores), sum(s * s for s in scores))
    counts = Counter(scores)
    assert ces_from_sums(*sums) == ces_from_counts(counts) == from_counts("ces", counts) == ces(scores)
    assert ces_from_sums(*(Decimal(value) for value in sums)) == ces(scores)   # PostgreSQL's sum(bigint)
    if len(scores) >= 2:
        mean, low, high = reference_interval(scores)
        result = ces(scores)
        assert result.value == approx(mean)
        assert (result.low, result.high) == (approx(max(1, low), abs=1e-9), approx(min(7, high), abs=1e-9))


def test_zero_counts_change_nothing():
    assert nps_from_counts({9: 3, 5: 0, 0: 0}) == nps([9, 9, 9])
    assert nps_from_counts({}) == csat_from_counts({4: 0}) == NO_ANSWERS


# ---- invalid input -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("function, scores", [(nps, [11]), (nps, [-1]), (nps, [True]), (nps, [9.0]),
                                              (csat, [0]), (csat, [6]), (ces, [0]), (ces, [8]), (ces, ["5"])])
def test_scores_outside_the_range_are_refused(function, scores):
    with pytest.raises(ValueError, match="score must be a whole number"):
        function(scores)


@pytest.mark.parametrize("counts", [{11: 1}, {5: -1}, {5: 1.5}, {True: 1}, {"9": 1}])
def test_invalid_counts_are_refused(counts):
    with pytest.raises(ValueError):
        nps_from_counts(counts)


@pytest.mark.parametrize("sums", [(2, 20, 200), (2, 1, 1), (0, 1, 1), (-1, 0, 0), (2.5, 8, 32), (2, 8, 10),
                                  (True, 5, 25)])
def test_inconsistent_ces_sums_are_refused(sums):
    with pytest.raises(ValueError):
        ces_from_sums(*sums)


def test_unknown_metrics_are_refused():
    with pytest.raises(ValueError, match="unknown metric 'scale'"):
        estimate("scale", [1])
    with pytest.raises(ValueError, match="unknown metric 'nsp'"):
        from_counts("nsp", {})


# ---- product alerts ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("avg, count, alert", [(1.9, 5, True), (1.0, 100, True), (1.9, 4, False),
                                               (2.0, 10, False), (4.5, 10, False)])
def test_a_product_alert_needs_enough_ratings_below_the_threshold(avg, count, alert):
    assert product_alert(avg, count, threshold=2.0, min_count=5) is alert
