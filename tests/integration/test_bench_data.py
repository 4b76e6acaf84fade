"""The benchmarks write test data straight into the services' tables; this keeps that data in step with the
schema (a benchmark is run by hand, so a column it still writes after a migration dropped it would otherwise go
unnoticed until the next run)."""

from __future__ import annotations

import pytest

from bench import timeline_api
from services.timeline import repository as repo
from shared.db import TENANTS_SETTING
from tests.support.stack import new_stack

pytestmark = pytest.mark.integration


async def test_the_timeline_api_benchmarks_data_is_stored_as_published_entries_the_api_pages_through(infra):
    stack = await new_stack(infra.bootstrap_servers, infra.admin_dsn)
    await timeline_api.populate(stack, entries=120, other_rows=60, per_other=20)
    conn = await stack.connect()
    try:
        counts = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM timeline.entries) AS entries, (SELECT count(*) FROM timeline.outbox) AS"
            " waiting, (SELECT count(*) FROM timeline.customers) AS customers")
        await conn.execute(f"SELECT set_config('{TENANTS_SETTING}', $1, false)", timeline_api.TENANT)
        survivor, page = await repo.timeline_page(conn, timeline_api.TENANT, timeline_api.TARGET, 50, None, None,
                                                  None, None)
    finally:
        await conn.close()
    assert dict(counts) == {"entries": 180, "waiting": 0, "customers": 4}
    assert survivor == timeline_api.TARGET and len(page) == 50
