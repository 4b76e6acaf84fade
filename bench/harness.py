"""Infrastructure and stacks for the benchmarks: the benchmark's own local Kafka and PostgreSQL (``.run/bench``,
ports 29292/25632, so it never touches ``make run``'s or the tests'), a fresh database + topic prefix per stack
(``tests.support.stack.new_stack``), the services or the reference hops as separate processes, and the facts
about the machine and versions that go into every result file."""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path

import asyncpg
from aiokafka.admin import AIOKafkaAdminClient

from bench import procstats
from shared.kafka import all_topics
from tests.support.infra import LocalInfra
from tests.support.stack import ServiceProcess, Stack, new_stack

ROOT = Path(__file__).resolve().parents[1]
RUN_NAME = "bench"
KAFKA_PORT, PG_PORT = 29292, 25632
RUN_DIR = ROOT / ".run" / RUN_NAME
LOG_DIR = RUN_DIR / "logs"
SERVICES = ("ingestion", "identity", "timeline")
# The benchmark's observer reads new rows by seq: it adds this index in its own database (both modes pay it).
SEQ_INDEX = "CREATE INDEX IF NOT EXISTS bench_seq ON {table} (seq)"


def start_infra() -> LocalInfra:
    return LocalInfra(RUN_NAME, KAFKA_PORT, PG_PORT).start_all()


def kafka_pid() -> int | None:
    try:
        return int((RUN_DIR / "kafka" / "kafka.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def postgres_pid() -> int | None:
    return procstats.postmaster_pid(RUN_DIR / "pg" / "data")


async def fresh_stack(infra: LocalInfra) -> Stack:
    return await new_stack(infra.bootstrap_servers, infra.admin_dsn)


def db_name(stack: Stack) -> str:
    return stack.database_url.rsplit("/", 1)[1]


async def drop_stack(infra: LocalInfra, stack: Stack) -> None:
    """Drop the stack's database and topics (they can hold gigabytes after a run)."""
    conn = await asyncpg.connect(infra.admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{db_name(stack)}" WITH (FORCE)')
    finally:
        await conn.close()
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.bootstrap_servers)
    await admin.start()
    try:
        names = [name for name, _, _ in all_topics(stack.prefix)]
        await admin.delete_topics(names)
    except Exception:  # noqa: BLE001 - best effort clean-up
        pass
    finally:
        await admin.close()


def start_service(stack: Stack, service: str, **env: str) -> ServiceProcess:
    """``python -m services.<service>`` with the stack's settings; its log goes to ``.run/bench/logs``."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    proc = ServiceProcess(service, service, stack.env(**{"TOUCHPOINT_API_RATE_PER_SECOND": "0", **env}))
    proc.log_path = LOG_DIR / f"{stack.prefix}{service}.log"
    proc.start()
    stack.processes[service] = proc
    return proc


class RefHop:
    """One reference hop (``python -m bench.refpipe``) as its own process."""

    def __init__(self, name: str, bootstrap: str, in_topic: str, out_topic: str, dsn: str | None) -> None:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        args = [sys.executable, "-m", "bench.refpipe", "--bootstrap", bootstrap, "--in", in_topic,
                "--out", out_topic, "--group", name]
        if dsn:
            args += ["--dsn", dsn]
        self.name = name
        self.log_path = LOG_DIR / f"{in_topic}.{name}.log"
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def terminate(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)


async def configure_pg_statements(infra: LocalInfra, enabled: bool) -> None:
    """Load (or unload) pg_stat_statements in the benchmark's own PostgreSQL; restarts it when that changes."""
    conn = await asyncpg.connect(infra.admin_dsn)
    try:
        loaded = "pg_stat_statements" in (await conn.fetchval("SHOW shared_preload_libraries"))
        if loaded == enabled:
            return
        if enabled:
            await conn.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
        else:
            await conn.execute("ALTER SYSTEM RESET shared_preload_libraries")
    finally:
        await conn.close()
    infra.run("postgres", "stop")
    infra.run("postgres", "start")


def admin_dsn_for(infra: LocalInfra, stack: Stack) -> str:
    return infra.admin_dsn.rsplit("/", 1)[0] + "/" + db_name(stack)


TABLE_STATS = (
    "SELECT schemaname || '.' || relname AS table, seq_scan, seq_tup_read, idx_scan, n_tup_ins, n_tup_upd,"
    " n_tup_hot_upd, n_tup_del, n_live_tup, n_dead_tup FROM pg_stat_user_tables"
    " WHERE schemaname NOT IN ('public') ORDER BY seq_tup_read DESC, n_tup_ins DESC"
)
STATEMENTS = (
    "SELECT calls, round(total_exec_time::numeric, 1) AS total_ms, round(mean_exec_time::numeric, 3) AS mean_ms,"
    " rows, shared_blks_hit + shared_blks_read AS blocks, left(regexp_replace(query, '\\s+', ' ', 'g'), 240) AS query"
    " FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
    " ORDER BY total_exec_time DESC LIMIT 15"
)


async def reset_db_stats(infra: LocalInfra, stack: Stack, statements: bool) -> None:
    conn = await asyncpg.connect(admin_dsn_for(infra, stack))
    try:
        await conn.execute("SELECT pg_stat_reset()")
        if statements:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            await conn.execute("SELECT pg_stat_statements_reset()")
    finally:
        await conn.close()


async def db_stats(infra: LocalInfra, stack: Stack, statements: bool) -> dict:
    """Per-table scan and write counters and (if loaded) the statements that took the most server time."""
    conn = await asyncpg.connect(admin_dsn_for(infra, stack))
    try:
        out = {"tables": [dict(r) for r in await conn.fetch(TABLE_STATS)]}
        if statements:
            out["statements"] = [dict(r) for r in await conn.fetch(STATEMENTS)]
        return out
    finally:
        await conn.close()


def git_info() -> dict:
    def run(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=20).stdout.rstrip("\n")
        except (OSError, subprocess.SubprocessError):
            return ""
    dirty = [line[3:] for line in run("status", "--porcelain").splitlines() if line.strip()]
    return {"commit": run("rev-parse", "HEAD"), "subject": run("log", "-1", "--format=%s"),
            "dirty_files": dirty}


async def versions(admin_dsn: str) -> dict:
    libs = {}
    for name in ("aiokafka", "asyncpg", "faststream", "pydantic", "orjson", "fastapi", "uvicorn", "httpx"):
        try:
            libs[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    jars = sorted(p.name for p in (ROOT / ".cache/kafka/libs").glob("kafka_2.13-*.jar"))
    conn = await asyncpg.connect(admin_dsn)
    try:
        pg = await conn.fetchval("SHOW server_version")
        fsync = await conn.fetchval("SHOW fsync")
        sync_commit = await conn.fetchval("SHOW synchronous_commit")
    finally:
        await conn.close()
    return {"python": platform.python_version(), "kafka": jars[0].removeprefix("kafka_2.13-").removesuffix(".jar") if jars else None,
            "postgres": pg, "postgres_fsync": fsync, "postgres_synchronous_commit": sync_commit, **libs}


def machine() -> dict:
    return procstats.machine()


async def wait_ready(processes: list[ServiceProcess], timeout: float = 90) -> None:
    await asyncio.gather(*(p.wait_ready(timeout) for p in processes))


def env_flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0", "false")
