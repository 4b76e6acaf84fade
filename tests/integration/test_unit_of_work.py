"""The unit of work on a real PostgreSQL: commits only when told, rolls back otherwise, and with ``probes=True``
plans as index probes for its own transaction only, set in the round trip of its BEGIN."""

from __future__ import annotations

import pytest

from shared.db import UnitOfWork, create_pool
from tests.support.stack import new_stack

pytestmark = pytest.mark.integration
SETTINGS = "SELECT current_setting('enable_seqscan') || current_setting('enable_hashjoin') || current_setting('enable_mergejoin')"


@pytest.fixture
async def pool(infra):
    stack = await new_stack(infra.bootstrap_servers, infra.admin_dsn)
    pool = await create_pool(stack.database_url, min_size=1, max_size=1, default_scope="*")
    async with pool.acquire() as conn:
        await conn.execute("CREATE TEMP TABLE uow_probe (n int)")  # one connection in the pool: one session
    yield pool
    async with pool.acquire() as conn:
        await conn.execute("DROP TABLE uow_probe")
    await pool.close()


@pytest.mark.parametrize("probes", [False, True])
async def test_commits_when_told_and_rolls_back_otherwise(pool, probes):
    async with UnitOfWork(pool, probes=probes) as uow:
        await uow.conn.execute("INSERT INTO uow_probe VALUES (1)")
        await uow.commit()
    async with UnitOfWork(pool, probes=probes) as uow:
        await uow.conn.execute("INSERT INTO uow_probe VALUES (2)")
    with pytest.raises(ZeroDivisionError):
        async with UnitOfWork(pool, probes=probes) as uow:
            await uow.conn.execute("INSERT INTO uow_probe VALUES (3)")
            raise ZeroDivisionError
    async with pool.acquire() as conn:
        assert [r["n"] for r in await conn.fetch("SELECT n FROM uow_probe")] == [1]
        assert not conn.is_in_transaction()


async def test_probes_hold_for_the_transaction_only(pool):
    async with UnitOfWork(pool, probes=True) as uow:
        assert uow.conn.is_in_transaction()
        assert await uow.conn.fetchval(SETTINGS) == "offoffoff"
        await uow.commit()
    async with UnitOfWork(pool) as uow:  # the same (only) connection, a plain transaction
        assert await uow.conn.fetchval(SETTINGS) == "ononon"
    async with UnitOfWork(pool, probes=True) as uow:
        assert await uow.conn.fetchval(SETTINGS) == "offoffoff"
    async with pool.acquire() as conn:  # after a rollback too
        assert await conn.fetchval(SETTINGS) == "ononon"


async def test_a_failed_statement_rolls_back_and_the_connection_serves_again(pool):
    with pytest.raises(Exception, match="division by zero"):
        async with UnitOfWork(pool, probes=True) as uow:
            await uow.conn.execute("INSERT INTO uow_probe VALUES (4)")
            await uow.conn.fetchval("SELECT 1 / 0")
    async with UnitOfWork(pool, probes=True) as uow:
        assert await uow.conn.fetchval("SELECT count(*) FROM uow_probe WHERE n = 4") == 0
