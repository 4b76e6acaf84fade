from datetime import datetime, timedelta, timezone

import pytest

from services.routing.domain.queueing import HandlingRate, Waiting, positions, rank

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)


def waiting(cid: str, priority: int = 0, waited_s: float = 0, queue: str = "general") -> Waiting:
    return Waiting(cid, queue, priority, NOW - timedelta(seconds=waited_s))


def ids(entries) -> list[str]:
    return [w.conversation_id for w in entries]


def test_higher_priority_first_then_longest_waiting_then_id():
    entries = [waiting("low", 0, 300), waiting("high", 5, 10), waiting("b", 1, 60), waiting("a", 1, 60),
               waiting("older", 1, 120)]
    assert ids(rank(entries, NOW, ageing_s=0)) == ["high", "older", "a", "b", "low"]


def test_ageing_lets_a_long_waiting_conversation_overtake():
    entries = [waiting("vip", 2, 0), waiting("patient", 0, 180)]
    assert ids(rank(entries, NOW, ageing_s=60)) == ["patient", "vip"]
    assert ids(rank(entries, NOW, ageing_s=120)) == ["vip", "patient"]
    assert ids(rank(entries, NOW, ageing_s=0)) == ["vip", "patient"]
    assert ids(rank(entries, NOW, ageing_s=-1)) == ["vip", "patient"]


def test_effective_priority_grows_one_level_per_ageing_period():
    entry = waiting("c", 3, 90)
    assert entry.effective_priority(NOW, 60) == pytest.approx(4.5)
    assert entry.effective_priority(NOW, 0) == 3.0
    assert entry.effective_priority(NOW - timedelta(seconds=300), 60) == 3.0


def test_rank_is_independent_of_input_order():
    entries = [waiting(f"c{n}", n % 3, n * 7) for n in range(20)]
    assert rank(entries, NOW, 30) == rank(list(reversed(entries)), NOW, 30)


def test_positions_count_within_each_queue():
    entries = [waiting("b1", 0, 100, "billing"), waiting("g1", 9, 0), waiting("b2", 5, 0, "billing"),
               waiting("g2", 0, 50)]
    assert positions(entries, NOW, ageing_s=0) == {"g1": 1, "b2": 1, "b1": 2, "g2": 2}
    assert positions(entries, NOW, ageing_s=10) == {"g1": 1, "b1": 1, "b2": 2, "g2": 2}
    assert positions([], NOW, 60) == {}


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        Waiting("c", "q", 0, datetime(2026, 3, 2, 12, 0))
    with pytest.raises(ValueError, match="timezone-aware"):
        rank([waiting("c")], datetime(2026, 3, 2, 12, 0), 60)


def test_eta_without_observations_is_the_prior():
    rate = HandlingRate(window_s=900, default_handle_s=300)
    assert rate.eta_s("general", 1, NOW, agents_serving=1) == pytest.approx(300)
    assert rate.eta_s("general", 4, NOW, agents_serving=2) == pytest.approx(600)
    assert rate.eta_s("billing", 3, NOW, agents_serving=0) == pytest.approx(900)


def test_observed_departures_dominate_the_prior():
    rate = HandlingRate(window_s=900, default_handle_s=300)
    start = NOW - timedelta(seconds=900)
    assert rate.eta_s("general", 1, start, 1) == pytest.approx(300)
    for n in range(90):
        rate.departed("general", start + timedelta(seconds=10 * n + 5))
    assert rate.rate("general", NOW, 1) == pytest.approx(91 / 1200)
    assert rate.eta_s("general", 2, NOW, 1) == pytest.approx(2 * 1200 / 91)
    assert rate.eta_s("general", 2, NOW, 1) < 30
    assert rate.eta_s("billing", 2, NOW, 1) == pytest.approx(600)


def test_departures_leave_the_window():
    rate = HandlingRate(window_s=900, default_handle_s=300)
    for n in range(10):
        rate.departed("general", NOW + timedelta(seconds=n))
    later = NOW + timedelta(hours=2)
    assert rate.rate("general", later, 1) == pytest.approx(1 / 1200)
    assert rate.eta_s("general", 1, later, 1) == pytest.approx(1200)


def test_the_observation_period_grows_up_to_the_window():
    rate = HandlingRate(window_s=900, default_handle_s=300)
    rate.departed("general", NOW)
    assert rate.rate("general", NOW, 1) == pytest.approx(2 / 300)
    assert rate.rate("general", NOW + timedelta(seconds=300), 1) == pytest.approx(2 / 600)
    assert rate.rate("general", NOW + timedelta(seconds=600), 1) == pytest.approx(2 / 900)
    assert rate.rate("general", NOW + timedelta(seconds=2000), 1) == pytest.approx(1 / 1200)


def test_departures_may_arrive_out_of_order():
    ordered, shuffled = HandlingRate(), HandlingRate()
    stamps = [NOW + timedelta(seconds=s) for s in (0, 30, 60, 90, 120)]
    for at in stamps:
        ordered.departed("q", at)
    for at in (stamps[2], stamps[0], stamps[4], stamps[1], stamps[3]):
        shuffled.departed("q", at)
    later = NOW + timedelta(seconds=200)
    assert shuffled.eta_s("q", 3, later, 2) == pytest.approx(ordered.eta_s("q", 3, later, 2))


def test_invalid_arguments_are_refused():
    with pytest.raises(ValueError, match="1-based"):
        HandlingRate().eta_s("q", 0, NOW, 1)
    with pytest.raises(ValueError, match="positive"):
        HandlingRate(window_s=0)
    with pytest.raises(ValueError, match="timezone-aware"):
        HandlingRate().departed("q", datetime(2026, 3, 2))
