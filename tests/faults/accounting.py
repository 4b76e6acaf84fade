"""The accounting harness: uniquely identified events at a steady rate, then distinct ids counted everywhere.

The load behaves like an upstream provider: it posts each event to ``POST /v1/events`` and, when the answer is
not 2xx (503/429 while the system cannot take it, or a broken connection), sends the same event again after
the ``Retry-After`` it was given. A customer's next event is sent only once the previous one was acknowledged,
so the acknowledgement order per customer is the order the timeline must keep.

"Lost" = acknowledged but not on the timeline. "Duplicate" = more than one timeline row for one event.
"Out of order" = a customer whose rows, in insertion order, are not in acknowledgement order.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone

import httpx
import orjson

from tests.support import kafka_io
from tests.support.stack import Stack

STRUCTURED = {"Content-Type": "application/cloudevents+json"}


def event_id(run: str, customer: int, n: int) -> str:
    return f"{run}-{customer:04d}-{n:06d}"


def sequence_of(event: str) -> tuple[int, int]:
    _, customer, n = event.rsplit("-", 2)
    return int(customer), int(n)


@dataclass
class Load:
    """Open-loop load with provider-style retries. ``run`` until ``stop`` is set; then every lane finishes its
    current event (retrying until acknowledged)."""

    url: str
    api_key: str
    tenant: str
    run_id: str
    customers: int = 100
    rate: float = 50.0
    acked: list[str] = field(default_factory=list)
    answers: Counter = field(default_factory=Counter)
    acked_at: dict[str, float] = field(default_factory=dict)
    two_xx_while_down: int = 0
    _next: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    _busy: set[int] = field(default_factory=set)
    broker_down: bool = False

    def body(self, customer: int, n: int) -> bytes:
        return orjson.dumps({
            "specversion": "1.0", "id": event_id(self.run_id, customer, n), "source": "faults",
            "type": "touchpoint.interaction.occurred.v1", "tenant": self.tenant,
            "data": {"channel": "email", "direction": "inbound",
                     "identifiers": [{"type": "email", "value": f"c{customer}.{self.tenant}@example.org"}],
                     "occurred_at": datetime.now(timezone.utc).isoformat(), "subject": f"message {n}",
                     "text": "fault accounting " * 40},
        })

    async def run(self, stop: asyncio.Event) -> None:
        headers = {**STRUCTURED, "Authorization": f"Bearer {self.api_key}"}
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
        async with httpx.AsyncClient(base_url=self.url, timeout=20, limits=limits) as client:
            lanes: set[asyncio.Task] = set()
            started = time.monotonic()
            tick = 0
            while not stop.is_set():
                customer = tick % self.customers
                tick += 1
                delay = started + tick / self.rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                if customer in self._busy:
                    continue  # that customer's previous event is still being retried: keep its order
                self._busy.add(customer)
                task = asyncio.create_task(self._send(client, headers, customer))
                lanes.add(task)
                task.add_done_callback(lanes.discard)
            await asyncio.gather(*lanes)

    async def _send(self, client: httpx.AsyncClient, headers: dict, customer: int) -> None:
        n = self._next[customer]
        body = self.body(customer, n)
        try:
            while True:
                down_when_sent = self.broker_down
                try:
                    resp = await client.post("/v1/events", content=body, headers=headers)
                    self.answers[resp.status_code] += 1
                    if resp.status_code == 202:
                        if down_when_sent and self.broker_down:
                            self.two_xx_while_down += 1
                        break
                    wait = float(resp.headers.get("retry-after", "1"))
                except httpx.HTTPError as exc:
                    self.answers[type(exc).__name__] += 1
                    wait = 1.0
                await asyncio.sleep(min(wait, 2.0))
            eid = event_id(self.run_id, customer, n)
            self.acked.append(eid)
            self.acked_at[eid] = time.monotonic()
            self._next[customer] = n + 1
        finally:
            self._busy.discard(customer)


@dataclass
class Tally:
    acked: int
    kafka_records: int  # inbound-topic records of acknowledged events (a retried publish may add one)
    kafka_distinct: int
    rows: int
    rows_distinct: int
    lost: int
    duplicates: int
    out_of_order: int
    downstream_distinct: int
    downstream_repeats: int

    def line(self) -> str:
        return (f"acked {self.acked}; inbound topic {self.kafka_records} records / {self.kafka_distinct} distinct; "
                f"timeline rows {self.rows} / {self.rows_distinct} distinct; lost {self.lost}, duplicates "
                f"{self.duplicates}, out of order {self.out_of_order}; downstream {self.downstream_distinct} "
                f"distinct (+{self.downstream_repeats} redelivered records)")


async def stored_ids(stack: Stack, tenant: str) -> list:
    return await stack.fetch("SELECT event_id, customer_id, seq FROM timeline.entries WHERE tenant = $1 "
                             "AND kind = 'interaction' ORDER BY seq", tenant)


async def wait_until_stored(stack: Stack, tenant: str, acked: list[str], timeout: float) -> float:
    """Seconds until every acknowledged id is on the timeline (raises after ``timeout``)."""
    started = time.monotonic()
    wanted = set(acked)

    async def caught_up() -> bool:
        rows = await stored_ids(stack, tenant)
        return wanted <= {r["event_id"] for r in rows}

    await kafka_io.wait_for(caught_up, timeout=timeout, interval=0.5, what=f"{len(wanted)} acknowledged events stored")
    return time.monotonic() - started


async def tally(stack: Stack, tenant: str, acked: list[str], with_kafka: bool = True) -> Tally:
    rows = await stored_ids(stack, tenant)
    per_event = Counter(r["event_id"] for r in rows)
    wanted = set(acked)
    ack_rank = {e: i for i, e in enumerate(acked)}
    by_customer: dict[int, list[int]] = defaultdict(list)
    for r in rows:
        if r["event_id"] in ack_rank:
            by_customer[sequence_of(r["event_id"])[0]].append(ack_rank[r["event_id"]])
    out_of_order = sum(1 for ranks in by_customer.values() if ranks != sorted(ranks))
    kafka_records = kafka_distinct = 0
    downstream_distinct = downstream_repeats = 0
    if with_kafka:
        inbound = await kafka_io.read_all(stack.bootstrap_servers, stack.topic("touchpoint.inbound.v1"))
        ids = Counter(e for e in (dict(r.headers).get("ce_id", b"").decode() for r in inbound) if e in wanted)
        kafka_records, kafka_distinct = sum(ids.values()), len(ids)  # of the acknowledged events
        records = await kafka_io.read_all(stack.bootstrap_servers, stack.topic("touchpoint.timeline.v1"))
        down = Counter(dict(r.headers)["ce_id"] for r in records
                       if dict(r.headers).get("ce_tenant") == tenant.encode()
                       and dict(r.headers).get("ce_type", b"").endswith(b"entry_added.v1"))
        downstream_distinct, downstream_repeats = len(down), sum(down.values()) - len(down)
    return Tally(
        acked=len(wanted), kafka_records=kafka_records, kafka_distinct=kafka_distinct, rows=len(rows),
        rows_distinct=len(per_event), lost=len(wanted - set(per_event)),
        duplicates=sum(n - 1 for n in per_event.values() if n > 1), out_of_order=out_of_order,
        downstream_distinct=downstream_distinct, downstream_repeats=downstream_repeats,
    )
