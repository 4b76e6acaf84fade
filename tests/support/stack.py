"""An isolated Touchpoint stack on the session's infrastructure: its own database and topic prefix, and the
services as separate OS processes (``python -m services.<name>``) that tests can kill and restart."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx

from shared import auth, db, kafka, vault
from shared.cloudevents import CloudEvent, from_kafka

ROOT = Path(__file__).resolve().parents[2]
LOG_DIR = ROOT / "tests" / "artifacts" / "logs"


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port free now and not handed out before by this test process: the kernel may give a port it just
    released to the next caller, and two services of one stack then race for it (one fails to bind)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


@dataclass
class Stack:
    bootstrap_servers: str
    database_url: str  # the services' role (row-level security applies)
    prefix: str
    inspect_url: str = ""  # a superuser on the same database: the tests' own queries see every tenant
    processes: dict[str, "ServiceProcess"] = field(default_factory=dict)

    def topic(self, name: str) -> str:
        return self.prefix + name

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            TOUCHPOINT_KAFKA_BOOTSTRAP_SERVERS=self.bootstrap_servers,
            TOUCHPOINT_DATABASE_URL=self.database_url,
            TOUCHPOINT_TOPIC_PREFIX=self.prefix,
            TOUCHPOINT_LOG_LEVEL="INFO",
        )
        env.update(extra)
        return env

    def start(self, service: str, name: str | None = None, **extra: str) -> "ServiceProcess":
        proc = ServiceProcess(service, name or service, self.env(**extra))
        proc.start()
        self.processes[proc.name] = proc
        return proc

    def stop_all(self) -> None:
        for proc in self.processes.values():
            proc.terminate()

    async def connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.inspect_url or self.database_url)

    async def opened(self, records) -> list[CloudEvent]:
        """Kafka records decoded, with sealed personal fields opened with their data keys (``shared.vault``);
        a record whose key was shredded comes back still sealed (``data.sealed``, no personal fields)."""
        events = [from_kafka(r.value, r.headers) for r in records]
        wanted = {(e.tenant, e.extensions[vault.EXTENSION]) for e in events if vault.EXTENSION in e.extensions}
        keys = {}
        if wanted:
            conn = await self.connect()
            try:
                rows = await conn.fetch(
                    "SELECT tenant, kid, key FROM platform.data_keys WHERE (tenant, kid) IN"
                    " (SELECT * FROM unnest($1::text[], $2::text[]))", [t for t, _ in wanted], [k for _, k in wanted])
            finally:
                await conn.close()
            keys = {(r["tenant"], r["kid"]): vault.DataKey(r["kid"], bytes(r["key"])) for r in rows}
        for e in events:
            key = keys.get((e.tenant, e.extensions.get(vault.EXTENSION)))
            if key is not None:
                e.data = vault.unseal(e.data, e.tenant, key)
        return events

    async def opened_data(self, records) -> list[dict]:
        """The data of :meth:`opened` events."""
        return [e.data for e in await self.opened(records)]

    async def fetch(self, sql: str, *args) -> list[asyncpg.Record]:
        conn = await self.connect()
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()

    async def fetchval(self, sql: str, *args):
        conn = await self.connect()
        try:
            return await conn.fetchval(sql, *args)
        finally:
            await conn.close()

    async def api_key(self, tenant: str, scopes: list[str]) -> str:
        conn = await self.connect()
        try:
            return (await auth.create_api_key(conn, tenant, scopes)).get_secret_value()
        finally:
            await conn.close()


async def new_database(admin_dsn: str) -> tuple[str, str, str]:
    """A fresh database, migrated by the owner role: (name, the services' URL, a superuser URL for inspection)."""
    name = f"tp_{uuid.uuid4().hex[:10]}"
    await db.ensure_database(admin_dsn, "touchpoint", "touchpoint", name)
    host = admin_dsn.split("@", 1)[1].split("/", 1)[0]
    url = f"postgresql://touchpoint_app:touchpoint_app@{host}/{name}"
    await db.migrate(f"postgresql://touchpoint:touchpoint@{host}/{name}", url)
    return name, url, admin_dsn.rsplit("/", 1)[0] + f"/{name}"


async def new_stack(bootstrap_servers: str, admin_dsn: str, partitions: dict[str, int] | None = None) -> Stack:
    """A fresh database (migrated) and a fresh set of topics under a unique prefix."""
    name, url, inspect_url = await new_database(admin_dsn)
    prefix = f"{name}."
    await kafka.create_topics(bootstrap_servers, prefix, partitions)
    return Stack(bootstrap_servers, url, prefix, inspect_url=inspect_url)


async def with_fresh_database(stack: Stack, admin_dsn: str) -> Stack:
    """``stack``'s topics with a new, migrated database."""
    _, url, inspect_url = await new_database(admin_dsn)
    return Stack(stack.bootstrap_servers, url, stack.prefix, inspect_url=inspect_url)


class ServiceProcess:
    def __init__(self, service: str, name: str, env: dict[str, str]) -> None:
        self.service = service
        self.name = name
        self.port = free_port()
        self.env = dict(env, TOUCHPOINT_PORT=str(self.port))
        self.popen: subprocess.Popen | None = None
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = LOG_DIR / f"{env.get('TOUCHPOINT_TOPIC_PREFIX', '')}{name}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = open(self.log_path, "ab")
        self.popen = subprocess.Popen([sys.executable, "-m", f"services.{self.service}"], env=self.env, cwd=ROOT,
                                      stdout=log, stderr=subprocess.STDOUT)
        log.close()

    async def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient() as client:
            while time.monotonic() < deadline:
                assert self.popen and self.popen.poll() is None, f"{self.name} exited; see {self.log_path}"
                try:
                    if (await client.get(self.url + "/readyz", timeout=2)).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
        raise TimeoutError(f"{self.name} not ready after {timeout}s; see {self.log_path}")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        assert self.popen
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(10)

    def terminate(self) -> None:
        if self.popen and self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
