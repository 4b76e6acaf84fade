"""Composition root of the timeline service."""

import asyncio

import httpx
from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider

from services.timeline import api, console_api, keys_api
from services.timeline.consent import ConsentProjection
from services.timeline.live import LiveHub
from services.timeline.projection import TimelineProjection
from services.timeline.settings import TimelineSettings
from shared import topics
from shared.runtime import Resources, build_service


def build_app(settings: TimelineSettings, tracer_provider: TracerProvider | None = None) -> FastAPI:
    def wire(res: Resources, app: FastAPI) -> None:
        projection = TimelineProjection(
            res.pool, res.producer,
            timeline_topic=res.topic(topics.TIMELINE.name),
            customers_topic=res.topic(topics.CUSTOMERS.name),
            steps=res.steps,
            on_stored=res.metrics.counter("touchpoint_timeline_entries_total", "Timeline entries stored").inc,
        )
        consent = ConsentProjection(res.pool, res.producer, settings.default_phone_region)
        app.state.projection = projection
        res.subscribe(topics.IDENTITY.name, settings.group_id, projection.process)
        res.subscribe(topics.ROUTING.name, settings.group_id, projection.process)
        res.subscribe(topics.NOTIFICATIONS.name, settings.group_id, projection.process)
        res.subscribe(topics.FEEDBACK.name, settings.group_id, projection.process)
        res.subscribe(topics.CONSENT.name, settings.group_id, consent.process)
        app.state.live_hub = LiveHub(settings.database_url.get_secret_value())
        app.state.peer_client = httpx.AsyncClient()

        async def close_console_clients() -> None:
            try:
                await asyncio.Event().wait()
            finally:
                await app.state.peer_client.aclose()
                await app.state.live_hub.close()

        res.background.append(close_console_clients)

    app = build_service("timeline", settings, wire, title="Touchpoint timeline", tracer_provider=tracer_provider)
    app.include_router(api.router)
    app.include_router(keys_api.router)
    app.include_router(console_api.router)
    app.include_router(console_api.page_router)
    return app
