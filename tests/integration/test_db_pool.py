"""The services' connection pool (real PostgreSQL): connections go to waiters in the order they asked, and the
tenant scope a connection carries always matches the task that holds it, although acquire and release no longer
reset the session."""

from __future__ import annotations

import asyncio

import pytest

from shared.db import TENANTS_SETTING, create_pool, tenant_scope
from tests.support.stack import new_stack

pytestmark = pytest.mark.integration


async def test_waiters_get_the_connection_in_the_order_they_asked_even_when_others_ask_just_as_it_is_released(infra):
    stack = await new_stack(infra.bootstrap_servers, infra.admin_dsn)
    pool = await create_pool(stack.database_url, min_size=1, max_size=1)
    served: list[str] = []

    async def use(name: str) -> None:
        async with pool.acquire() as conn:
            served.append(name)
            await conn.fetchval("SELECT 1")

    try:
        holder = await pool.acquire()
        waiters = []
        for i in range(5):
            waiters.append(asyncio.create_task(use(f"waiter-{i}")))
            await asyncio.sleep(0.01)  # queued one after the other
        # Each time a waiter finishes, a newcomer asks in the same moment the connection comes back.
        newcomers = []
        release = asyncio.create_task(pool.release(holder))
        for i in range(5):
            newcomers.append(asyncio.create_task(use(f"newcomer-{i}")))
            await asyncio.sleep(0)
        await asyncio.gather(release, *waiters, *newcomers)
    finally:
        await pool.close()
    assert served[:5] == [f"waiter-{i}" for i in range(5)], served


async def test_a_connection_lost_while_held_and_never_released_does_not_block_the_others(infra):
    stack = await new_stack(infra.bootstrap_servers, infra.admin_dsn)
    pool = await create_pool(stack.database_url, min_size=1, max_size=1)
    try:
        lost = await pool.acquire()
        lost.terminate()  # its holder goes back to the pool on close; nobody calls release
        async with pool.acquire(timeout=10) as conn:
            assert await conn.fetchval("SELECT 1") == 1
    finally:
        await pool.close()


async def test_a_connection_always_carries_the_scope_of_the_task_holding_it(infra):
    stack = await new_stack(infra.bootstrap_servers, infra.admin_dsn)
    pool = await create_pool(stack.database_url, min_size=1, max_size=1)
    setting = f"SELECT current_setting('{TENANTS_SETTING}', true)"
    try:
        seen = []
        for scope in ("tenant-a", "tenant-a", "tenant-b", None, "tenant-a"):
            if scope is None:
                async with pool.acquire() as conn:
                    seen.append(await conn.fetchval(setting))
                continue
            with tenant_scope(scope):
                async with pool.acquire() as conn:
                    seen.append(await conn.fetchval(setting))
        async with pool.acquire() as conn:
            pid = conn.get_server_pid()
            conn.terminate()  # a broken connection is replaced by a new one, which must not inherit the memory
        with tenant_scope("tenant-a"):
            async with pool.acquire() as conn:
                replaced = conn.get_server_pid() != pid
                seen.append(await conn.fetchval(setting))
    finally:
        await pool.close()
    assert replaced
    assert seen == ["tenant-a", "tenant-a", "tenant-b", "", "tenant-a", "tenant-a"]
