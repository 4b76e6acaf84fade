"""Faults under continuous load, counted by the accounting harness: nothing lost, nothing applied twice,
per-customer order kept, recovery without manual restarts.

One load runs through a sequence of phases; after each fault the harness waits until every event acknowledged
so far is on the timeline (the recovery time, at most 60 s) and checks the counts, then the next fault starts.
The services (ingestion, identity, timeline) reach Kafka and PostgreSQL through fault-injecting proxies.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Awaitable, Callable

import httpx
import orjson
import pytest

from tests.faults.accounting import Load, tally, wait_until_stored
from tests.faults.conftest import FULL, FaultInfra
from tests.support import kafka_io
from tests.support.stack import Stack, new_stack

pytestmark = pytest.mark.faults
SERVICES = ("ingestion", "identity", "timeline")
RECOVERY_LIMIT = 60.0


@dataclass
class Run:
    infra: FaultInfra
    stack: Stack
    load: Load
    report: list[str] = field(default_factory=list)

    async def shell(self, script: str, action: str) -> None:
        # In a thread: the proxies live on this event loop and must keep forwarding meanwhile.
        await asyncio.to_thread(self.infra.servers.run, script, action)

    async def readiness(self, service: str) -> bool:
        async with httpx.AsyncClient(timeout=5) as client:
            try:
                return (await client.get(self.stack.processes[service].url + "/readyz")).status_code == 200
            except httpx.HTTPError:
                return False

    async def seconds_until(self, service: str, ready: bool, limit: float) -> float:
        started = time.monotonic()
        while time.monotonic() - started < limit:
            if await self.readiness(service) == ready:
                return time.monotonic() - started
            await asyncio.sleep(0.5)
        raise AssertionError(f"{service} readiness did not become {ready} within {limit} s")


async def broker_kill(run: Run, down: float) -> str:
    await run.shell("kafka", "kill")
    await asyncio.sleep(down)
    await run.shell("kafka", "start")
    return f"broker kill -9, down {down:.0f} s"


async def broker_pause(run: Run, down: float) -> str:
    await run.shell("kafka", "pause")
    await asyncio.sleep(down)
    await run.shell("kafka", "resume")
    return f"broker SIGSTOP {down:.0f} s / SIGCONT"


async def postgres_crash(run: Run, down: float) -> str:
    await run.shell("postgres", "crash")
    await asyncio.sleep(down)
    await run.shell("postgres", "start")
    return f"PostgreSQL immediate stop, restarted after {down:.0f} s"


async def blackhole(run: Run, down: float, proxy_name: str) -> str:
    proxy = getattr(run.infra, proxy_name)
    proxy.set("blackhole")
    unhealthy = await run.seconds_until("identity", False, 10)
    await asyncio.sleep(max(0.0, down - unhealthy))
    proxy.set("pass")
    healthy = await run.seconds_until("identity", True, 60)
    what = "Kafka" if proxy_name == "kafka_proxy" else "PostgreSQL"
    return (f"{what} network blackhole {down:.0f} s (identity unready after {unhealthy:.1f} s, ready again "
            f"{healthy:.1f} s after)")


async def latency(run: Run, duration: float) -> str:
    run.infra.kafka_proxy.set("latency", 0.2)
    run.infra.pg_proxy.set("latency", 0.2)
    await asyncio.sleep(duration)
    run.infra.kafka_proxy.set("pass")
    run.infra.pg_proxy.set("pass")
    return f"200 ms latency on every Kafka and PostgreSQL chunk for {duration:.0f} s"


async def resets(run: Run, times: int) -> str:
    for _ in range(times):
        run.infra.kafka_proxy.set("reset")
        run.infra.pg_proxy.set("reset")
        await asyncio.sleep(0.5)
        run.infra.kafka_proxy.set("pass")
        run.infra.pg_proxy.set("pass")
        await asyncio.sleep(2)
    return f"TCP resets of every Kafka and PostgreSQL connection, {times}x"


async def kill_services(run: Run, rounds: int) -> str:
    for _ in range(rounds):
        for name in SERVICES:
            run.stack.processes[name].kill()
            await asyncio.sleep(0.5)
            run.stack.processes[name].start()
        for name in SERVICES:
            await run.stack.processes[name].wait_ready(90)
        await asyncio.sleep(3)
    return f"kill -9 of ingestion, identity and timeline, {rounds} round(s)"


async def sigterm_drain(run: Run, rounds: int) -> str:
    for _ in range(rounds):
        for name in SERVICES:
            await asyncio.to_thread(run.stack.processes[name].terminate)
            run.stack.processes[name].start()
            await run.stack.processes[name].wait_ready(90)
    return f"SIGTERM and restart of each service, {rounds} round(s)"


async def churn(run: Run, rounds: int) -> str:
    for n in range(rounds):
        extra = [run.stack.start(s, name=f"{s}-extra{n}", **run.infra.service_env(run.stack.database_url))
                 for s in ("identity", "timeline")]
        for proc in extra:
            await proc.wait_ready(90)
        await asyncio.sleep(8 if FULL else 4)
        for proc in extra:
            await asyncio.to_thread(proc.terminate)
            del run.stack.processes[proc.name]
    return f"rebalance churn: a second identity and timeline instance started and stopped, {rounds}x"


# Every topic the three services consume, and who consumes it.
POISONED = ("touchpoint.inbound.v1", "touchpoint.ingestion.interactions.v1", "touchpoint.identity.v1",
            "touchpoint.routing.v1", "touchpoint.consent.v1", "touchpoint.notification.v1", "touchpoint.feedback.v1")


def poison_records(n: int, tenant: str) -> list[tuple[bytes, bytes, list]]:
    """Undecodable JSON under valid CloudEvents headers, and records with no CloudEvents headers at all."""
    out = []
    for i in range(n):
        if i % 2:
            headers = [("ce_specversion", b"1.0"), ("ce_id", f"poison-{uuid.uuid4()}".encode()),
                       ("ce_source", b"faults"), ("ce_type", b"touchpoint.interaction.occurred.v1"),
                       ("ce_tenant", tenant.encode()), ("content-type", b"application/json")]
            out.append((f"poison-{i}".encode(), b'{"channel": "email", ', headers))
        else:
            out.append((f"poison-{i}".encode(), b"\xff\xfe not an event", []))
    return out


async def poison(run: Run, seconds: float) -> str:
    """1 % poison (of the events sent meanwhile) into every consumed topic, spread over ``seconds``."""
    per_topic = max(4, round(run.load.rate * seconds / 100))
    before = {t: len(await kafka_io.read_all(run.stack.bootstrap_servers, run.stack.topic(t) + ".dlq"))
              for t in POISONED}
    await asyncio.gather(*(kafka_io.publish(run.stack.bootstrap_servers, run.stack.topic(t),
                                            poison_records(per_topic, run.load.tenant), rate_per_s=per_topic / seconds)
                           for t in POISONED))
    acked_now = list(run.load.acked)
    unblocked = await wait_until_stored(run.stack, run.load.tenant, acked_now, timeout=30)
    parked = {}
    for t in POISONED:
        async def all_parked(topic: str = t):
            records = await kafka_io.read_all(run.stack.bootstrap_servers, run.stack.topic(topic) + ".dlq")
            return records if len(records) >= before[topic] + per_topic else None

        records = (await kafka_io.wait_for(all_parked, timeout=30, what=f"dead letters of {t}"))[before[t]:]
        assert len(records) == per_topic, f"{t}: {len(records)} dead letters for {per_topic} poison records"
        for r in records:
            headers = dict(r.headers)
            assert headers["__connect.errors.topic"].decode() == run.stack.topic(t)
            assert headers["__connect.errors.exception.message"] and headers["touchpoint.errors.reason"]
        parked[t.removeprefix("touchpoint.")] = len(records)
    return (f"1 % poison ({per_topic} per topic over {seconds:.0f} s) → dead letters with origin and error headers "
            f"{parked}; good events caught up {unblocked:.1f} s after the last poison record")


async def backlog(run: Run, seconds: float) -> str:
    """Identity stops consuming; once the backlog passes ingestion's limit, senders get 429 until it drains."""
    before = Counter(run.load.answers)
    await asyncio.to_thread(run.stack.processes["identity"].terminate)
    await asyncio.sleep(seconds)
    refused = (Counter(run.load.answers) - before)[429]
    run.stack.processes["identity"].start()
    await run.stack.processes["identity"].wait_ready(90)
    assert refused > 0, "no 429 while the backlog exceeded the limit"
    return f"identity stopped {seconds:.0f} s: backlog above the limit → {refused} answers 429 with Retry-After"


