"""Composition root of the feedback service."""

from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider

from services.feedback import api
from services.feedback.config import ConfigSource
from services.feedback.service import FeedbackService
from services.feedback.settings import FeedbackSettings
from shared import topics
from shared.loops import run_every
from shared.runtime import Resources, build_service


def build_app(settings: FeedbackSettings, tracer_provider: TracerProvider | None = None) -> FastAPI:
    config_source = ConfigSource(settings.feedback_config)

    def wire(res: Resources, app: FastAPI) -> None:
        events = res.metrics.counter("touchpoint_feedback_events_total", "Feedback events by kind", ("kind",))
        labels = ("tenant", "metric", "dimension", "key")
        score = res.metrics.gauge("touchpoint_feedback_score", "NPS (-100..100), CSAT (% 4-5) or CES (mean 1-7)", labels)
        responses = res.metrics.gauge("touchpoint_feedback_responses", "Responses behind touchpoint_feedback_score",
                                      labels)
        service = FeedbackService(res.pool, res.producer, config_source, res.topic(topics.FEEDBACK.name),
                                  settings.survey_secret, phone_region=settings.default_phone_region,
                                  on_event=lambda kind: events.labels(kind).inc())
        app.state.service = service
        app.state.config_source = config_source
        res.subscribe(topics.FEEDBACK_INBOUND.name, settings.group_id, service.process_inbound)
        res.subscribe(topics.BUSINESS.name, settings.group_id, service.process_business)
        res.subscribe(topics.ROUTING.name, settings.group_id, service.process_routing)
        res.subscribe(topics.IDENTITY.name, settings.group_id, service.process_identity)
        res.subscribe(topics.CUSTOMERS.name, settings.group_id, service.process_customers)
        res.subscribe(topics.AGENTS.name, settings.group_id, service.process_agents)

        async def invitations() -> None:
            await service.run(settings.tick_interval_s)

        async def gauges() -> None:
            await run_every(lambda: service.refresh_gauges(score, responses), settings.gauge_interval_s,
                            "feedback gauges")

        res.background.extend([invitations, gauges])

    app = build_service("feedback", settings, wire, title="Touchpoint feedback", tracer_provider=tracer_provider)
    app.include_router(api.router)
    return app
