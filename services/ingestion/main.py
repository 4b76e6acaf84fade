"""Composition root of the ingestion service."""

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.middleware.cors import CORSMiddleware
from opentelemetry.sdk.trace import TracerProvider

from services.ingestion import handlers, webchat, webhooks
from services.ingestion.admission import Admission, AdmissionLimits, Overloaded, watch_lag
from services.ingestion.connectors.config import ConnectorsConfig, load_connectors
from services.ingestion.connectors.intake import ConnectorIntake
from services.ingestion.connectors.repository import EmailThreads, RawPayloadLog, WebchatStore
from services.ingestion.pipeline import IngestionPipeline
from services.ingestion.settings import IngestionSettings
from services.ingestion.smtp import serve_smtp
from shared import topics
from shared.db import ALL_TENANTS, tenant_scope
from shared.httpapi import error_body
from shared.loops import run_every
from shared.ops import LagProbe
from shared.runtime import Resources, build_service

log = logging.getLogger(__name__)


def build_app(settings: IngestionSettings, tracer_provider: TracerProvider | None = None) -> FastAPI:
    connectors = load_connectors(settings.connectors, settings.connectors_file)

    def wire(res: Resources, app: FastAPI) -> None:
        admission = Admission(AdmissionLimits(
            max_in_flight=settings.max_in_flight_publishes, max_lag=settings.max_consumer_lag,
            publish_timeout=settings.publish_timeout_seconds, retry_after=settings.retry_after_seconds))
        pipeline = IngestionPipeline(
            res.pool, res.producer,
            inbound_topic=res.topic(topics.INBOUND.name),
            ingested_topic=res.topic(topics.INGESTED.name),
            default_tenant=settings.default_tenant,
            phone_region=settings.default_phone_region,
            steps=res.steps,
            on_duplicates=res.metrics.counter(
                "touchpoint_duplicate_events_total", "Upstream events dropped as already forwarded").inc,
            admission=admission,
        )
        watch_backlog(res, admission, settings)
        app.state.pipeline = pipeline
        app.state.max_body_bytes = settings.max_body_bytes
        wire_connectors(res, app, settings, connectors, pipeline)
        res.subscribe(topics.INBOUND.name, settings.group_id, pipeline.process_inbound)

    app = build_service("ingestion", settings, wire, title="Touchpoint ingestion", tracer_provider=tracer_provider)
    app.include_router(handlers.router)

    @app.exception_handler(Overloaded)
    async def _overloaded(_: Request, exc: Overloaded) -> JSONResponse:
        return JSONResponse(error_body(exc.reason, exc.detail), status_code=exc.status,
                            headers={"Retry-After": str(exc.retry_after)})

    app.include_router(webhooks.router)
    app.include_router(webchat.router)
    origins = sorted({o for c in connectors.values() if c.webchat
                      for site in c.webchat.site_keys.values() for o in site.origins})
    if origins:
        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type", "X-Site-Key", "Last-Event-ID"])
    if settings.smtp_enabled:
        serve_smtp(app, settings.smtp_host, settings.smtp_port, settings.smtp_max_message_bytes)
    return app


def watch_backlog(res: Resources, admission: Admission, settings: IngestionSettings) -> None:
    """Measure the pipeline's consumer backlog in the background, for the 429 limit."""
    if not settings.max_consumer_lag:
        return
    probe = LagProbe(settings.kafka_bootstrap_servers, settings.topic_prefix)

    async def backlog_watch() -> None:
        try:
            await watch_lag(admission, probe.max_lag, settings.lag_check_seconds,
                            lambda exc: log.warning("lag probe failed", extra={"error": type(exc).__name__}))
        finally:
            await probe.stop()

    res.background.append(backlog_watch)


def wire_connectors(res: Resources, app: FastAPI, settings: IngestionSettings, connectors: ConnectorsConfig,
                    pipeline: IngestionPipeline) -> None:
    """Channel connectors (docs/connectors.md): webhooks, web chat and, when enabled, the SMTP listener."""
    raw_payloads = RawPayloadLog(res.pool, settings.raw_payload_max_bytes)
    app.state.intake = ConnectorIntake(connectors, pipeline, raw_payloads)

    async def forget_erased() -> None:  # raw payloads of erased customers; every tenant's
        with tenant_scope(ALL_TENANTS):
            await run_every(raw_payloads.forget_shredded, settings.raw_payload_sweep_seconds, "raw payload sweep")

    res.background.append(forget_erased)
    app.state.public_url = settings.public_url
    app.state.webchat = WebchatStore(res.pool)
    app.state.reply_hub = webchat.ReplyHub()
    app.state.email_threads = EmailThreads(res.pool)
