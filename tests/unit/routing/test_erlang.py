import math
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.routing.domain.erlang import average_wait, erlang_b, erlang_c, service_level

pytestmark = pytest.mark.unit

PER_HOUR = 1 / 3600


def erlang_c_by_factorials(agents: int, load: Fraction) -> float:
    """The textbook closed form, in exact rational arithmetic: no recursion shared with the implementation."""
    top = load**agents / math.factorial(agents) * Fraction(agents) / (agents - load)
    bottom = sum(load**k / math.factorial(k) for k in range(agents)) + top
    return float(top / bottom)


def birth_death(agents: int, load: float, states: int = 4000) -> list[float]:
    """Stationary distribution of the number in an M/M/N system from its balance equations, truncated."""
    weights = [1.0]
    for n in range(1, states):
        weights.append(weights[-1] * load / min(n, agents))
    total = sum(weights)
    return [w / total for w in weights]


def poisson_cdf(k: int, mean: float) -> float:
    term = total = math.exp(-mean)
    for j in range(1, k + 1):
        term *= mean / j
        total += term
    return total


def test_the_6_agent_case_matches_the_factorial_formula():
    # 100 arrivals per hour at 180 s each is 5 Erlangs.
    assert erlang_c(6, 100 * PER_HOUR, 180) == pytest.approx(erlang_c_by_factorials(6, Fraction(5)), rel=1e-12)
    assert erlang_c(6, 100 * PER_HOUR, 180) == pytest.approx(0.5875, abs=5e-5)


@pytest.mark.parametrize("agents, expected_wait_probability, expected_service_level", [
    (11, 0.6821, 0.3896), (12, 0.4494, 0.6402), (13, 0.2853, 0.7956), (14, 0.1741, 0.8884),
])
def test_the_worked_example_of_200_calls_per_hour_at_180_s(agents, expected_wait_probability,
                                                           expected_service_level):
    rate = 200 * PER_HOUR
    assert erlang_c(agents, rate, 180) == pytest.approx(expected_wait_probability, abs=5e-5)
    assert service_level(agents, rate, 180, 20) == pytest.approx(expected_service_level, abs=5e-5)


def test_the_worked_example_of_720_calls_per_hour_at_4_minutes_with_55_agents():
    rate = 720 * PER_HOUR
    assert erlang_c(55, rate, 240) == pytest.approx(0.2387, abs=5e-5)
    assert average_wait(55, rate, 240) == pytest.approx(8.18, abs=5e-3)
    assert service_level(55, rate, 240, 15) == pytest.approx(0.8459, abs=5e-5)


@given(st.integers(min_value=1, max_value=40), st.fractions(min_value=0, max_value=60, max_denominator=1000))
def test_recursion_agrees_with_the_factorial_formula(agents, load):
    if load >= agents:
        assert erlang_c(agents, float(load), 1.0) == 1.0
    else:
        assert erlang_c(agents, float(load), 1.0) == pytest.approx(erlang_c_by_factorials(agents, load), rel=1e-9,
                                                                    abs=1e-12)


@pytest.mark.parametrize("agents, load", [(3, 2.0), (10, 8.5), (55, 48.0)])
def test_figures_agree_with_the_stationary_distribution(agents, load):
    handle_s = 120.0
    rate = load / handle_s
    p = birth_death(agents, load)
    assert erlang_c(agents, rate, handle_s) == pytest.approx(sum(p[agents:]), rel=1e-9)
    queue_length = sum((n - agents) * pn for n, pn in enumerate(p) if n > agents)
    assert average_wait(agents, rate, handle_s) == pytest.approx(queue_length / rate, rel=1e-9)
    target_s = 30.0
    served_by = agents / handle_s * target_s
    late = sum(pn * poisson_cdf(n - agents, served_by) for n, pn in enumerate(p) if n >= agents)
    assert service_level(agents, rate, handle_s, target_s) == pytest.approx(1 - late, rel=1e-9)


def test_erlang_b_against_its_closed_form():
    load, agents = 7.3, 9
    closed = (load**agents / math.factorial(agents)) / sum(load**k / math.factorial(k) for k in range(agents + 1))
    assert erlang_b(agents, load) == pytest.approx(closed, rel=1e-12)
    assert erlang_b(0, load) == 1.0


def test_overload_means_everyone_waits_forever():
    assert erlang_c(5, 5 / 60, 60) == 1.0
    assert erlang_c(5, 6 / 60, 60) == 1.0
    assert service_level(5, 6 / 60, 60, 3600) == 0.0
    assert average_wait(5, 6 / 60, 60) == math.inf
    assert erlang_c(0, 0.0, 60) == 1.0


def test_no_arrivals_means_no_waiting():
    assert erlang_c(3, 0.0, 60) == 0.0
    assert service_level(3, 0.0, 60, 0) == 1.0
    assert average_wait(3, 0.0, 60) == 0.0


def test_service_level_starts_at_the_no_wait_share_and_rises_with_the_target():
    rate, handle = 200 * PER_HOUR, 180
    levels = [service_level(14, rate, handle, t) for t in (0, 10, 20, 60, 600)]
    assert levels[0] == pytest.approx(1 - erlang_c(14, rate, handle))
    assert levels == sorted(levels) and levels[-1] < 1


def test_more_agents_never_hurt():
    rate, handle = 200 * PER_HOUR, 180
    waits = [average_wait(n, rate, handle) for n in range(11, 20)]
    assert waits == sorted(waits, reverse=True)


def test_thousands_of_agents_stay_finite():
    probability = erlang_c(2000, 1950 / 300, 300)
    assert 0 < probability < 1
    assert math.isfinite(average_wait(2000, 1950 / 300, 300))


@pytest.mark.parametrize("call", [
    lambda: erlang_c(-1, 1.0, 60), lambda: erlang_c(2.5, 1.0, 60), lambda: erlang_c(3, -1.0, 60),
    lambda: erlang_c(3, float("nan"), 60), lambda: erlang_c(3, 1.0, 0), lambda: service_level(3, 0.01, 60, -1),
    lambda: average_wait(3, 0.01, float("inf")),
])
def test_invalid_inputs_are_refused(call):
    with pytest.raises(ValueError):
        call()
