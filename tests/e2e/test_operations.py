"""Operations surface of every running service: Prometheus metrics, liveness and readiness."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.support import checks, kafka_io
from tests.support.data import generate
from tests.support.infra import LocalInfra
from tests.support.stack import new_stack

pytestmark = pytest.mark.e2e

COMMON = ("touchpoint_consumed_records_total", "touchpoint_produced_records_total",
          "touchpoint_dead_lettered_records_total", "touchpoint_batch_processing_seconds",
          "touchpoint_batch_size_records", "touchpoint_consumer_lag_records", "touchpoint_db_pool_connections",
          "touchpoint_batch_failures_total", "touchpoint_http_requests_total")
BUSINESS = {"ingestion": ("touchpoint_duplicate_events_total",),
            "identity": ("touchpoint_customers_created_total", "touchpoint_customers_merged_total"),
            "timeline": ("touchpoint_timeline_entries_total",)}


def samples(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


async def test_every_service_exposes_its_metrics(stack):
    tenant = "metered"
    events = generate(tenant, people=20, events=120, seed=4)
    inbound = stack.topic("touchpoint.inbound.v1")
    poison = (b"p", b"{broken", kafka_io.binary_record(events[0])[2])
    await kafka_io.publish(stack.bootstrap_servers, inbound, [kafka_io.binary_record(e) for e in events] + [poison])
    await kafka_io.publish(stack.bootstrap_servers, inbound, [kafka_io.binary_record(events[0])])  # a duplicate

    async def stored():
        return await checks.timeline_count(stack, tenant) >= len(events)

    await kafka_io.wait_for(stored, timeout=60, what="rows")
    async with httpx.AsyncClient(timeout=10) as client:
        for name in ("ingestion", "identity", "timeline"):
            proc = stack.processes[name]
            assert (await client.get(proc.url + "/healthz")).status_code == 200
            ready = await client.get(proc.url + "/readyz")
            assert ready.status_code == 200 and ready.json()["checks"] == {"database": True, "kafka": True}

            async def scraped():
                text = (await client.get(proc.url + "/metrics")).text
                got = samples(text)
                return text if any(k.startswith("touchpoint_consumed_records_total") and v > 0 for k, v in got.items()) else None

            text = await kafka_io.wait_for(scraped, timeout=20, what=f"{name} metrics")
            for metric in COMMON + BUSINESS[name]:
                assert f"# TYPE {metric}" in text or f"# TYPE {metric.removesuffix('_total')} counter" in text, (name, metric)
            got = samples(text)
            print(f"\n{name}: " + ", ".join(f"{k}={v:g}" for k, v in got.items()
                                           if k.startswith(("touchpoint_consumed", "touchpoint_dead", "touchpoint_customers",
                                                            "touchpoint_timeline_entries", "touchpoint_duplicate"))))
    ingestion = samples((await httpx.AsyncClient().get(stack.processes["ingestion"].url + "/metrics")).text)
    assert ingestion[f'touchpoint_dead_lettered_records_total{{reason="invalid_json",topic="{inbound}"}}'] == 1
    assert ingestion["touchpoint_duplicate_events_total"] >= 1


async def test_an_idle_keep_alive_connection_stays_open_longer_than_clients_keep_theirs(stack):
    """HTTP clients drop idle pooled connections after a few seconds (httpx: 5 s). A server closing idle ones
    as early races a client that reuses one at that moment, and the request fails with a reset. So a request
    on a connection idle for longer than that is still answered."""
    url = httpx.URL(stack.processes["ingestion"].url)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    request = f"GET /healthz HTTP/1.1\r\nHost: {url.host}\r\n\r\n".encode()

    async def exchange() -> bytes:
        writer.write(request)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
        await reader.readexactly(length)
        return head.split(b"\r\n", 1)[0]

    try:
        assert await exchange() == b"HTTP/1.1 200 OK"
        await asyncio.sleep(7)
        assert await exchange() == b"HTTP/1.1 200 OK", "the idle connection was closed"
    finally:
        writer.close()


async def wait_ready(client: httpx.AsyncClient, url: str, want: int, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if (await client.get(url + "/readyz", timeout=5)).status_code == want:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.25)
    raise AssertionError(f"/readyz did not answer {want} within {timeout}s")




async def test_readiness_follows_kafka_and_postgres():
    """Dedicated Kafka and PostgreSQL, so that stopping them disturbs no other test."""
    infra = LocalInfra("readiness", 29192, 25532).start_all()
    try:
        stack = await new_stack(infra.bootstrap_servers, infra.admin_dsn)
        proc = stack.start("timeline")
        await proc.wait_ready()
        timings = {}
        async with httpx.AsyncClient() as client:
            for dependency in ("kafka", "postgres"):
                infra.run(dependency, "stop")
                timings[f"{dependency} down -> 503"] = await wait_ready(client, proc.url, 503, 30)
                assert (await client.get(proc.url + "/healthz")).status_code == 200, "liveness has no dependencies"
                infra.run(dependency, "start")
                timings[f"{dependency} up -> 200"] = await wait_ready(client, proc.url, 200, 60)
        stack.stop_all()
        print("\nreadiness: " + ", ".join(f"{k} in {v:.1f}s" for k, v in timings.items()))
    finally:
        infra.stop_all()
