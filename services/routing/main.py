"""Composition root of the routing service."""

from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider

from services.routing import api
from services.routing.config import ConfigSource
from services.routing.domain.clock import Clock, ScaledClock, SystemClock
from services.routing.service import RoutingService
from services.routing.settings import RoutingSettings
from shared import topics
from shared.runtime import Resources, build_service


def make_clock(settings: RoutingSettings) -> Clock:
    if settings.clock_speed == 1.0 and settings.clock_origin is None:
        return SystemClock()
    if settings.clock_origin is None:
        raise ValueError("TOUCHPOINT_CLOCK_ORIGIN is required with TOUCHPOINT_CLOCK_SPEED")
    return ScaledClock(settings.clock_origin, settings.clock_speed)


def build_app(settings: RoutingSettings, tracer_provider: TracerProvider | None = None) -> FastAPI:
    clock = make_clock(settings)
    config_source = ConfigSource(settings.routing_config)

    def wire(res: Resources, app: FastAPI) -> None:
        events = res.metrics.counter("touchpoint_routing_events_total", "Routing events by kind", ("kind",))
        service = RoutingService(res.pool, res.producer, config_source, clock, res.topic(topics.ROUTING.name),
                                 on_event=lambda kind: events.labels(kind).inc())
        app.state.service = service
        app.state.config_source = config_source
        res.subscribe(topics.IDENTITY.name, settings.group_id, service.process_identity)
        res.subscribe(topics.AGENTS.name, settings.group_id, service.process_agents)
        res.subscribe(topics.CONVERSATIONS.name, settings.group_id, service.process_conversations)
        res.subscribe(topics.NOTIFICATIONS.name, settings.group_id, service.process_notifications)
        res.subscribe(topics.FEEDBACK.name, settings.group_id, service.process_feedback)

        async def timers() -> None:
            await service.run_timers(settings.timer_interval_s)

        res.background.append(timers)

    app = build_service("routing", settings, wire, title="Touchpoint routing", tracer_provider=tracer_provider)
    app.include_router(api.router)
    return app
