"""PostgreSQL access: pools, a unit of work that rolls back unless committed, and SQL migrations.

Pools are created by the composition root at start-up, never at import. Repositories receive a connection
from the unit of work and never commit; the use case decides by calling ``uow.commit()``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import TracebackType
from typing import Iterable

import asyncpg

MIGRATION_LOCK = 7_246_001  # advisory lock key: one migrator at a time


async def create_pool(dsn: str, min_size: int = 1, max_size: int = 4) -> asyncpg.Pool:
    # Custom plans: asyncpg prepares every statement, and PostgreSQL's generic plan for `= ANY($1)` / unnest
    # joins assumes a share of the table and scans it; a custom plan sees the actual arrays and uses the indexes.
    return await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, command_timeout=60,
                                     server_settings={"plan_cache_mode": "force_custom_plan"})


class UnitOfWork:
    """One database transaction. Rolls back on exit unless :meth:`commit` was called."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._committed = False

    async def __aenter__(self) -> "UnitOfWork":
        self.conn: asyncpg.Connection = await self._pool.acquire()
        self._tx = self.conn.transaction()
        await self._tx.start()
        return self

    async def commit(self) -> None:
        await self._tx.commit()
        self._committed = True

    async def __aexit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            if not self._committed:
                await self._tx.rollback()
        finally:
            await self._pool.release(self.conn)


def migration_dirs() -> list[tuple[str, Path]]:
    """(component, folder) for the platform and every service, in the order they are applied."""
    root = Path(__file__).resolve().parent.parent
    dirs = [("platform", root / "shared" / "migrations")]
    for folder in sorted((root / "services").glob("*/migrations")):
        dirs.append((folder.parent.name, folder))
    return dirs


async def migrate(dsn: str) -> list[str]:
    """Apply every pending migration, each in its own transaction; returns what was applied. Idempotent."""
    conn = await asyncpg.connect(dsn)
    applied: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS public.schema_migrations ("
            " component text NOT NULL, version text NOT NULL, checksum text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (component, version))"
        )
        done = {(r["component"], r["version"]) for r in await conn.fetch("SELECT component, version FROM public.schema_migrations")}
        for component, folder in migration_dirs():
            for path in sorted(folder.glob("*.sql")):
                if (component, path.name) in done:
                    continue
                sql = path.read_text()
                async with conn.transaction():
                    await conn.execute(sql)
                    await conn.execute(
                        "INSERT INTO public.schema_migrations (component, version, checksum) VALUES ($1, $2, $3)",
                        component, path.name, hashlib.sha256(sql.encode()).hexdigest(),
                    )
                applied.append(f"{component}/{path.name}")
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
        await conn.close()
    return applied


async def ensure_database(admin_dsn: str, role: str, password: str, database: str) -> None:
    """Create the application role and database if missing (development and test set-up only)."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role):
            await conn.execute(f'CREATE ROLE "{role}" LOGIN PASSWORD \'{password}\'')
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database):
            await conn.execute(f'CREATE DATABASE "{database}" OWNER "{role}"')
    finally:
        await conn.close()


def columns(rows: Iterable[tuple]) -> list[list]:
    """Transpose rows into per-column lists, the shape ``unnest($1::t[], $2::t[], ...)`` takes."""
    rows = list(rows)
    width = len(rows[0]) if rows else 0
    return [[r[i] for r in rows] for i in range(width)]
