"""The vault's key cache stays bounded however many subjects a process meets (real PostgreSQL): expired keys are
dropped as new ones are remembered, not only when keys are loaded for opening."""

from __future__ import annotations

import pytest

from shared.db import ALL_TENANTS, create_pool
from shared.vault import Vault
from tests.support.stack import new_stack

pytestmark = pytest.mark.integration


async def test_the_key_cache_drops_expired_keys_as_sealing_meets_new_subjects(infra):
    stack = await new_stack(infra.bootstrap_servers, infra.admin_dsn)
    pool = await create_pool(stack.database_url, default_scope=ALL_TENANTS)
    now = [0.0]
    vault = Vault(pool, cache_seconds=30, clock=lambda: now[0], cache_limit=100)
    try:
        sizes = []
        for round_ in range(10):
            keys = await vault.subject_keys({("t", f"email:p{round_}-{n}@example.org") for n in range(150)})
            sizes.append(vault.cached())
            now[0] += 31  # everything remembered so far has expired
        last = next(iter(keys.values()))
        now[0] -= 31
        assert vault.key("t", last.kid) == last, "the keys of the latest batch are still at hand"
    finally:
        await pool.close()
    assert max(sizes) <= 2 * 150 + 100, sizes  # 1,500 subjects met; without pruning the cache would hold them all
    assert sizes[-1] < 1500
