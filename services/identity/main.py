"""Composition root of the identity service."""

from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider

from services.identity import api
from services.identity.privacy import ErasureRequests
from services.identity.rules import RulesSource
from services.identity.service import IdentityService
from services.identity.settings import IdentitySettings
from shared import topics
from shared.runtime import Resources, build_service


def build_app(settings: IdentitySettings, tracer_provider: TracerProvider | None = None) -> FastAPI:
    rules = RulesSource(settings.identity_config)

    def wire(res: Resources, app: FastAPI) -> None:
        app.state.rules = rules
        service = IdentityService(
            res.pool, res.producer, output_topic=res.topic(topics.IDENTITY.name), steps=res.steps,
            on_created=res.metrics.counter("touchpoint_customers_created_total", "Customers created").inc,
            on_merged=res.metrics.counter("touchpoint_customers_merged_total", "Customers merged into another").inc,
            rules=rules.tenant,
        )
        app.state.service = service
        res.subscribe(topics.INGESTED.name, settings.group_id, service.process, settings.resolve_consumers)
        requests = ErasureRequests(res.pool, res.producer, service.publish_pending_merges,
                                   settings.default_phone_region, service.vault)
        res.subscribe(topics.PRIVACY.name, settings.group_id, requests.process)

    app = build_service("identity", settings, wire, title="Touchpoint identity", tracer_provider=tracer_provider)
    app.include_router(api.router)
    return app
