"""Observers running in the benchmark's own process while load flows.

- :class:`RowObserver`: polls ``<table>`` for new rows by ``seq`` every ~20 ms and stamps each row with the
  wall-clock time of the poll that first saw it (the statement's snapshot was taken then, so the row had
  committed before that time). Resolution: one poll interval plus the query time (typically ≤ 25 ms);
  latencies are upper bounds by at most that much. Rows that commit out of ``seq`` order (gaps) are looked
  for again every ~200 ms for 10 s and stamped when found.
- :class:`DownstreamObserver`: reads the public output topic from the beginning with its own consumer (no
  group) and stamps each record when the fetch returned it.
- :class:`LagSampler`: committed offsets of the consumer groups vs the topics' end offsets, every 0.5 s.
- resident memory of every tracked process, every ``rss_interval`` seconds.

Latency = observation time − the intended send time carried in the event id (``bench.events``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from array import array

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from bench.events import parse_event_id
from bench.procstats import ProcessSet


async def wait_partitions(consumer: AIOKafkaConsumer, topic: str, timeout: float = 60) -> list[TopicPartition]:
    """The topic's partitions once metadata lists it and every partition has a leader (new topics take a
    moment to appear; a consumer that starts before that would see nothing)."""
    deadline = time.monotonic() + timeout
    while True:
        await consumer._client.force_metadata_update()  # noqa: SLF001 - metadata of an unsubscribed topic
        parts = sorted(consumer.partitions_for_topic(topic) or ())
        cluster = consumer._client.cluster  # noqa: SLF001
        if parts and all((cluster.leader_for_partition(TopicPartition(topic, p)) or -1) >= 0 for p in parts):
            return [TopicPartition(topic, p) for p in parts]
        if time.monotonic() > deadline:
            raise TimeoutError(f"topic {topic} has no metadata after {timeout}s")
        await asyncio.sleep(0.2)


def percentile(sorted_values, q: float):
    if not sorted_values:
        return None
    rank = math.ceil(q * len(sorted_values))  # nearest rank
    return sorted_values[min(len(sorted_values), max(1, rank)) - 1]


def latency_summary(values_ns) -> dict:
    """p50/p99/p99.9/max in milliseconds of latencies in nanoseconds."""
    s = sorted(values_ns)
    ms = lambda v: None if v is None else round(v / 1e6, 1)  # noqa: E731
    return {"n": len(s), "p50_ms": ms(percentile(s, 0.5)), "p99_ms": ms(percentile(s, 0.99)),
            "p999_ms": ms(percentile(s, 0.999)), "max_ms": ms(s[-1] if s else None)}


class _PerStream:
    def __init__(self) -> None:
        self.latency: dict[int, array] = {}
        self.count: dict[int, int] = {}

    def add(self, stream: int, latency_ns: int) -> None:
        lat = self.latency.get(stream)
        if lat is None:
            lat = self.latency[stream] = array("q")
            self.count[stream] = 0
        lat.append(latency_ns)
        self.count[stream] += 1

    def total(self) -> int:
        return sum(self.count.values())


class RowObserver:
    def __init__(self, dsn: str, table: str, interval: float = 0.02) -> None:
        self.dsn = dsn
        self.table = table
        self.interval = interval
        self.streams = _PerStream()
        self.max_seq = 0
        self.gaps: dict[int, int] = {}  # seq → when first missed (ns)
        self.late = 0
        self.polls = 0
        self.poll_ms_max = 0.0
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self.conn = await asyncpg.connect(self.dsn)
        # A generic plan for "seq > $1" assumes a third of the table matches and may scan it all; a custom plan
        # sees the actual bound and walks the seq index from there.
        await self.conn.execute("SET plan_cache_mode = force_custom_plan")
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.conn.close()

    def _ingest(self, rows, t_ns: int) -> None:
        for seq, eid in rows:
            parsed = parse_event_id(eid)
            if parsed is not None:
                self.streams.add(parsed[0], t_ns - parsed[2])

    async def _loop(self) -> None:
        query = f"SELECT seq, event_id FROM {self.table} WHERE seq > $1 ORDER BY seq LIMIT 20000"
        gap_query = f"SELECT seq, event_id FROM {self.table} WHERE seq = ANY($1::bigint[])"
        while True:
            t_ns = time.time_ns()
            rows = await self.conn.fetch(query, self.max_seq)
            self.polls += 1
            if rows:
                expected = self.max_seq + 1
                for seq, _ in rows:
                    if seq > expected and seq - expected < 100_000:
                        for missing in range(expected, seq):
                            self.gaps[missing] = t_ns
                    expected = seq + 1
                self.max_seq = rows[-1][0]
                self._ingest(rows, t_ns)
            if self.gaps and self.polls % 10 == 0:
                t_gap = time.time_ns()
                found = await self.conn.fetch(gap_query, list(self.gaps))
                for seq, _ in found:
                    self.gaps.pop(seq, None)
                self.late += len(found)
                self._ingest(found, t_gap)
                self.gaps = {s: t for s, t in self.gaps.items() if t_gap - t < 10_000_000_000}
            took = (time.time_ns() - t_ns) / 1e9
            self.poll_ms_max = max(self.poll_ms_max, took * 1000)
            await asyncio.sleep(max(0.001, self.interval - took))


class DownstreamObserver:
    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.streams = _PerStream()
        self.seen: dict[int, bytearray] = {}
        self.records = 0
        self.duplicates = 0
        self.foreign = 0
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self.consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                         fetch_max_wait_ms=50, client_id="bench-downstream")
        await self.consumer.start()
        parts = await wait_partitions(self.consumer, self.topic)
        self.consumer.assign(parts)
        # A brand-new topic: the broker may answer "not leader" for a moment; aiokafka retries, and logs each try.
        quiet = logging.getLogger("aiokafka.consumer.fetcher")
        level = quiet.level
        quiet.setLevel(logging.CRITICAL)
        try:
            await self.consumer.seek_to_beginning(*parts)
            for tp in parts:
                await self.consumer.position(tp)
        finally:
            quiet.setLevel(level)
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.consumer.stop()

    def distinct(self, stream: int | None = None) -> int:
        if stream is not None:
            return self.streams.count.get(stream, 0)
        return self.streams.total()

    @staticmethod
    def _event_id(record) -> str | None:
        for k, v in record.headers:
            if k == "ce_id" and v.startswith(b"bench-"):
                return v.decode()
        value = record.value or b""
        i = value.find(b'"event_id":"')
        if i < 0:
            return None
        i += 12
        return value[i:value.index(b'"', i)].decode()

    async def _loop(self) -> None:
        while True:
            batch = await self.consumer.getmany(timeout_ms=100, max_records=5000)
            t_ns = time.time_ns()
            for records in batch.values():
                for r in records:
                    self.records += 1
                    eid = self._event_id(r)
                    parsed = parse_event_id(eid) if eid else None
                    if parsed is None:
                        self.foreign += 1
                        continue
                    stream, n, intended = parsed
                    bits = self.seen.get(stream)
                    if bits is None:
                        bits = self.seen[stream] = bytearray()
                    if n >= len(bits):
                        bits.extend(bytes(n + 1 - len(bits) + 4096))
                    if bits[n]:
                        self.duplicates += 1
                        continue
                    bits[n] = 1
                    self.streams.add(stream, t_ns - intended)


class LagSampler:
    """Σ (end offset − committed offset) per consumer group, every ``interval`` seconds; also RSS samples."""

    def __init__(self, bootstrap: str, pairs: list[tuple[str, str]], procs: ProcessSet,
                 interval: float = 0.5, rss_interval: float = 1.0) -> None:
        self.bootstrap = bootstrap
        self.pairs = pairs
        self.procs = procs
        self.interval = interval
        self.rss_interval = rss_interval
        self.samples: list[tuple[float, dict[str, int]]] = []
        self.rss: list[tuple[float, dict[str, int]]] = []
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self.admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        self.consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await self.admin.start()
        await self.consumer.start()
        self.parts = {topic: await wait_partitions(self.consumer, topic) for _, topic in self.pairs}
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.consumer.stop()
        await self.admin.close()

    async def current(self) -> dict[str, int]:
        end = await self.consumer.end_offsets([tp for parts in self.parts.values() for tp in parts])
        lags = {}
        for group, topic in self.pairs:
            committed = await self.admin.list_consumer_group_offsets(group)
            lags[group] = sum(end[tp] - (committed[tp].offset if tp in committed and committed[tp].offset >= 0 else 0)
                              for tp in self.parts[topic])
        return lags

    async def _loop(self) -> None:
        last_rss = 0.0
        while True:
            started = time.time()
            try:
                self.samples.append((started, await self.current()))
            except Exception:  # noqa: BLE001 - a missed sample is not worth stopping the benchmark for
                pass
            if started - last_rss >= self.rss_interval:
                last_rss = started
                self.rss.append((started, await asyncio.to_thread(self.procs.sample_rss, started)))
            await asyncio.sleep(max(0.05, self.interval - (time.time() - started)))

    def window(self, start: float, end: float) -> list[tuple[float, dict[str, int]]]:
        return [(t, lags) for t, lags in self.samples if start <= t <= end]
