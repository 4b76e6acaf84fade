"""Timeline HTTP API benchmark: ``GET /v1/customers/{id}/timeline`` for a customer with 10,000 entries.

    .venv/bin/python -m bench.timeline_api                 # 100 clients, 20 s
    .venv/bin/python -m bench.timeline_api --quick         # harness check
    .venv/bin/python -m bench.timeline_api --clients 100 --seconds 20 --entries 10000 --other-rows 100000

On a fresh stack (own database) on the benchmark's own PostgreSQL and Kafka, with the timeline service running as
its own process:
1. rows are written straight into ``timeline.entries`` (10,000 for the target customer, plus ``--other-rows``
   spread over other customers so the index is not just one customer) in the shape the service stores (payload
   = the entry JSON without ``customer_id``), a ``timeline.customers`` profile row, then ``ANALYZE``;
2. ``--clients`` concurrent clients (closed loop: each sends its next request when the previous answered, after
   ``--think-ms``; raw keep-alive HTTP/1.1, ~50 µs of client CPU per request), spread over ``--workers``
   processes so the client is not the bottleneck, ask for the first
   page (limit 50) 60 % of the time and for cursor pages 2–5 otherwise, with a read-scoped API key;
3. the same SQL (``services.timeline.repository.page``, and ``timeline_page``, the one statement the handler
   runs: the survivor's id and its page) timed per call over one asyncpg connection, serially.
Printed: requests/s, p50/p99/p99.9 per request kind, CPU of the service and of the clients, and the database
figures beside them. With a closed loop, latency ≈ clients / throughput (Little's law): p99 ≤ 20 ms for 100
clients needs ≥ ~5,000 requests/s.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import random
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone

import orjson

from bench import harness, report
from bench.measure import latency_summary
from bench.procstats import cpu_seconds, machine_busy_seconds
from shared import db

TENANT = "bench-api"
TARGET = "c-target-0001"
NAMESPACE = uuid.UUID("5b1f3c2e-8d4a-4c6b-9e7f-0a1b2c3d4e5f")
CHANNELS = ("email", "phone", "sms", "whatsapp", "chat", "web", "app", "store", "letter", "twitter")
TEXT = ("Kundin fragt nach dem Stand ihrer Rechnung und bittet um Rückruf; Vertrag, Tarif und Lieferadresse wurden "
        "geprüft und im Gespräch bestätigt. ") * 5


def _entry(customer: str, k: int, occurred: datetime, seq_hint: int) -> tuple:
    channel = CHANNELS[(k * 7 + seq_hint) % len(CHANNELS)]
    event_id = f"api-{customer}-{k}"
    entry_id = str(uuid.uuid5(NAMESPACE, f"{customer}/{k}"))
    payload = {"channel": channel, "direction": "inbound" if k % 3 else "outbound", "source": "bench",
               "event_id": event_id, "conversation_id": f"conv-{k // 5}", "case_id": None,
               "subject": f"topic {k % 40}", "text": TEXT[: 300 + (k * 37) % 400], "language": "de",
               "agent_id": None, "tags": ["bench"], "entry_id": entry_id, "kind": "interaction",
               "occurred_at": occurred.isoformat()}
    return (TENANT, entry_id, customer, occurred, "interaction", channel, "bench", event_id,
            orjson.dumps(payload).decode())


async def populate(stack, entries: int, other_rows: int, per_other: int = 20) -> None:
    conn = await stack.connect()
    try:
        rng = random.Random(11)
        base = datetime(2024, 1, 1, tzinfo=timezone.utc)
        # Published entries: none of them in the outbox (timeline.outbox).
        cols = ["tenant", "entry_id", "customer_id", "occurred_at", "kind", "channel", "source", "event_id", "payload"]
        rows = [_entry(TARGET, k, base + timedelta(minutes=rng.randrange(0, 1_000_000)), k) for k in range(entries)]
        await conn.copy_records_to_table("entries", schema_name="timeline", columns=cols, records=rows)
        first, last = min(r[3] for r in rows), max(r[3] for r in rows)
        customers = [(TENANT, TARGET, first, last, entries, sorted(CHANNELS))]
        for start in range(0, other_rows, 50_000):
            chunk = []
            for i in range(start, min(other_rows, start + 50_000)):
                cid = f"c-other-{i // per_other:06d}"
                chunk.append(_entry(cid, i % per_other, base + timedelta(minutes=rng.randrange(0, 1_000_000)), i))
            await conn.copy_records_to_table("entries", schema_name="timeline", columns=cols, records=chunk)
        for c in range((other_rows + per_other - 1) // per_other):
            customers.append((TENANT, f"c-other-{c:06d}", base, base + timedelta(days=600), per_other, ["email"]))
        await conn.copy_records_to_table(
            "customers", schema_name="timeline", records=customers,
            columns=["tenant", "customer_id", "first_contact_at", "last_contact_at", "entry_count", "channels"])
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


# --- the HTTP clients (their own processes) -----------------------------------------------------------------


def _worker(conn, url: str, key: str, cursors: list[str], clients: int, seconds: float, warmup: float,
            think_ms: float, start_at: float) -> None:
    conn.send(asyncio.run(_clients(url, key, cursors, clients, seconds, warmup, think_ms, start_at)))


async def _clients(url, key, cursors, clients, seconds, warmup, think_ms, start_at) -> dict:
    """Closed-loop clients on raw keep-alive HTTP/1.1 connections: a request costs the client ~50 µs instead of
    the ~1 ms httpx needs, so on 2 shared cores the clients do not starve the service they measure."""
    from urllib.parse import quote, urlsplit  # noqa: PLC0415

    parts = urlsplit(url)
    host, port = parts.hostname, parts.port
    base = (f"GET {parts.path}?limit=50").encode()
    tail = f" HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {key}\r\n\r\n".encode()
    requests = [base + tail] + [base + b"&cursor=" + quote(c).encode() + tail for c in cursors]
    first: list[int] = []
    later: list[int] = []
    statuses: dict[str, int] = {}
    await asyncio.sleep(max(0.0, start_at - time.time()))
    measure_from = time.time() + warmup
    stop_at = measure_from + seconds

    async def client(i: int) -> None:
        rng = random.Random(i)
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while time.time() < stop_at:
                k = 0 if rng.random() < 0.6 or not cursors else 1 + rng.randrange(len(cursors))
                t0 = time.perf_counter_ns()
                try:
                    writer.write(requests[k])
                    head = await reader.readuntil(b"\r\n\r\n")
                    status = head[9:12].decode()
                    length = 0
                    for line in head.split(b"\r\n"):
                        if line[:15].lower() == b"content-length:":
                            length = int(line[15:])
                    body = await reader.readexactly(length)
                    if status == "200" and not body.startswith(b'{"customer_id"'):
                        status = "bad body"
                except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
                    status = type(exc).__name__
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                took = time.perf_counter_ns() - t0
                if time.time() >= measure_from:
                    (first if k == 0 else later).append(took)
                    statuses[status] = statuses.get(status, 0) + 1
                if think_ms:
                    await asyncio.sleep(think_ms / 1000)
        finally:
            writer.close()

    await asyncio.gather(*(client(i) for i in range(clients)))
    return {"first": first, "later": later, "statuses": statuses}


def pg_cpu() -> float | None:
    from bench.procstats import Tracked  # noqa: PLC0415

    pid = harness.postgres_pid()
    return Tracked("postgres", pid, group=True).cpu() if pid else None


def run_clients(url: str, key: str, cursors: list[str], clients: int, workers: int, seconds: float,
                warmup: float, think_ms: float, service_pid: int) -> dict:
    ctx = mp.get_context("spawn")
    start_at = time.time() + 2.0  # every worker imports httpx first, then all start together
    procs, pipes = [], []
    for w in range(workers):
        n = clients // workers + (1 if w < clients % workers else 0)
        parent, child = ctx.Pipe()
        p = ctx.Process(target=_worker, args=(child, url, key, cursors, n, seconds, warmup, think_ms, start_at),
                        daemon=True)
        p.start()
        procs.append(p)
        pipes.append(parent)
    time.sleep(max(0.0, start_at + warmup - time.time()))
    snap = lambda: {"service": cpu_seconds(service_pid), "postgres": pg_cpu(),  # noqa: E731
                    **{f"client{i}": cpu_seconds(p.pid) for i, p in enumerate(procs)}, "machine": machine_busy_seconds()}
    cpu0 = snap()
    t0 = time.time()
    time.sleep(seconds)
    cpu1 = snap()
    wall = time.time() - t0
    results = [pipe.recv() for pipe in pipes]
    for p in procs:
        p.join(10)
    first = [v for r in results for v in r["first"]]
    later = [v for r in results for v in r["later"]]
    statuses: dict[str, int] = {}
    for r in results:
        for k, v in r["statuses"].items():
            statuses[k] = statuses.get(k, 0) + v
    cores = {k: round((cpu1[k] - cpu0[k]) / wall, 2) for k in cpu0 if cpu0[k] is not None and cpu1[k] is not None}
    cores["others"] = round(max(0.0, cores.pop("machine") - sum(cores.values())), 2)
    rps = (len(first) + len(later)) / seconds
    per_request = {k: round(v / rps * 1000, 2) for k, v in cores.items() if k in ("service", "postgres") and rps}
    return {"requests": len(first) + len(later), "rps": round(rps, 1), "cpu_ms_per_request": per_request,
            "statuses": statuses, "first_page": latency_summary(first), "cursor_pages": latency_summary(later),
            "all": latency_summary(first + later), "cpu_cores": cores}


# --- the same SQL directly ------------------------------------------------------------------------------------


async def direct_sql(stack, cursors: list[str], calls: int) -> dict:
    from services.timeline import api as timeline_api  # noqa: PLC0415 - the service's own cursor codec
    from services.timeline import repository as repo  # noqa: PLC0415 - the service's own SQL

    befores = [timeline_api.decode_cursor(c) for c in cursors]
    conn = await db.connect(stack.database_url, TENANT)  # the service's role and scope: RLS applies here too
    try:
        for _ in range(50):  # warm the cache and the prepared statements
            await repo.page(conn, TENANT, TARGET, 51, None, None, None, None)
        out = {}
        rng = random.Random(3)
        for name, with_canonical in (("page", False), ("handler", True)):
            first, later = [], []
            for _ in range(calls):
                before = None if rng.random() < 0.6 or not befores else rng.choice(befores)
                t0 = time.perf_counter_ns()
                if with_canonical:
                    _, rows = await repo.timeline_page(conn, TENANT, TARGET, 51, before, None, None, None)
                else:
                    rows = await repo.page(conn, TENANT, TARGET, 51, before, None, None, None)
                (first if before is None else later).append(time.perf_counter_ns() - t0)
                assert len(rows) == 51
            out[name] = {"first_page": latency_summary(first), "cursor_pages": latency_summary(later),
                         "all": latency_summary(first + later)}
        plan = await conn.fetch(
            "EXPLAIN (ANALYZE, BUFFERS) SELECT entry_id, occurred_at, seq, payload FROM timeline.entries"
            " WHERE tenant = $1 AND customer_id = $2"
            " AND ($3::timestamptz IS NULL OR (occurred_at, seq) < ($3, $4::bigint))"
            " AND ($5::text[] IS NULL OR channel = ANY($5))"
            " AND ($6::timestamptz IS NULL OR occurred_at >= $6) AND ($7::timestamptz IS NULL OR occurred_at < $7)"
            " ORDER BY occurred_at DESC, seq DESC LIMIT $8",
            TENANT, TARGET, befores[-1][0] if befores else None, befores[-1][1] if befores else None,
            None, None, None, 51)
        out["plan_cursor_page"] = [r[0] for r in plan]
        return out
    finally:
        await conn.close()


async def page_cursors(url: str, key: str, pages: int) -> list[str]:
    import httpx  # noqa: PLC0415

    cursors = []
    async with httpx.AsyncClient(timeout=30) as http:
        cursor = None
        for _ in range(pages):
            params = {"limit": "50", **({"cursor": cursor} if cursor else {})}
            r = await http.get(url, params=params, headers={"Authorization": f"Bearer {key}"})
            r.raise_for_status()
            body = r.json()
            assert len(body["entries"]) == 50, body
            cursor = body["next_cursor"]
            cursors.append(cursor)
    return cursors


async def run(args) -> dict:
    infra = harness.start_infra()
    result: dict = {"started": datetime.now(timezone.utc).isoformat(), "quick": args.quick,
                    "command": "python -m bench.timeline_api " + " ".join(sys.argv[1:]),
                    "machine": harness.machine(), "git": harness.git_info(), "config": vars(args)}
    stack = None
    try:
        await harness.configure_pg_statements(infra, False)
        result["versions"] = await harness.versions(infra.admin_dsn)
        stack = await harness.fresh_stack(infra)
        t0 = time.time()
        await populate(stack, args.entries, args.other_rows)
        print(f"populated {args.entries} entries for {TARGET} and {args.other_rows} for other customers in "
              f"{time.time() - t0:.1f}s", flush=True)
        service = harness.start_service(stack, "timeline")
        await harness.wait_ready([service])
        key = await stack.api_key(TENANT, ["read"])
        url = f"{service.url}/v1/customers/{TARGET}/timeline"
        cursors = (await page_cursors(url, key, 5))[:4]  # cursors of pages 2..5
        print(f"HTTP: {args.clients} clients in {args.workers} processes, closed loop"
              f"{f' with {args.think_ms} ms think time' if args.think_ms else ''}, {args.seconds:g} s "
              f"after {args.warmup:g} s warm-up", flush=True)
        profiler = None
        if args.profile:
            from bench.profile import Profiler  # noqa: PLC0415

            profiler = Profiler({"timeline-http": service.popen.pid}, args.seconds + args.warmup + 2)
            await profiler.start()
        result["http"] = await asyncio.to_thread(run_clients, url, key, cursors, args.clients, args.workers,
                                                 args.seconds, args.warmup, args.think_ms, service.popen.pid)
        if profiler:
            result["profile"] = await profiler.finish()
        print("PostgreSQL directly: the same SQL over one connection, serially", flush=True)
        result["sql"] = await direct_sql(stack, cursors, args.sql_calls)
    finally:
        if stack is not None:
            stack.stop_all()
            if not args.keep_data:
                await harness.drop_stack(infra, stack)
        if not args.keep_infra:
            infra.stop_all()
    result["finished"] = datetime.now(timezone.utc).isoformat()
    return result


def _lat(d: dict) -> str:
    return f"{d['p50_ms']} / {d['p99_ms']} / {d['p999_ms']} (n={d['n']})" if d.get("n") else "-"


def table(result: dict) -> str:
    h, s, c = result["http"], result["sql"], result["config"]
    handler = s.get("handler") or s["canonical_ids + page"]  # results before the one-statement handler
    m = result["machine"]
    rows = [
        ("", "HTTP (p50 / p99 / p99.9 ms)", "SQL: page", "SQL: as the handler runs it"),
        ("first page (limit 50)", _lat(h["first_page"]), _lat(s["page"]["first_page"]), _lat(handler["first_page"])),
        ("cursor pages 2-5", _lat(h["cursor_pages"]), _lat(s["page"]["cursor_pages"]), _lat(handler["cursor_pages"])),
        ("all", _lat(h["all"]), _lat(s["page"]["all"]), _lat(handler["all"])),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [f"GET /v1/customers/{{id}}/timeline — {c['entries']} entries, {c['clients']} concurrent clients "
             f"(closed loop), {c['seconds']:g} s; {m['nproc']} cores, load at start {' '.join(m['loadavg_at_start'])}"]
    lines += ["  ".join(r[i].ljust(widths[i]) for i in range(4)) for r in rows]
    lines.append(f"throughput {h['rps']} requests/s ({h['requests']} requests, statuses {h['statuses']}); "
                 f"CPU cores: {', '.join(f'{k} {v}' for k, v in h['cpu_cores'].items())}; CPU ms per request: "
                 f"{', '.join(f'{k} {v}' for k, v in h['cpu_ms_per_request'].items())}")
    p99 = h["all"]["p99_ms"]
    lines.append(f"target p99 ≤ 20 ms: {'met' if p99 is not None and p99 <= 20 else 'MISSED'} (p99 {p99} ms); "
                 f"closed loop: latency ≈ clients / throughput = {c['clients'] / max(h['rps'], 1e-9) * 1000:.1f} ms")
    return "\n".join(lines)


def markdown(result: dict, path) -> str:
    g, v, m = result["git"], result["versions"], result["machine"]
    t = table(result).splitlines()
    return "\n".join([
        f"Latest run: `{result['command'].strip()}` — {result['started'][:19]}Z, commit `{g['commit'][:10]}`"
        f"{' (with uncommitted changes)' if g['dirty_files'] else ''}; {m['nproc']} cores, PostgreSQL {v['postgres']}. "
        f"Full figures: [`{path.relative_to(harness.ROOT)}`](../{path.relative_to(harness.ROOT)}).", "",
        "```", *t, "```", "",
        "Plan of a cursor page:", "", "```", *result["sql"]["plan_cursor_page"], "```"])


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.timeline_api", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="5 s, 20 clients, fewer rows: checks the harness")
    p.add_argument("--clients", type=int)
    p.add_argument("--workers", type=int, default=2, help="client processes")
    p.add_argument("--seconds", type=float)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--think-ms", type=float, default=0.0)
    p.add_argument("--entries", type=int, default=10_000)
    p.add_argument("--other-rows", type=int)
    p.add_argument("--sql-calls", type=int, default=2000)
    p.add_argument("--profile", action="store_true", help="py-spy the timeline service while the clients run")
    p.add_argument("--keep-infra", action="store_true")
    p.add_argument("--keep-data", action="store_true")
    p.add_argument("--docs", choices=("auto", "yes", "no"), default="auto")
    a = p.parse_args(argv)
    preset = dict(clients=20, seconds=5, other_rows=10_000) if a.quick else dict(clients=100, seconds=20,
                                                                                  other_rows=100_000)
    for k, v in preset.items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    return a


def main(argv=None) -> None:
    args = parse_args(argv)
    result = asyncio.run(run(args))
    print()
    print(table(result))
    path = report.write_result(result, "timeline_api")
    print(f"\nresults: {path.relative_to(harness.ROOT)}")
    if args.docs == "yes" or (args.docs == "auto" and not args.quick):
        report.update_docs("timeline_api", markdown(result, path))
        print("docs/benchmarks.md refreshed")


if __name__ == "__main__":
    main()
