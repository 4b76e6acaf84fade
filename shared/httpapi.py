"""Helpers for Touchpoint's FastAPI surfaces: one error shape, API-key dependencies, health routes.

Every 4xx/5xx body is ``{"error": {"reason": <stable code>, "detail": <text>}}``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

import asyncpg
from fastapi import FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from shared.auth import ApiKeyVerifier, AuthError, Principal, key_from_headers
from shared.db import ALL_TENANTS, enter_scope
from shared.retry import TRANSIENT, is_transient

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(self, status: int, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.status, self.reason, self.detail = status, reason, detail


def error_body(reason: str, detail: str = "") -> dict:
    return {"error": {"reason": reason, "detail": detail}}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.reason, exc.detail), status_code=exc.status)

    @app.exception_handler(AuthError)
    async def _auth_error(_: Request, exc: AuthError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        if exc.retry_after is not None:
            headers = {"Retry-After": str(exc.retry_after)}
        return JSONResponse(error_body(exc.reason), status_code=exc.status, headers=headers)

    async def _dependency_down(_: Request, exc: Exception) -> JSONResponse:
        if not is_transient(exc):
            raise exc  # a bug: the server-error middleware answers 500 and logs it
        log.warning("dependency unavailable", extra={"error": type(exc).__name__})
        return JSONResponse(error_body("unavailable", "a dependency is unavailable; retry later"), status_code=503,
                            headers={"Retry-After": "5"})

    # PostgreSQL or Kafka blinking is a 503 with Retry-After (the caller retries), never a 500.
    # Database and broker errors, and failing to reach them (refused, reset, timed out); not any OSError.
    dependency_errors = (*(t for t in TRANSIENT if t not in (OSError, asyncio.TimeoutError)), asyncpg.InterfaceError,
                         ConnectionError, TimeoutError)
    for transient in dependency_errors:
        app.add_exception_handler(transient, _dependency_down)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return JSONResponse(error_body("invalid_request", detail), status_code=422)


def _key_dependency(check: Callable[[ApiKeyVerifier, str | None], Awaitable[Principal]]) -> Callable[..., Awaitable[Principal]]:
    async def dependency(
        request: Request,
        authorization: str | None = Header(default=None),
        x_api_key: str | None = Header(default=None),
    ) -> Principal:
        return await check(request.app.state.verifier, key_from_headers(authorization, x_api_key))

    return dependency


async def across_tenants() -> None:
    """Dependency of routes authenticated by something other than an API key (a signed link token, a provider's
    signature, a web-chat site key) that find their object across tenants before they know its tenant."""
    enter_scope(ALL_TENANTS)


def require_scope(scope: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency that authenticates the caller's API key for ``scope``."""
    return _key_dependency(lambda verifier, key: verifier.verify(key, scope))


def require_reader() -> Callable[..., Awaitable[Principal]]:
    """A dependency that authenticates a caller allowed to read customers: scope ``read`` or ``admin``, or an
    agent key (``agent``, ``agent:<id>``)."""
    return _key_dependency(lambda verifier, key: verifier.verify_reader(key))


def add_health_routes(app: FastAPI, ready: Callable[[], Awaitable[dict[str, bool]]]) -> None:
    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        checks = await ready()
        ok = all(checks.values())
        return JSONResponse({"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503)
