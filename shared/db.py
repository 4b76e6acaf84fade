"""PostgreSQL access: pools, a unit of work that rolls back unless committed, and SQL migrations.

Pools are created by the composition root at start-up, never at import. Repositories receive a connection
from the unit of work and never commit; the use case decides by calling ``uow.commit()``.
"""

from __future__ import annotations

import asyncio
import hashlib
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from types import TracebackType
from typing import Iterable, Iterator
from urllib.parse import unquote, urlparse

import asyncpg

MIGRATION_LOCK = 7_246_001  # advisory lock key: one migrator at a time


# --- Tenant scope (row-level security) ------------------------------------------------------------------
#
# Every table with a ``tenant`` column has ENABLE and FORCE ROW LEVEL SECURITY and a policy that shows and
# accepts only rows whose tenant is in the setting ``touchpoint.tenants`` (comma-separated; ``*`` = every
# tenant). The setting is applied on every pool acquire from a context variable, so code never passes it
# around: the API-key dependency scopes a request to its key's tenant, a consumer scopes a batch to the tenants
# of its records, and only background jobs that serve every tenant (schedulers, outbox relays) run with ``*``.
# A connection with no scope sees no rows at all.

ALL_TENANTS = "*"
TENANTS_SETTING = "touchpoint.tenants"
_scope: ContextVar[str | None] = ContextVar("touchpoint_tenant_scope", default=None)


def _scope_value(tenants: str | Iterable[str]) -> str:
    if tenants == ALL_TENANTS:
        return ALL_TENANTS
    names = {tenants} if isinstance(tenants, str) else set(tenants)
    if any("," in t or t == ALL_TENANTS for t in names):
        raise ValueError("a tenant name may not contain ',' or be '*'")
    return ",".join(sorted(names))


def enter_scope(tenants: str | Iterable[str]) -> None:
    """Scope the rest of the current task (an HTTP request, a batch) to ``tenants`` (or :data:`ALL_TENANTS`)."""
    _scope.set(_scope_value(tenants))


@contextmanager
def tenant_scope(tenants: str | Iterable[str]) -> Iterator[None]:
    """Scope the block (and tasks created in it) to ``tenants`` (or :data:`ALL_TENANTS`)."""
    token = _scope.set(_scope_value(tenants))
    try:
        yield
    finally:
        _scope.reset(token)


def current_scope() -> str | None:
    return _scope.get()


async def create_pool(dsn: str, min_size: int = 1, max_size: int = 4, default_scope: str | None = None) -> asyncpg.Pool:
    """A pool whose connections carry the current tenant scope (``default_scope`` when none is set: only for
    tools and tests that act for every tenant).

    Acquire and release cost no round trip in the common case. The scope is set on acquire only when it differs
    from the one the connection carries (each :class:`ScopedConnection` remembers its own). Release does not run
    asyncpg's default reset query (``RESET ALL; UNLISTEN *; ...``): asyncpg still rolls back a transaction left
    open, and pooled connections never hold other session state here (no ``SET``, no ``LISTEN``, no
    session-level advisory locks: those use their own connections, see :func:`migrate` and the timeline's live
    updates). Keeping the tenant setting between uses is safe because every acquire sets it again whenever it
    differs, outside any transaction. This needs a session per connection: a pooler in transaction mode
    (pgbouncer ``pool_mode = transaction``) in front of PostgreSQL is not supported.
    """

    async def apply_scope(conn: asyncpg.Connection) -> None:
        scope = _scope.get() or default_scope or ""
        if conn.scope != scope:
            conn.carry(None)
            await conn.execute(f"SELECT set_config('{TENANTS_SETTING}', $1, false)", scope)
            conn.carry(scope)

    async def keep_session(conn: asyncpg.Connection) -> None:
        """Nothing beyond asyncpg's own rollback of an open transaction (see above)."""

    # Custom plans: asyncpg prepares every statement, and PostgreSQL's generic plan for `= ANY($1)` / unnest
    # joins assumes a share of the table and scans it; a custom plan sees the actual arrays and uses the indexes.
    return await FairPool(dsn, connection_class=ScopedConnection, record_class=asyncpg.Record, init_size=None,
                          min_size=min_size, max_size=max_size, max_queries=50_000, loop=None, connect=None,
                          setup=apply_scope, init=None, reset=keep_session, max_inactive_connection_lifetime=300.0,
                          command_timeout=60, server_settings={"plan_cache_mode": "force_custom_plan"})


