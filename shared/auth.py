"""API keys: ``tp_<key id>_<secret>``, stored as a SHA-256 hash of the secret, scoped and revocable.

Scopes: ``ingest`` (publish events), ``read`` (timelines and profiles), ``admin``. Verification caches a
lookup for a few seconds, so a revoked key stops working within ``cache_seconds``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import asyncpg
from pydantic import SecretStr

from shared.db import ALL_TENANTS, enter_scope, tenant_scope
from shared.ratelimit import RateLimited, RateLimiter

SCOPES = ("ingest", "read", "admin", "agent")
# ``agent`` acts for any agent of the tenant (an agent desktop integration); ``agent:<agent id>`` for one agent.
AGENT_SCOPE_PREFIX = "agent:"


@dataclass(frozen=True)
class Principal:
    tenant: str
    key_id: str
    scopes: frozenset[str]


class AuthError(Exception):
    """``status`` 401 for a missing/unknown/revoked key, 403 for a missing scope, 429 for a key over its rate
    (``retry_after`` seconds)."""

    def __init__(self, status: int, reason: str, retry_after: int | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.retry_after = retry_after


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_key(raw: str) -> tuple[str, str] | None:
    parts = raw.strip().split("_")
    if len(parts) != 3 or parts[0] != "tp" or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


async def create_api_key(conn: asyncpg.Connection, tenant: str, scopes: list[str], label: str = "") -> SecretStr:
    """Create a key for ``tenant`` (creating the tenant if needed). The plaintext is returned once only."""
    unknown = {s for s in scopes if s not in SCOPES and not (s.startswith(AGENT_SCOPE_PREFIX) and len(s) > 6)}
    if unknown:
        raise ValueError(f"unknown scopes: {sorted(unknown)}")
    key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32).replace("_", "-")
    await conn.execute("INSERT INTO platform.tenants (tenant, name) VALUES ($1, $1) ON CONFLICT DO NOTHING", tenant)
    await conn.execute(
        "INSERT INTO platform.api_keys (key_id, tenant, secret_hash, scopes, label) VALUES ($1, $2, $3, $4, $5)",
        key_id, tenant, _hash(secret), scopes, label,
    )
    return SecretStr(f"tp_{key_id}_{secret}")


async def revoke_api_key(conn: asyncpg.Connection, key_id: str) -> bool:
    status = await conn.execute(
        "UPDATE platform.api_keys SET revoked_at = now() WHERE key_id = $1 AND revoked_at IS NULL", key_id
    )
    return status.endswith("1")


class ApiKeyVerifier:
    def __init__(self, pool: asyncpg.Pool, cache_seconds: float = 5.0, limiter: RateLimiter | None = None) -> None:
        self._pool = pool
        self._limiter = limiter or RateLimiter(0, 0)
        self._cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, Principal | None]] = {}

    async def verify(self, raw_key: str | None, scope: str) -> Principal:
        """Raises AuthError; never reveals whether a key id exists."""
        principal = await self._principal(raw_key)
        if scope not in principal.scopes and "admin" not in principal.scopes:
            raise AuthError(403, "insufficient_scope")
        return principal

    async def verify_reader(self, raw_key: str | None) -> Principal:
        """Authenticate a caller that may read customers: scope ``read``, ``admin``, ``agent`` or ``agent:<id>``
        (agents see the customers they talk to)."""
        principal = await self._principal(raw_key)
        if not principal.scopes & {"read", "admin", "agent"} and not any(
                s.startswith(AGENT_SCOPE_PREFIX) for s in principal.scopes):
            raise AuthError(403, "insufficient_scope")
        return principal

    async def verify_agent(self, raw_key: str | None, agent_id: str) -> Principal:
        """Authenticate a caller acting as ``agent_id``: scope ``agent:<agent_id>``, ``agent`` or ``admin``."""
        principal = await self._principal(raw_key)
        if not principal.scopes & {"agent", "admin", AGENT_SCOPE_PREFIX + agent_id}:
            raise AuthError(403, "insufficient_scope")
        return principal

    async def _principal(self, raw_key: str | None) -> Principal:
        if not raw_key:
            raise AuthError(401, "missing_api_key")
        principal = await self._lookup(raw_key)
        if principal is None:
            raise AuthError(401, "invalid_api_key")
        try:
            self._limiter.take(principal.key_id)
        except RateLimited as exc:
            raise AuthError(429, "rate_limited", exc.retry_after) from None
        enter_scope(principal.tenant)  # row-level security: the rest of the request sees this tenant only
        return principal

    async def _lookup(self, raw_key: str) -> Principal | None:
        cache_key = _hash(raw_key)
        hit = self._cache.get(cache_key)
        now = time.monotonic()
        if hit and hit[0] > now:
            return hit[1]
        principal = await self._fetch(raw_key)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[cache_key] = (now + self._cache_seconds, principal)
        return principal

    async def _fetch(self, raw_key: str) -> Principal | None:
        parsed = parse_key(raw_key)
        if parsed is None:
            return None
        key_id, secret = parsed
        with tenant_scope(ALL_TENANTS):  # the key is what tells the tenant: look it up across tenants
            row = await self._pool.fetchrow(
                "SELECT tenant, secret_hash, scopes FROM platform.api_keys WHERE key_id = $1 AND revoked_at IS NULL",
                key_id,
            )
        if row is None or not hmac.compare_digest(row["secret_hash"], _hash(secret)):
            return None
        return Principal(row["tenant"], key_id, frozenset(row["scopes"]))


def key_from_headers(authorization: str | None, x_api_key: str | None) -> str | None:
    if x_api_key:
        return x_api_key
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return None