async def reply_lost(run: Run) -> str:
    """The crash window between Kafka's acknowledgement and the HTTP reply: the sender never reads the reply,
    then retries the same event (three times at once, as a provider might)."""
    customer, n = 9999, 0
    body = run.load.body(customer, n)
    eid = orjson.loads(body)["id"]
    request = (f"POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {run.load.api_key}\r\n"
               f"Content-Type: application/cloudevents+json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    host, port = run.stack.processes["ingestion"].url.removeprefix("http://").split(":")
    _reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(request)
    await writer.drain()

    async def copies_in_kafka() -> int:
        inbound = await kafka_io.read_all(run.stack.bootstrap_servers, run.stack.topic("touchpoint.inbound.v1"))
        return sum(1 for r in inbound if dict(r.headers).get("ce_id") == eid.encode())

    await kafka_io.wait_for(copies_in_kafka, timeout=15, what="the request's record in Kafka")
    writer.close()  # hang up without reading the answer: for the sender, the reply was lost
    async with httpx.AsyncClient(base_url=run.load.url, timeout=20) as client:
        headers = {"Authorization": f"Bearer {run.load.api_key}", "Content-Type": "application/cloudevents+json"}
        answers = await asyncio.gather(*(client.post("/v1/events", content=body, headers=headers) for _ in range(3)))
    assert [a.status_code for a in answers] == [202, 202, 202]

    async def stored() -> int:
        return await run.stack.fetchval("SELECT count(*) FROM timeline.entries WHERE tenant = $1 AND event_id = $2",
                                        run.load.tenant, eid)

    await kafka_io.wait_for(stored, timeout=30, what="the retried event")
    await asyncio.sleep(2)  # a second entry would land in this window
    rows, published = await stored(), await copies_in_kafka()
    assert published == 4, f"{published} records of the event in the inbound topic"
    assert rows == 1, f"{rows} timeline entries for one event sent four times"
    return ("reply lost after the publish (the record is in Kafka), then 3 concurrent retries: all 202, "
            f"{published} records in the inbound topic, exactly {rows} timeline entry")

Phase = Callable[[Run], Awaitable[str]]


def phases() -> list[Phase]:
    """The full suite with ``TOUCHPOINT_FAULTS=full``; otherwise a quick subset that keeps CI short: one broker kill
    and pause, one database crash, one network blackhole, poison, the lost reply and the backlog. Service
    ``kill -9`` is in CI through tests/e2e/test_crash_recovery.py."""
    if not FULL:
        return [lambda run: broker_kill(run, 6.0), lambda run: broker_pause(run, 6.0),
                lambda run: postgres_crash(run, 4.0), lambda run: blackhole(run, 7.0, "kafka_proxy"),
                lambda run: poison(run, 6.0), reply_lost, lambda run: backlog(run, 10.0)]
    return ([lambda run: broker_kill(run, 15.0)] * 5 + [lambda run: broker_pause(run, 20.0)] * 5
            + [lambda run: postgres_crash(run, 10.0)] * 3
            + [lambda run: blackhole(run, 20.0, "pg_proxy"), lambda run: blackhole(run, 20.0, "kafka_proxy"),
               lambda run: latency(run, 20.0), lambda run: resets(run, 3), lambda run: kill_services(run, 10),
               lambda run: sigterm_drain(run, 3), lambda run: churn(run, 5), lambda run: poison(run, 20.0),
               reply_lost, lambda run: backlog(run, 15.0)])


async def test_nothing_lost_or_duplicated_under_faults(faults_infra: FaultInfra):
    stack = await new_stack(faults_infra.bootstrap_servers, faults_infra.admin_dsn)
    env = faults_infra.service_env(stack.database_url)
    for service in SERVICES:
        stack.start(service, **env, TOUCHPOINT_PUBLISH_TIMEOUT_SECONDS="5", TOUCHPOINT_MAX_CONSUMER_LAG="400",
                    TOUCHPOINT_LAG_CHECK_SECONDS="1")
    try:
        for service in SERVICES:
            await stack.processes[service].wait_ready()
        tenant = "faults"
        key = await stack.api_key(tenant, ["ingest"])
        load = Load(stack.processes["ingestion"].url, key, tenant, run_id=uuid.uuid4().hex[:8],
                    customers=100, rate=60.0)
        run = Run(faults_infra, stack, load)
        stop = asyncio.Event()
        sender = asyncio.create_task(load.run(stop))
        await asyncio.sleep(3)
        for phase in phases():
            answers_before = Counter(load.answers)
            what = await phase(run)
            acked_now = list(load.acked)
            recovery = await wait_until_stored(stack, tenant, acked_now, timeout=RECOVERY_LIMIT + 30)
            counts = await tally(stack, tenant, acked_now, with_kafka=False)
            answers = dict(Counter(load.answers) - answers_before)
            run.report.append(f"{what}: caught up {recovery:.1f} s after; answers {answers}; lost {counts.lost}, "
                              f"duplicates {counts.duplicates}, out of order {counts.out_of_order}")
            print("\n" + run.report[-1], flush=True)
            assert recovery <= RECOVERY_LIMIT, run.report[-1]
            assert (counts.lost, counts.duplicates, counts.out_of_order) == (0, 0, 0), run.report[-1]
        stop.set()
        await asyncio.wait_for(sender, 120)
        await wait_until_stored(stack, tenant, load.acked, timeout=RECOVERY_LIMIT)
        await asyncio.sleep(3)  # anything applied twice would land in this window
        final = await tally(stack, tenant, load.acked)
        print(f"\nfaults ({'full' if FULL else 'quick'}): {final.line()}; answers {dict(load.answers)}")
        assert final.lost == 0 and final.duplicates == 0 and final.out_of_order == 0
        assert final.kafka_distinct == final.acked, "every acknowledged event is in the inbound topic"
        assert final.downstream_distinct == final.rows, "every timeline row reached the downstream topic"
        assert load.answers[503] > 0, "while the broker was down, ingestion answered 503 (never a 2xx)"
        assert load.answers[500] == 0, "a dependency outage is a 503 with Retry-After, never a 500"
    finally:
        for proxy in (faults_infra.kafka_proxy, faults_infra.pg_proxy):
            proxy.set("pass")
        await asyncio.to_thread(stack.stop_all)
