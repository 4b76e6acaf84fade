"""What every service process has: a database pool, an idempotent producer, a FastStream broker, an HTTP app.

A service's ``main.py`` is its composition root: it builds its settings, then calls :func:`build_service`
with a ``wire`` function that creates the service's use cases from these resources, registers its batch
subscribers and stores what its HTTP routes need on ``app.state``. Nothing else creates clients.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import AsyncIterator, Awaitable, Callable

import time

import asyncpg
import uvicorn
from fastapi import FastAPI, Response
from faststream.kafka import KafkaBroker
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from shared.auth import ApiKeyVerifier
from shared.consumer import BatchProcessor, make_broker, subscribe_batches
from shared.db import ALL_TENANTS, create_pool, tenant_scope
from shared import gcpolicy
from shared.deadletters import DeadLetterCeiling
from shared.httpapi import add_health_routes, install_error_handlers
from shared.kafka import EventProducer
from shared.logs import configure_logging
from shared.metrics import ServiceMetrics
from shared.ratelimit import RateLimiter
from shared.settings import ServiceSettings
from shared.telemetry import Steps, provider_from_environment

log = logging.getLogger(__name__)


@dataclass
class Resources:
    settings: ServiceSettings
    pool: asyncpg.Pool
    producer: EventProducer
    broker: KafkaBroker
    metrics: ServiceMetrics
    steps: Steps
    background: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    ceiling: DeadLetterCeiling | None = None
    failed: BaseException | None = None
    server: uvicorn.Server | None = None

    def stop_with_error(self, exc: BaseException) -> None:
        """Shut the process down gracefully (as on SIGTERM); :func:`run` then exits with status 3."""
        if self.failed is None:
            self.failed = exc
            if self.server is not None:
                self.server.should_exit = True
            else:
                os.kill(os.getpid(), signal.SIGTERM)

    def topic(self, name: str) -> str:
        return self.settings.topic_prefix + name

    def subscribe(self, topic_name: str, group_id: str, process: BatchProcessor, consumers: int = 1) -> None:
        """Consume ``topic_name`` in batches with ``process`` as group ``group_id`` (registry names; the
        deployment's prefix is added to both). ``consumers`` > 1 runs that many members of the group in this
        process, each with its own partitions and batches: ``process`` is then called concurrently, as it is
        by separate instances."""
        for _ in range(consumers):
            subscribe_batches(self.broker, self.topic(topic_name), self.settings.group(group_id), process,
                              self.settings, self.metrics, self.ceiling, self.stop_with_error)


Wire = Callable[[Resources, FastAPI], None]


def build_service(name: str, settings: ServiceSettings, wire: Wire, title: str,
                  tracer_provider: TracerProvider | None = None) -> FastAPI:
    """The service's HTTP app; its lifespan creates the clients, wires the service and starts consuming.

    ``tracer_provider`` defaults to one configured by the standard ``OTEL_*`` variables (none: tracing off).
    """
    metrics = ServiceMetrics()
    provider = tracer_provider if tracer_provider is not None else provider_from_environment(name)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await create_pool(settings.database_url.get_secret_value(), settings.db_pool_min, settings.db_pool_max)
        metrics.watch_pool(lambda: (pool.get_size(), pool.get_idle_size(), pool.get_max_size()))
        ceiling = DeadLetterCeiling(settings.dead_letter_max_share, settings.dead_letter_window)
        producer = EventProducer(settings.kafka_bootstrap_servers, client_id=f"touchpoint-{name}", metrics=metrics,
                                 ceiling=ceiling)
        await producer.start()
        broker = make_broker(settings, f"touchpoint-{name}")
        resources = Resources(settings, pool, producer, broker, metrics, Steps(provider, name), ceiling=ceiling)
        resources.server = getattr(app.state, "server", None)
        app.state.resources = resources
        app.state.verifier = ApiKeyVerifier(pool, limiter=RateLimiter(settings.api_rate_per_second,
                                                                      settings.api_rate_burst))
        wire(resources, app)
        await broker.start()
        with tenant_scope(ALL_TENANTS):  # background jobs (schedulers, relays) serve every tenant
            tasks = [asyncio.create_task(loop(), name=getattr(loop, "__name__", "background"))
                     for loop in resources.background]
        gcpolicy.settle(settings.gc_young_threshold, metrics.record_gc_pause)
        log.info("service started", extra={"port": settings.port})
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await broker.stop()
            await producer.stop()
            await pool.close()
            if provider is not None:
                provider.shutdown()
            log.info("service stopped")

    app = FastAPI(title=title, lifespan=lifespan)
    app.state.metrics = metrics
    install_error_handlers(app)
    _add_http_metrics(app, metrics)

    async def ready() -> dict[str, bool]:
        resources: Resources = app.state.resources
        try:
            await resources.pool.fetchval("SELECT 1", timeout=3)
            db_ok = True
        except Exception:  # noqa: BLE001 - readiness: any failure means not ready
            db_ok = False
        return {"database": db_ok, "kafka": await resources.producer.ping()}

    add_health_routes(app, ready)

    @app.get("/metrics", include_in_schema=False)
    async def metrics_endpoint() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def _add_http_metrics(app: FastAPI, metrics: ServiceMetrics) -> None:
    """Count requests and time them per route template, up to the start of the response (so that a stream of
    server-sent events counts its time to first byte, not its life). A plain ASGI middleware: Starlette's
    ``BaseHTTPMiddleware`` runs every request through extra tasks and memory streams."""

    class CountRequests:
        def __init__(self, app: Callable) -> None:
            self.app = app

        async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
            if scope["type"] != "http":
                await self.app(scope, receive, send)
                return
            started = time.perf_counter()
            counted = False

            def count(status: int) -> None:
                nonlocal counted
                counted = True
                template = getattr(scope.get("route"), "path", "unmatched")
                metrics.http_requests.labels(template, scope["method"], str(status)).inc()
                metrics.http_seconds.labels(template).observe(time.perf_counter() - started)

            async def send_counted(message: dict) -> None:
                if message["type"] == "http.response.start" and not counted:
                    count(message["status"])
                await send(message)

            try:
                await self.app(scope, receive, send_counted)
            finally:
                if not counted:
                    count(500)

    app.add_middleware(CountRequests)


def run(name: str, app: FastAPI, settings: ServiceSettings) -> None:
    configure_logging(name, settings.log_level)
    server = uvicorn.Server(uvicorn.Config(app, host=settings.host, port=settings.port, log_config=None,
                                          timeout_keep_alive=settings.http_keep_alive_seconds,
                                          timeout_graceful_shutdown=20))
    app.state.server = server
    server.run()
    resources = getattr(app.state, "resources", None)
    if resources is not None and resources.failed is not None:
        sys.exit(3)
