"""Back-pressure, the dead-letter ceiling and per-key rate limits: the decisions, without Kafka (the running system is tested in
tests/e2e/test_invalid_input.py and tests/faults/)."""

from __future__ import annotations

import asyncio

import pytest

from services.ingestion.admission import Admission, AdmissionLimits, Overloaded
from shared.deadletters import DeadLetterCeiling, DeadLetterCeilingExceeded
from shared.ratelimit import RateLimited, RateLimiter

pytestmark = pytest.mark.unit


def test_ceiling_allows_a_share_of_the_window_and_refuses_the_batch_that_crosses_it():
    ceiling = DeadLetterCeiling(max_share=0.1, window=100)
    ceiling.read("t", 100)
    ceiling.admit({"t": 10})
    with pytest.raises(DeadLetterCeilingExceeded) as refused:
        ceiling.admit({"t": 1})
    assert refused.value.dead == 11 and "t" in str(refused.value)


def test_ceiling_forgets_batches_that_slid_out_of_the_window():
    ceiling = DeadLetterCeiling(max_share=0.1, window=100)
    ceiling.read("t", 50)
    ceiling.admit({"t": 10})
    ceiling.read("t", 50)
    with pytest.raises(DeadLetterCeilingExceeded):
        ceiling.admit({"t": 1})  # still 100 records back: 10 + 1 > 10
    ceiling.read("t", 60)  # the first batch (and its 10 dead letters) slides out
    ceiling.admit({"t": 9})


def test_ceiling_counts_each_topic_on_its_own_and_one_switches_it_off():
    ceiling = DeadLetterCeiling(max_share=0.1, window=100)
    ceiling.read("a", 100)
    ceiling.read("b", 100)
    ceiling.admit({"a": 10})
    ceiling.admit({"b": 10})
    off = DeadLetterCeiling(max_share=1.0, window=100)
    off.read("a", 1)
    off.admit({"a": 10_000})


def test_a_refused_batch_is_not_counted():
    ceiling = DeadLetterCeiling(max_share=0.1, window=100)
    ceiling.read("t", 100)
    with pytest.raises(DeadLetterCeilingExceeded):
        ceiling.admit({"t": 50})
    ceiling.admit({"t": 10})


async def test_admission_refuses_beyond_the_in_flight_limit_with_503():
    admission = Admission(AdmissionLimits(max_in_flight=2, retry_after=7))
    release = asyncio.Event()

    async def publish():
        async with admission.publishing():
            await release.wait()

    holders = [asyncio.create_task(publish()) for _ in range(2)]
    await asyncio.sleep(0)
    with pytest.raises(Overloaded) as refused:
        async with admission.publishing():
            pass
    assert (refused.value.status, refused.value.retry_after) == (503, 7)
    release.set()
    await asyncio.gather(*holders)
    assert admission.in_flight == 0
    async with admission.publishing():
        pass


async def test_admission_answers_429_while_the_backlog_is_above_the_limit():
    admission = Admission(AdmissionLimits(max_lag=1000))
    async with admission.publishing():
        pass  # lag unknown: admitted
    admission.lag = 1001
    with pytest.raises(Overloaded) as refused:
        async with admission.publishing():
            pass
    assert refused.value.status == 429 and refused.value.reason == "backlog"
    admission.lag = 1000
    async with admission.publishing():
        pass


async def test_a_publish_that_is_not_confirmed_in_time_is_a_503():
    admission = Admission(AdmissionLimits(publish_timeout=0.05))
    with pytest.raises(Overloaded) as refused:
        await admission.bounded(asyncio.sleep(5))
    assert refused.value.status == 503 and admission.refused["timeout"] == 1


def test_rate_limiter_allows_the_burst_then_the_rate_per_key():
    now = [0.0]
    limiter = RateLimiter(rate=2, burst=3, clock=lambda: now[0])
    for _ in range(3):
        limiter.take("a")
    with pytest.raises(RateLimited) as refused:
        limiter.take("a")
    assert refused.value.retry_after == 1
    limiter.take("b")  # another key has its own bucket
    now[0] = 0.5  # one token back after half a second at 2/s
    limiter.take("a")
    with pytest.raises(RateLimited):
        limiter.take("a")
    RateLimiter(rate=0, burst=0).take("a")  # 0 = no limit