class ScopedConnection(asyncpg.Connection):
    """A connection that remembers the tenant scope it carries (None: unknown, set it)."""

    __slots__ = ("scope",)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.scope: str | None = None

    def carry(self, scope: str | None) -> None:
        """Record the scope now set (a method, so that it can be called through the pool's proxy)."""
        self.scope = scope


class FairPool(asyncpg.Pool):
    """An asyncpg pool that hands out connections first come, first served.

    asyncpg's pool queues waiters on an ``asyncio.Queue``, where a task that asks just as a connection comes back
    takes it ahead of the tasks already waiting, and a waiter that lost goes to the back again. Under load (100
    HTTP requests for 4 connections) a few requests then waited hundreds of milliseconds while most waited none.
    Here only one task at a time waits on that queue: the others wait in line for an ``asyncio.Lock`` (FIFO, and
    never barged past while it has waiters). Nothing is held beyond the wait, so a connection that is lost or
    never released cannot leave the line blocked. ``_acquire`` is asyncpg 0.32's, with the line added (hence the
    pinned asyncpg version).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._line = asyncio.Lock()

    async def _acquire(self, timeout: float | None) -> asyncpg.Connection:
        async def acquire_in_turn() -> asyncpg.Connection:
            async with self._line:
                holder = await self._queue.get()
            try:
                proxy = await holder.acquire()
            except (Exception, asyncio.CancelledError):
                self._queue.put_nowait(holder)
                self._schedule_min_size_maintenance()
                raise
            holder._timeout = timeout
            return proxy

        if self._closing:
            raise asyncpg.InterfaceError("pool is closing")
        self._check_init()
        if timeout is None:
            return await acquire_in_turn()
        return await asyncio.wait_for(acquire_in_turn(), timeout)


async def connect(dsn: str, scope: str | Iterable[str]) -> asyncpg.Connection:
    """A single connection scoped to ``scope`` for its whole life (command-line tools)."""
    conn = await asyncpg.connect(dsn)
    await conn.execute(f"SELECT set_config('{TENANTS_SETTING}', $1, false)", _scope_value(scope))
    return conn


# Plan joins as index probes for the rest of the transaction (nested loops; no sequential scan, hash or merge join
# unless nothing else works). For the statements of a consumer's batch, which reach rows through the keys the batch
# carries. The planner's own choice there depends on statistics that lag behind a fast-growing table (a new
# deployment's first minutes: no statistics yet, the row-level security filter then estimated at 1 % of the rows),
# and it scanned and sorted whole tables per batch (0.1-2 s each). Scans are also dearer than they are costed: the
# row-level security filter is evaluated for every row a scan reads. ``SET LOCAL`` ends with the transaction.
PROBES = "SET LOCAL enable_seqscan = off; SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off"


class UnitOfWork:
    """One database transaction. Rolls back on exit unless :meth:`commit` was called.

    ``probes=True`` starts it planning as index probes (``PROBES``) in the round trip of its
    ``BEGIN``: for a consumer's batch, which pays every round trip once per batch. Such a transaction is a plain
    ``BEGIN``/``COMMIT``, without asyncpg's transaction object, so it cannot hold ``conn.transaction()`` blocks
    (savepoints)."""

    def __init__(self, pool: asyncpg.Pool, probes: bool = False) -> None:
        self._pool = pool
        self._probes = probes
        self._committed = False
        self._tx: asyncpg.transaction.Transaction | None = None

    async def __aenter__(self) -> "UnitOfWork":
        self.conn: asyncpg.Connection = await self._pool.acquire()
        try:
            if self._probes:
                await self.conn.execute("BEGIN; " + PROBES)
            else:
                self._tx = self.conn.transaction()
                await self._tx.start()
        except BaseException:
            await self._pool.release(self.conn)  # asyncpg rolls back what the failed start left open
            raise
        return self

    async def commit(self) -> None:
        if self._tx is None:
            await self.conn.execute("COMMIT")
        else:
            await self._tx.commit()
        self._committed = True

    async def __aexit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            if not self._committed:
                if self._tx is None:
                    await self.conn.execute("ROLLBACK")
                else:
                    await self._tx.rollback()
        finally:
            await self._pool.release(self.conn)


TENANT_POLICY = (f"tenant = ANY (string_to_array(current_setting('{TENANTS_SETTING}', true), ',')) "
                 f"OR current_setting('{TENANTS_SETTING}', true) = '{ALL_TENANTS}'")
SCHEMAS_QUERY = "SELECT nspname FROM pg_namespace WHERE nspname = ANY($1::text[])"


def schemas() -> list[str]:
    """Touchpoint's schemas: ``platform`` and one per service."""
    return [component for component, _ in migration_dirs()]


