"""Overload at twice the capacity: ingestion acknowledges only what Kafka holds (or sheds with 429/503), every
service's memory stays flat while the backlog grows, the backlog drains afterwards, nothing acknowledged is
lost, and no consumer is evicted from its group for being slow.

The capacity C is measured first, in the same run (the rate a backlog drains at: events stored on the timeline
per second with nothing else offered), then 2 C is offered open loop over HTTP in batches of 100 for the overload
window (20 s; 2 minutes with ``TOUCHPOINT_TEST_SCALE=full``). Memory: each service's resident set size sampled
every second; "flat" = the last quarter's peak is within 15 % (or 40 MB) of the second quarter's, while the
backlog kept growing.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import httpx
import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from tests.support import kafka_io
from tests.support.scale import scaled
from tests.support.stack import new_stack

pytestmark = pytest.mark.e2e
TENANT = "overload"
SERVICES = ("ingestion", "identity", "timeline")
BATCH = 100
OVERLOAD_SECONDS = scaled(20, 120)
CAPACITY_SECONDS = scaled(6, 15)
BATCH_HEADERS = {"Content-Type": "application/cloudevents-batch+json"}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise LookupError(pid)


def batch(run: str, first: int) -> bytes:
    return orjson.dumps([{
        "specversion": "1.0", "id": f"{run}-{n}", "source": "overload", "type": "touchpoint.interaction.occurred.v1",
        "data": {"channel": "chat", "direction": "inbound", "occurred_at": "2026-11-24T10:00:00Z",
                 "identifiers": [{"type": "email", "value": f"p{n % 5000}@example.org"}],
                 "subject": "where is my order", "text": "overload " * 60}} for n in range(first, first + BATCH)])


class Offer:
    """Open-loop HTTP load: batch ``k`` is due at ``start + k * BATCH / rate``; a batch answered 2xx counts as
    acknowledged, any other answer (or a broken connection) is counted and the batch is not retried."""

    def __init__(self, client: httpx.AsyncClient, auth: dict, run: str) -> None:
        self.client, self.auth, self.run = client, auth, run
        self.acked = 0
        self.acked_batches: list[int] = []
        self.statuses: Counter = Counter()
        self.next_id = 0
        self.in_flight: set[asyncio.Task] = set()

    async def _send(self, first: int) -> None:
        try:
            resp = await self.client.post("/v1/events", content=batch(self.run, first),
                                          headers={**self.auth, **BATCH_HEADERS})
            self.statuses[resp.status_code] += 1
            if resp.status_code == 202:
                self.acked += BATCH
                self.acked_batches.append(first)
        except httpx.HTTPError as exc:
            self.statuses[type(exc).__name__] += 1

    async def at(self, rate: float, seconds: float, max_in_flight: int = 64) -> float:
        """Offer ``rate`` events/s for ``seconds``; returns the rate actually offered."""
        start, sent = time.monotonic(), 0
        while (now := time.monotonic()) < start + seconds:
            due = int((now - start) * rate / BATCH) + 1
            while sent < due and len(self.in_flight) < max_in_flight:
                task = asyncio.create_task(self._send(self.next_id))
                self.in_flight.add(task)
                task.add_done_callback(self.in_flight.discard)
                self.next_id += BATCH
                sent += 1
            await asyncio.sleep(0.01)
        await asyncio.gather(*self.in_flight)
        return sent * BATCH / seconds


async def member_ids(bootstrap: str, groups: list[str]) -> dict[str, set[str]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        out = {}
        for group in groups:  # one at a time: aiokafka cannot decode Kafka 4's answer for several
            described = await admin.describe_consumer_groups([group])
            out[group] = {m[0] for response in described for g in response.groups for m in g[5]}
        return out
    finally:
        await admin.close()


async def test_twice_the_capacity_keeps_memory_flat_loses_nothing_and_drains(infra):
    stack = await new_stack(infra.bootstrap_servers, infra.admin_dsn)
    procs = {s: stack.start(s) for s in SERVICES}
    groups = [stack.prefix + f"touchpoint-{s}" for s in SERVICES]
    try:
        for proc in procs.values():
            await proc.wait_ready()
        key = await stack.api_key(TENANT, ["ingest"])
        auth = {"Authorization": f"Bearer {key}"}

        async def stored() -> int:
            return await stack.fetchval("SELECT count(*) FROM timeline.entries WHERE tenant = $1", TENANT)

        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(base_url=procs["ingestion"].url, timeout=30, limits=limits) as client:
            offer = Offer(client, auth, "cap")
            # Capacity: a backlog offered as fast as ingestion takes it, then C = the rate it drains at (rows stored
            # per second with nothing else offered); then let it drain.
            await offer.at(20_000, CAPACITY_SECONDS)
            rows_at, t_at = await stored(), time.monotonic()
            await asyncio.sleep(CAPACITY_SECONDS)
            capacity = (await stored() - rows_at) / (time.monotonic() - t_at)

            async def idle():
                return await stored() >= offer.acked or None

            await kafka_io.wait_for(idle, timeout=180, interval=1, what="the capacity backlog to drain")
            members_before = await member_ids(stack.bootstrap_servers, groups)

            # Overload: 2 C for the window, memory sampled every second.
            rss: dict[str, list[float]] = {s: [] for s in SERVICES}

            async def sample(stop: asyncio.Event) -> None:
                while not stop.is_set():
                    for s, proc in procs.items():
                        rss[s].append(rss_mb(proc.popen.pid))
                    await asyncio.sleep(1)

            stop = asyncio.Event()
            sampler = asyncio.create_task(sample(stop))
            backlog_start = offer.acked - await stored()
            offered = await offer.at(2 * capacity, OVERLOAD_SECONDS)
            backlog_end = offer.acked - await stored()
            stop.set()
            await sampler
        acked = offer.acked
        drain_started = time.monotonic()

        async def drained():
            return await stored() >= acked or None

        await kafka_io.wait_for(drained, timeout=max(120, 3 * backlog_end / max(capacity, 1)), interval=1,
                                what="the backlog to drain")
        drain_s = time.monotonic() - drain_started
        await asyncio.sleep(2)
        rows = await stored()
        distinct = await stack.fetchval("SELECT count(DISTINCT event_id) FROM timeline.entries WHERE tenant = $1",
                                        TENANT)
        present = {r["event_id"] for r in await stack.fetch("SELECT event_id FROM timeline.entries WHERE tenant = $1",
                                                            TENANT)}
        lost = sum(1 for first in offer.acked_batches for n in range(first, first + BATCH)
                   if f"{offer.run}-{n}" not in present)
        members_after = await member_ids(stack.bootstrap_servers, groups)
        alive = {s: proc.popen.poll() is None for s, proc in procs.items()}
    finally:
        stack.stop_all()

    quarter = max(1, len(rss["ingestion"]) // 4)
    growth = {s: (max(v[-quarter:]) - max(v[quarter:2 * quarter])) for s, v in rss.items()}
    flat = {s: growth[s] <= max(0.15 * max(v[quarter:2 * quarter]), 40) for s, v in rss.items()}
    print(f"\noverload: capacity C = {capacity:.0f} events/s; offered {offered:.0f}/s (2 C) for {OVERLOAD_SECONDS} s; "
          f"answers {dict(offer.statuses)}; backlog {backlog_start} -> {backlog_end} events; "
          + "; ".join(f"{s} RSS {min(v):.0f}-{max(v):.0f} MB (2nd quarter peak {max(v[quarter:2 * quarter]):.0f}, "
                      f"last quarter peak {max(v[-quarter:]):.0f})" for s, v in rss.items())
          + f"; drained in {drain_s:.1f} s; acknowledged {acked}, stored {rows} ({distinct} distinct), "
          f"lost {lost}, duplicates {rows - distinct}; consumer members unchanged: "
          f"{members_before == members_after}")
    assert offered >= 1.8 * capacity, "the load generator offered twice the capacity"
    assert backlog_end > backlog_start, "the window really overloaded the pipeline (the backlog grew)"
    assert set(offer.statuses) <= {202, 429, 503}, f"only acknowledgements or shedding: {offer.statuses}"
    assert lost == 0 and rows == distinct, "nothing acknowledged lost, nothing stored twice"
    assert all(alive.values()), alive
    assert all(flat.values()), f"memory kept growing under overload: {growth}"
    assert members_before == members_after and all(members_after.values()), \
        f"no consumer evicted or rejoined: {members_before} -> {members_after}"
