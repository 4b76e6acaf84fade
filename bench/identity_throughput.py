"""Identity resolution alone: how many events per second one identity process resolves, beside a raw
consume → produce pipe measured in the same run on the same input.

    .venv/bin/python -m bench.identity_throughput              # 100,000 events over 30,000 people
    .venv/bin/python -m bench.identity_throughput --quick      # harness check

On a fresh stack on the benchmark's own Kafka and PostgreSQL:
1. The identity service (one process, the rules in force: limits, blocked values, review types) starts on the
   empty ``touchpoint.ingestion.interactions.v1`` and is ready once its consumers (``--consumers``, else the
   service's default) hold their partitions.
2. ``--events`` ``touchpoint.interaction.ingested.v1`` records (binary mode, what ingestion publishes) are then
   written to the topic as fast as the producer goes. Realistic overlap: each person has a user id, an e-mail
   address and a phone number; their first event carries all three, later ones one or two of them (so most events
   resolve to a known customer, some link a new identifier, and one person's events sit on different
   partitions); events are shuffled. Measured from the first write until the consumer group's lag is 0 (every
   event resolved, its result published and its offset committed): the service resolves while the rest is being
   written, and the writing shares the CPU with it.
3. The raw pipe (``bench.refpipe``: aiokafka getmany → produce with the same producer settings → commit, no
   logic, no database) is measured the same way in a group of its own, on a topic of its own.
Printed: events/s of both and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone

import orjson
from aiokafka import AIOKafkaProducer

from bench import harness, report
from bench.loadgen import PRODUCER_CONFIG
from bench.profile import Profiler
from shared import topics
from shared.contracts import types
from tests.support import kafka_io

TENANT = "bench-identity"
BASE = datetime(2026, 1, 1, tzinfo=timezone.utc)


def events(count: int, people: int, seed: int = 3) -> list[tuple[bytes, bytes, list]]:
    rng = random.Random(seed)
    out = []
    for n in range(count):
        person = n % people if n < people else rng.randrange(people)
        ids = [{"type": "user_id", "value": f"u-{person}"}, {"type": "email", "value": f"p{person}@mail.example.net"},
               {"type": "phone", "value": f"+4930{person:08d}"}]
        chosen = ids if n < people else rng.sample(ids, rng.randint(1, 2))
        at = (BASE + timedelta(seconds=n)).isoformat()
        event_id = str(uuid.UUID(int=rng.getrandbits(128)))
        data = {"channel": "chat", "direction": "inbound", "identifiers": chosen, "source": "bench",
                "event_id": event_id, "occurred_at": at, "received_at": at, "subject": "bench", "tags": []}
        headers = [("ce_specversion", b"1.0"), ("ce_id", event_id.encode()), ("ce_source", b"touchpoint/ingestion"),
                   ("ce_type", types.INTERACTION_INGESTED.encode()), ("ce_tenant", TENANT.encode()),
                   ("content-type", b"application/json")]
        out.append((chosen[0]["value"].encode(), orjson.dumps(data), headers))
    rng.shuffle(out)
    return out


async def preload(bootstrap: str, topic: str, records: list) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **PRODUCER_CONFIG)
    await producer.start()
    try:
        futures = [await producer.send(topic, value=v, key=k, headers=h) for k, v, h in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def drain_seconds(bootstrap: str, group: str, topic: str, started: float, timeout: float) -> float:
    """Seconds from ``started`` until ``group`` has committed everything in ``topic``."""
    while time.monotonic() - started < timeout:
        if await kafka_io.lag(bootstrap, group, topic) == 0:
            return time.monotonic() - started
        await asyncio.sleep(0.25)
    raise TimeoutError(f"{group} did not drain {topic} in {timeout:.0f}s")


async def run(args: argparse.Namespace) -> dict:
    infra = harness.start_infra()
    await harness.configure_pg_statements(infra, args.db_stats)
    stack = await harness.fresh_stack(infra)
    records = events(args.events, args.people)
    source = stack.topic(topics.INGESTED.name)
    try:
        # Started on the empty topic: it is ready once every consumer it runs holds its partitions (a consumer
        # that joins later would take partitions away from a batch in flight, and events resolved before the
        # clock starts would count as free).
        env = {"TOUCHPOINT_RESOLVE_CONSUMERS": str(args.consumers)} if args.consumers else {}
        proc = harness.start_service(stack, "identity", **env)
        await harness.wait_ready([proc], timeout=120)
        await harness.reset_db_stats(infra, stack, args.db_stats)
        profiler = Profiler({"identity": proc.popen.pid}, args.profile_seconds) if args.profile_seconds else None
        if profiler:
            await profiler.start()
        consumers = await kafka_io.wait_for(
            lambda: kafka_io.group_members(stack.bootstrap_servers, stack.prefix + "touchpoint-identity", source),
            timeout=60, what="identity's consumers assigned")
        started = time.monotonic()
        await preload(stack.bootstrap_servers, source, records)
        loaded_s = time.monotonic() - started
        identity_s = await drain_seconds(stack.bootstrap_servers, stack.prefix + "touchpoint-identity", source,
                                         started, args.timeout)
        if profiler:
            print(await profiler.finish())
        if args.db_stats:
            for row in (await harness.db_stats(infra, stack, True))["statements"]:
                print(f"{row['total_ms']:>10} ms {row['calls']:>7} calls  {row['query'][:150]}")
        proc.terminate()
        customers = await stack.fetchval("SELECT count(*) FROM identity.customers WHERE merged_into IS NULL")
        merges = await stack.fetchval("SELECT count(*) FROM identity.merges")
        resolved = await stack.fetchval("SELECT count(*) FROM identity.processed_events")
        # The raw pipe is measured the same way, on a topic of its own.
        group, piped = stack.prefix + "bench-refpipe", stack.prefix + "bench.identity.pipe"
        await kafka_io.create_topic(stack.bootstrap_servers, piped, topics.INGESTED.partitions)
        pipe = subprocess.Popen([sys.executable, "-m", "bench.refpipe", "--bootstrap", stack.bootstrap_servers,
                                 # into a topic of the stack nothing reads here (topics are not auto-created)
                                 "--in", piped, "--out", stack.topic(topics.TIMELINE.name), "--group", group],
                                cwd=harness.ROOT)
        try:
            await kafka_io.wait_for(lambda: kafka_io.group_members(stack.bootstrap_servers, group, piped), timeout=60,
                                    what="the raw pipe's consumer assigned")
            started = time.monotonic()
            await preload(stack.bootstrap_servers, piped, records)
            pipe_s = await drain_seconds(stack.bootstrap_servers, group, piped, started, args.timeout)
        finally:
            pipe.terminate()
            pipe.wait(30)
    finally:
        stack.stop_all()
        await harness.drop_stack(infra, stack)
        if not args.keep_infra:
            infra.stop_all()
    identity_rate, pipe_rate = args.events / identity_s, args.events / pipe_s
    return {"benchmark": "identity_throughput", "quick": args.quick, "events": args.events, "people": args.people,
            "resolved": resolved, "customers": customers, "merges": merges,
            "identity": {"seconds": round(identity_s, 2), "events_per_s": round(identity_rate),
                         "written_in_s": round(loaded_s, 2), "consumers": consumers},
            "raw_pipe": {"seconds": round(pipe_s, 2), "events_per_s": round(pipe_rate)},
            "ratio": round(identity_rate / pipe_rate, 3), "target_events_per_s": 10_000,
            "git": harness.git_info(), "machine": harness.machine(), "at": datetime.now(timezone.utc).isoformat()}


def markdown(r: dict) -> str:
    consumers = r["identity"].get("consumers", "?")
    return "\n".join([
        f"{r['events']:,} ingested interactions of {r['people']:,} people (user id, e-mail, phone; first event all three,"
        f" later ones one or two), drained by one process; {r['at'][:16]}, commit {r['git'].get('commit', '?')[:9]}.",
        "",
        "| | seconds | events/s |",
        "|---|---|---|",
        f"| identity service (resolve, store, publish, commit) | {r['identity']['seconds']} | {r['identity']['events_per_s']:,} |",
        f"| raw pipe (consume → produce → commit) | {r['raw_pipe']['seconds']} | {r['raw_pipe']['events_per_s']:,} |",
        f"| ratio | | {r['ratio']} |",
        "",
        f"Resolved {r['resolved']:,} events into {r['customers']:,} customers ({r['merges']:,} merges) with "
        f"{consumers} consumer{'' if consumers == 1 else 's'} in the process; measured from the first event written (all"
        f" written after {r['identity'].get('written_in_s', '?')} s) until lag 0. Target: "
        f"{r['target_events_per_s']:,} events/s.",
    ])


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.identity_throughput")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--events", type=int, default=100_000)
    p.add_argument("--people", type=int, default=30_000)
    p.add_argument("--timeout", type=float, default=900)
    p.add_argument("--keep-infra", action="store_true", help="leave the benchmark's Kafka and PostgreSQL running")
    p.add_argument("--db-stats", action="store_true", help="print the statements that took the most server time")
    p.add_argument("--consumers", type=int, default=0,
                   help="group members in the identity process (default: the service's own default)")
    p.add_argument("--profile-seconds", type=float, default=0, help="py-spy the identity process for this long")
    args = p.parse_args()
    if args.quick:
        args.events, args.people = 10_000, 3_000
    result = asyncio.run(run(args))
    report.publish(result, "identity_throughput", markdown(result))


if __name__ == "__main__":
    main()