async def tenant_tables(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Every table of Touchpoint's schemas with a ``tenant`` column, with its RLS flags and policy count."""
    return await conn.fetch(
        "SELECT n.nspname AS schema, c.relname AS table, c.relrowsecurity AS enabled, c.relforcerowsecurity AS forced,"
        " (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid) AS policies"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant' AND NOT a.attisdropped"
        " WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY($1::text[]) ORDER BY 1, 2", schemas())


async def unprotected_tables(conn: asyncpg.Connection) -> list[str]:
    """Tenant tables lacking ENABLE or FORCE ROW LEVEL SECURITY or a policy (the metadata check)."""
    return [f"{r['schema']}.{r['table']}" for r in await tenant_tables(conn)
            if not (r["enabled"] and r["forced"] and r["policies"])]


async def secure(conn: asyncpg.Connection, app_user: str | None, app_password: str | None) -> None:
    """Put every tenant table under forced row-level security and give the application role (created if
    missing: LOGIN, no superuser, no BYPASSRLS, owns nothing) the privileges it needs. Idempotent."""
    for r in await tenant_tables(conn):
        table = f'"{r["schema"]}"."{r["table"]}"'
        await conn.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        await conn.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        await conn.execute(f"DROP POLICY IF EXISTS tenant_isolation ON {table}")
        await conn.execute(f"CREATE POLICY tenant_isolation ON {table} USING ({TENANT_POLICY}) "
                           f"WITH CHECK ({TENANT_POLICY})")
    owner = await conn.fetchval("SELECT current_user")
    if not app_user or app_user == owner:
        return
    if not await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", app_user):
        password = (app_password or "").replace("'", "''")
        # Defaults: NOSUPERUSER, NOBYPASSRLS, NOCREATEROLE, NOCREATEDB.
        await conn.execute(f'CREATE ROLE "{app_user}" LOGIN PASSWORD \'{password}\'')
    database = await conn.fetchval("SELECT current_database()")
    await conn.execute(f'GRANT CONNECT ON DATABASE "{database}" TO "{app_user}"')
    for schema in await conn.fetch(SCHEMAS_QUERY, schemas()):
        name = schema["nspname"]
        await conn.execute(f'GRANT USAGE ON SCHEMA "{name}" TO "{app_user}"')
        await conn.execute(f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "{name}" TO "{app_user}"')
        await conn.execute(f'GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA "{name}" TO "{app_user}"')
        await conn.execute(f'GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA "{name}" TO "{app_user}"')


def migration_dirs() -> list[tuple[str, Path]]:
    """(component, folder) for the platform and every service, in the order they are applied."""
    root = Path(__file__).resolve().parent.parent
    dirs = [("platform", root / "shared" / "migrations")]
    for folder in sorted((root / "services").glob("*/migrations")):
        dirs.append((folder.parent.name, folder))
    return dirs


async def migrate(dsn: str, app_dsn: str | None = None) -> list[str]:
    """Apply every pending migration, each in its own transaction, then :func:`secure` the schema for the
    application role named in ``app_dsn``; returns what was applied. Idempotent."""
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
        app = urlparse(app_dsn) if app_dsn else None
        async with conn.transaction():
            await secure(conn, unquote(app.username) if app and app.username else None,
                         unquote(app.password) if app and app.password else None)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
        await conn.close()
    return applied


async def ensure_database(admin_dsn: str, role: str, password: str, database: str) -> None:
    """Create the owner role (it runs the migrations) and database if missing (development and test set-up
    only; :func:`migrate` creates the application role)."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role):
            await conn.execute(f'CREATE ROLE "{role}" LOGIN CREATEROLE PASSWORD \'{password}\'')
        else:
            await conn.execute(f'ALTER ROLE "{role}" CREATEROLE')
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database):
            await conn.execute(f'CREATE DATABASE "{database}" OWNER "{role}"')
    finally:
        await conn.close()


def columns(rows: Iterable[tuple], width: int | None = None) -> list[list]:
    """Transpose rows into per-column lists, the shape ``unnest($1::t[], $2::t[], ...)`` takes; ``width`` gives
    the number of columns when there may be no rows (then that many empty lists)."""
    rows = list(rows)
    width = (len(rows[0]) if rows else 0) if width is None else width
    return [[r[i] for r in rows] for i in range(width)]
