"""The fault suite's own Kafka and PostgreSQL processes (it kills, pauses and crashes them, so it never shares
the session's servers), with a fault-injecting TCP proxy in front of each for the services.

``TOUCHPOINT_FAULTS=full`` (``make test-faults``) or ``TOUCHPOINT_TEST_SCALE=full`` (``make test-full``) runs
every scenario with its full number of cycles and durations; otherwise a quick subset runs, each fault once and
short (what ``make test`` and CI run).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest

from tests.faults.proxy import FaultProxy
from tests.support import scale
from tests.support.infra import LocalInfra

FULL = os.environ.get("TOUCHPOINT_FAULTS") == "full" or scale.FULL
KAFKA_PORT, PG_PORT = 28092, 28432
KAFKA_PROXY_PORT, PG_PROXY_PORT = 28095, 28433


@dataclass
class FaultInfra:
    servers: LocalInfra
    kafka_proxy: FaultProxy
    pg_proxy: FaultProxy

    @property
    def bootstrap_servers(self) -> str:  # direct: what the test itself uses to count
        return self.servers.bootstrap_servers

    @property
    def admin_dsn(self) -> str:
        return self.servers.admin_dsn

    def service_env(self, database_url: str) -> dict[str, str]:
        """Environment that routes a service's Kafka and PostgreSQL traffic through the proxies."""
        proxied_db = database_url.replace(f":{PG_PORT}/", f":{PG_PROXY_PORT}/")
        return {"TOUCHPOINT_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{KAFKA_PROXY_PORT}",
                "TOUCHPOINT_DATABASE_URL": proxied_db}


@pytest.fixture(scope="session")
async def faults_infra():
    servers = LocalInfra("faults", KAFKA_PORT, PG_PORT, KAFKA_PROXY_PORT=str(KAFKA_PROXY_PORT)).start_all()
    kafka_proxy = await FaultProxy(KAFKA_PROXY_PORT, KAFKA_PORT + 2).start()
    pg_proxy = await FaultProxy(PG_PROXY_PORT, PG_PORT).start()
    try:
        yield FaultInfra(servers, kafka_proxy, pg_proxy)
    finally:
        await kafka_proxy.stop()
        await pg_proxy.stop()
        servers.stop_all()
