"""The load generator: its own OS process, open loop at a fixed rate.

Event ``n`` of a run is *intended* at ``t0 + n / rate`` (wall clock, shared by every process on the machine)
and carries that time in its id. The generator sends whatever is due, then sleeps until the next event is due;
when it falls behind (CPU starvation, a full producer buffer) it sends the backlog at once and reports how far
behind it was, but the intended times never move, so observers charge any delay to the system. It wakes every
``TICK_S`` (5 ms), so an event may leave up to 5 ms after its intended time even on an idle machine.

Commands arrive over a pipe from the benchmark (``Generator`` is the parent's handle); each answers a dict.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import time
import zlib
from typing import Any

from bench import events
from shared.kafka import partition_for

# The services' producer settings (shared/kafka.py); the reference hops use them too.
PRODUCER_CONFIG = dict(enable_idempotence=True, acks="all", linger_ms=0, max_batch_size=512 * 1024,
                       max_request_size=4 * 1024 * 1024, request_timeout_ms=30_000, partitioner=partition_for)
# The generator wakes every TICK_S and sends everything due, without linger: the same batching a producer with
# linger_ms=5 does, at a fraction of the CPU (aiokafka spends ~150 µs per wake-up; waking per event would cost
# 0.16 cores at 1k/s, CPU taken from the system under test). Events keep their own intended times, so the up to
# 5 ms an event waits for its tick counts as latency.
TICK_S = 0.005
GENERATOR_PRODUCER_CONFIG = dict(PRODUCER_CONFIG, linger_ms=0)


class Generator:
    """Parent-side handle of the generator process."""

    def __init__(self, bootstrap: str) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_main, args=(child, bootstrap), name="bench-loadgen", daemon=True)
        self.process.start()
        child.close()
        assert self.call({"cmd": "ping"})["ok"]

    @property
    def pid(self) -> int:
        return self.process.pid

    def call(self, command: dict) -> dict:
        self.conn.send(command)
        answer = self.conn.recv()
        if "error" in answer:
            raise RuntimeError(f"load generator: {answer['error']}")
        return answer

    async def acall(self, command: dict) -> dict:
        """The same, without blocking the caller's event loop while the generator runs."""
        return await asyncio.to_thread(self.call, command)

    def close(self) -> None:
        try:
            self.conn.send({"cmd": "stop"})
            self.process.join(10)
        except (OSError, EOFError):
            pass
        if self.process.is_alive():
            self.process.terminate()


def _main(conn, bootstrap: str) -> None:
    import logging  # noqa: PLC0415

    # aiokafka logs "Topic ... not found in cluster metadata" as an error for a stack's topics before they appear
    # and after they were deleted; the generator reports real failures itself (errors in every answer).
    logging.getLogger("aiokafka.cluster").setLevel(logging.CRITICAL)
    asyncio.run(_serve(conn, bootstrap))


async def _serve(conn, bootstrap: str) -> None:
    from aiokafka import AIOKafkaProducer  # noqa: PLC0415 - only in the child

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, client_id="bench-loadgen", **GENERATOR_PRODUCER_CONFIG)
    await producer.start()
    try:
        while True:
            command = await asyncio.to_thread(conn.recv)
            cmd = command["cmd"]
            try:
                if cmd == "stop":
                    return
                if cmd == "ping":
                    answer = {"ok": True}
                elif cmd == "kafka":
                    answer = await _run_kafka(producer, **{k: v for k, v in command.items() if k != "cmd"})
                elif cmd == "http":
                    answer = await _run_http(**{k: v for k, v in command.items() if k != "cmd"})
                elif cmd == "replay":
                    answer = await _replay(producer, command["topic"], command["events"])
                else:
                    answer = {"error": f"unknown command {cmd!r}"}
            except Exception as exc:  # noqa: BLE001 - report to the parent instead of dying silently
                answer = {"error": f"{type(exc).__name__}: {exc}"}
            conn.send(answer)
    finally:
        await producer.stop()


class _Behind:
    """How far behind its schedule the generator was when it sent each burst."""

    def __init__(self) -> None:
        self.max_ms = 0.0
        self.over_10ms = 0
        self.bursts = 0

    def note(self, behind_ns: int) -> None:
        ms = behind_ns / 1e6
        self.bursts += 1
        self.max_ms = max(self.max_ms, ms)
        if ms > 10:
            self.over_10ms += 1

    def as_dict(self) -> dict:
        return {"max_behind_ms": round(self.max_ms, 1), "bursts": self.bursts,
                "bursts_over_10ms": self.over_10ms}


