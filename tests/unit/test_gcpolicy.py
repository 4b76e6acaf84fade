"""The garbage-collector policy: thresholds raised once the service has started, pauses timed per generation."""

from __future__ import annotations

import gc

import pytest

from shared import gcpolicy


@pytest.fixture
def restored_gc():
    thresholds = gc.get_threshold()
    callbacks = list(gc.callbacks)
    yield
    gc.callbacks[:] = callbacks
    gc.set_threshold(*thresholds)
    gc.unfreeze()


def test_a_pause_is_the_time_between_the_start_and_the_stop_of_a_collection():
    ticks = iter([10.0, 10.25])
    pauses = []
    clock = gcpolicy.PauseClock(lambda generation, seconds: pauses.append((generation, seconds)), lambda: next(ticks))
    clock("start", {"generation": 1})
    clock("stop", {"generation": 1, "collected": 0, "uncollectable": 0})
    assert pauses == [(1, 0.25)]


def test_settling_freezes_start_up_objects_raises_the_young_threshold_and_times_collections(restored_gc):
    gcpolicy.settle(0, lambda generation, seconds: None)  # a clock another app of this process installed
    earlier, pauses = [], []
    gcpolicy.settle(20_000, lambda generation, seconds: earlier.append((generation, seconds)))
    gcpolicy.settle(20_000, lambda generation, seconds: pauses.append((generation, seconds)))
    earlier.clear()

    assert gc.get_threshold()[0] == 20_000
    assert gc.get_freeze_count() > 0, "what existed at start-up is out of the collector's sight"
    assert sum(isinstance(c, gcpolicy.PauseClock) for c in gc.callbacks) == 1, "settling twice keeps one clock"
    gc.collect()
    assert pauses and pauses[-1][0] == 2 and pauses[-1][1] >= 0
    assert earlier == [], "the latest recorder only"


def test_a_threshold_of_zero_keeps_the_interpreters_thresholds(restored_gc):
    before = gc.get_threshold()
    gcpolicy.settle(0)
    assert gc.get_threshold() == before


def test_pauses_are_exported_per_generation():
    from prometheus_client import generate_latest

    from shared.metrics import ServiceMetrics

    metrics = ServiceMetrics()
    metrics.record_gc_pause(2, 0.5)
    metrics.record_gc_pause(2, 0.25)
    assert 'touchpoint_gc_pause_seconds_total{generation="2"} 0.75' in generate_latest(metrics.registry).decode()
