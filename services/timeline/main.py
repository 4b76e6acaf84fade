"""Composition root of the timeline service."""

from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider

from services.timeline import api
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
        app.state.projection = projection
        res.subscribe(topics.IDENTITY.name, settings.group_id, projection.process)
        res.subscribe(topics.ROUTING.name, settings.group_id, projection.process)
        res.subscribe(topics.NOTIFICATIONS.name, settings.group_id, projection.process)
        res.subscribe(topics.FEEDBACK.name, settings.group_id, projection.process)

    app = build_service("timeline", settings, wire, title="Touchpoint timeline", tracer_provider=tracer_provider)
    app.include_router(api.router)
    return app
