"""A webhook's raw payload (kept for audit) goes when a customer whose event it carried is erased: the sweep
deletes every payload naming a shredded data key, in any tenant, and nothing else (real PostgreSQL)."""

from __future__ import annotations

import pytest

from services.ingestion.connectors.repository import RawPayloadLog
from shared import vault
from shared.db import ALL_TENANTS, create_pool
from tests.support.stack import new_stack

pytestmark = pytest.mark.integration


async def test_payloads_of_an_erased_customer_are_deleted_and_the_others_kept(infra):
    stack = await new_stack(infra.bootstrap_servers, infra.admin_dsn)
    pool = await create_pool(stack.database_url, default_scope=ALL_TENANTS)
    try:
        keys = vault.Vault(pool)
        erased, kept = (await keys.subject_keys([("a", "email:erased@example.org"), ("b", "email:kept@example.org")])).values()
        log = RawPayloadLog(pool, 1024)
        assert await log.forget_shredded() == 0, "nothing shredded yet"
        await log.keep("a", "whatsapp", "application/json", b'{"from": "erased@example.org"}', ["m1"], [erased.kid])
        await log.keep("a", "whatsapp", "application/json", b'{"batch": 2}', ["m2", "m3"], [kept.kid, erased.kid])
        await log.keep("b", "whatsapp", "application/json", b'{"from": "kept@example.org"}', ["m4"], [kept.kid])
        async with pool.acquire() as conn:
            await vault.record_owners(conn, [("a", erased.kid, "cust-1")])
            async with conn.transaction():
                assert await vault.shred(conn, "a", ["cust-1"]) == 1
        assert await log.forget_shredded() == 2, "both payloads that carried the erased customer's event"
        assert await log.forget_shredded() == 0, "the next sweep finds nothing new"
        left = await stack.fetch("SELECT tenant, event_ids FROM ingestion.raw_payloads")
    finally:
        await pool.close()
    assert [(r["tenant"], r["event_ids"]) for r in left] == [("b", ["m4"])]
