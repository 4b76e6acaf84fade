"""The vault's key cache stays bounded however many subjects a process meets (real PostgreSQL): expired keys are
dropped as new ones are remembered, not only when keys are loaded for opening, and once per cache period even
below the size limit."""

from __future__ import annotations

import pytest

from shared.db import ALL_TENANTS, create_pool
from shared.vault import Vault
from tests.support.stack import new_stack

pytestmark = pytest.mark.integration


@pytest.fixture
async def pool(infra):
    stack = await new_stack(infra.bootstrap_servers, infra.admin_dsn)
    pool = await create_pool(stack.database_url, default_scope=ALL_TENANTS)
    yield pool
    await pool.close()


async def test_the_key_cache_drops_expired_keys_as_sealing_meets_new_subjects(pool):
    now = [0.0]
    vault = Vault(pool, cache_seconds=30, clock=lambda: now[0], cache_limit=100)
    sizes = []
    for round_ in range(10):
        keys = await vault.subject_keys({("t", f"email:p{round_}-{n}@example.org") for n in range(150)})
        sizes.append(vault.cached())
        now[0] += 31  # everything remembered so far has expired
    last = next(iter(keys.values()))
    now[0] -= 31
    assert vault.key("t", last.kid) == last, "the keys of the latest batch are still at hand"
    assert max(sizes) <= 2 * 150 + 100, sizes  # 1,500 subjects met; without pruning the cache would hold them all
    assert sizes[-1] < 1500


async def test_below_its_limit_the_key_cache_holds_about_the_keys_of_the_last_two_periods(pool):
    """A process that meets fewer subjects than the limit must not keep every key until it reaches the limit
    (a soak grew the timeline's memory that way, minute after minute)."""
    now = [0.0]
    vault = Vault(pool, cache_seconds=30, clock=lambda: now[0], cache_limit=100_000)
    sizes = []
    for second in range(0, 300, 5):  # 40 new subjects every 5 s for 5 minutes: 2,400 in all
        now[0] = float(second)
        await vault.subject_keys({("t", f"email:s{second}-{n}@example.org") for n in range(40)})
        sizes.append(vault.cached())
    live = 40 * 30 // 5  # the keys of one period
    assert max(sizes) <= 2 * live + 40, sizes
    assert sizes[-1] >= 40, "the keys just met are kept"


class SteppingClock:
    """A clock that reads ``now`` once more, then ``then``: time passes while the vault awaits its query."""

    def __init__(self) -> None:
        self.now = 0.0
        self.then: float | None = None

    def __call__(self) -> float:
        t = self.now
        if self.then is not None:
            self.now, self.then = self.then, None
        return t


async def test_a_key_fresh_when_asked_for_is_at_hand_after_the_load_even_if_it_expired_during_the_query(pool):
    """A batch's prefetch finds one key cached and loads another; the pruning after the query must not drop the
    first, or the batch's records sealed under it look sealed under a key that does not exist (dead letters)."""
    clock = SteppingClock()
    vault = Vault(pool, cache_seconds=30, clock=clock)
    cached = next(iter((await vault.subject_keys({("t", "email:cached@example.org")})).values()))
    other = Vault(pool, cache_seconds=30)
    unknown = next(iter((await other.subject_keys({("t", "email:unknown@example.org")})).values()))

    clock.now, clock.then = 29.9, 30.5  # `cached` expires at 30: fresh when asked for, expired after the query
    await vault.load([("t", cached.kid), ("t", unknown.kid)])

    assert vault.key("t", cached.kid) == cached
    assert vault.key("t", unknown.kid) == unknown
