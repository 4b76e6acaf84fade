from __future__ import annotations

import pytest

from tests.support.stack import new_stack

SERVICES = ("ingestion", "identity", "timeline")


@pytest.fixture(scope="module")
async def stack(infra):
    """The three services as separate processes on a fresh database and topic prefix."""
    s = await new_stack(infra.bootstrap_servers, infra.admin_dsn)
    for service in SERVICES:
        s.start(service)
    for proc in s.processes.values():
        await proc.wait_ready()
    yield s
    s.stop_all()