async def _run_kafka(producer, topic: str, stream: int, rate: float, seconds: float, t0_ns: int) -> dict[str, Any]:
    total = int(rate * seconds)
    step_ns = 1e9 / rate
    behind = _Behind()
    partitions = sorted(await producer.partitions_for(topic))
    futures = []
    errors = 0
    n = 0
    early = (t0_ns - time.time_ns()) / 1e9
    if early > 0:
        await asyncio.sleep(early)
    while n < total:
        now = time.time_ns()
        due = min(total, int((now - t0_ns) / step_ns) + 1)
        if due > n:
            behind.note(now - int(t0_ns + n * step_ns))
        while n < due:
            intended = int(t0_ns + n * step_ns)
            key, value, headers = events.kafka_record(stream, n, intended)
            part = partitions[zlib.crc32(key) % len(partitions)]  # keyed, without aiokafka's pure-Python murmur2
            futures.append(await producer.send(topic, value=value, key=key, headers=headers, partition=part))
            n += 1
            if len(futures) >= 20_000:  # keep only what is not acknowledged yet (a 10-minute soak sends ~1M)
                errors += sum(1 for f in futures if f.done() and f.exception() is not None)
                futures = [f for f in futures if not f.done()]
        wait = (t0_ns + n * step_ns - time.time_ns()) / 1e9
        if wait > 0:
            await asyncio.sleep(max(wait, TICK_S))
    last_send = time.time_ns()
    results = await asyncio.gather(*futures, return_exceptions=True)
    errors += sum(1 for r in results if isinstance(r, BaseException))
    return {"sent": total - errors, "errors": errors, "offered_rate": rate,
            "achieved_rate": round(total / max(1e-9, (last_send - t0_ns) / 1e9), 1),
            "acked_after_s": round((time.time_ns() - t0_ns) / 1e9, 2), **behind.as_dict()}


async def _replay(producer, topic: str, keys: list[tuple[int, int, int]]) -> dict[str, Any]:
    futures = []
    for stream, n, intended in keys:
        key, value, headers = events.kafka_record(stream, n, intended)
        futures.append(await producer.send(topic, value=value, key=key, headers=headers))
    results = await asyncio.gather(*futures, return_exceptions=True)
    errors = sum(1 for r in results if isinstance(r, BaseException))
    return {"sent": len(keys) - errors, "errors": errors}


async def _run_http(url: str, api_key: str, stream: int, rate: float, seconds: float, t0_ns: int,
                    batch: int = 100, max_in_flight: int = 64) -> dict[str, Any]:
    """POST batches of ``batch`` events; every event of a batch is intended at the batch's scheduled time."""
    import httpx  # noqa: PLC0415
    import orjson  # noqa: PLC0415

    total = int(rate * seconds)
    batches = (total + batch - 1) // batch
    batch_ns = 1e9 * batch / rate
    behind = _Behind()
    statuses: dict[str, int] = {}
    accepted = 0
    request_ms: list[float] = []
    gate = asyncio.Semaphore(max_in_flight)
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/cloudevents-batch+json"}

    async def post(client: httpx.AsyncClient, k: int, intended: int) -> None:
        nonlocal accepted
        first = k * batch
        body = orjson.dumps([events.structured(stream, n, intended) for n in range(first, min(total, first + batch))])
        async with gate:
            started = time.perf_counter()
            try:
                response = await client.post(url, content=body, headers=headers)
                status = str(response.status_code)
                if response.status_code in (202, 207):
                    accepted += len(response.json()["accepted"])
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            request_ms.append((time.perf_counter() - started) * 1000)
        statuses[status] = statuses.get(status, 0) + 1

    limits = httpx.Limits(max_connections=max_in_flight, max_keepalive_connections=max_in_flight)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        tasks = []
        for k in range(batches):
            intended = int(t0_ns + k * batch_ns)
            wait = (intended - time.time_ns()) / 1e9
            if wait > 0:
                await asyncio.sleep(wait)
            behind.note(time.time_ns() - intended)
            tasks.append(asyncio.create_task(post(client, k, intended)))
        last_send = time.time_ns()
        await asyncio.gather(*tasks)
    request_ms.sort()
    pick = lambda q: round(request_ms[min(len(request_ms) - 1, int(q * len(request_ms)))], 1) if request_ms else None
    return {"sent": accepted, "errors": total - accepted, "offered_rate": rate,
            "achieved_rate": round(total / max(1e-9, (last_send - t0_ns) / 1e9 + batch_ns / 1e9), 1),
            "statuses": statuses, "batch": batch, "request_ms_p50": pick(0.5), "request_ms_p99": pick(0.99),
            **behind.as_dict()}
