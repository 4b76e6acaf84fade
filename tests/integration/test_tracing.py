"""One interaction over HTTP gives one trace with spans from ingestion, identity and timeline: the three
services run in this process with an in-memory span exporter, and the trace context travels through real
Kafka headers between them."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

import httpx
import orjson
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.identity.main import build_app as identity_app
from services.identity.settings import IdentitySettings
from services.ingestion.main import build_app as ingestion_app
from services.ingestion.settings import IngestionSettings
from services.timeline.main import build_app as timeline_app
from services.timeline.settings import TimelineSettings
from tests.support import kafka_io
from tests.support.stack import new_stack

pytestmark = pytest.mark.integration


async def test_one_trace_spans_ingestion_identity_and_timeline(infra):
    stack = await new_stack(infra.bootstrap_servers, infra.admin_dsn)
    common = dict(kafka_bootstrap_servers=stack.bootstrap_servers, database_url=stack.database_url,
                  topic_prefix=stack.prefix)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    apps = [ingestion_app(IngestionSettings(**common), provider), identity_app(IdentitySettings(**common), provider),
            timeline_app(TimelineSettings(**common), provider)]
    key = await stack.api_key("traced", ["ingest"])
    event = {"specversion": "1.0", "id": "trace-1", "source": "crm", "type": "touchpoint.interaction.occurred.v1",
             "data": {"channel": "chat", "direction": "inbound", "identifiers": [{"type": "user_id", "value": "u-1"}]}}
    async with AsyncExitStack() as running:
        for app in apps:
            await running.enter_async_context(app.router.lifespan_context(app))
        transport = httpx.ASGITransport(app=apps[0])
        async with httpx.AsyncClient(transport=transport, base_url="http://ingestion") as client:
            resp = await client.post("/v1/events", content=orjson.dumps(event), headers={
                "Authorization": f"Bearer {key}", "Content-Type": "application/cloudevents+json"})
            assert resp.status_code == 202, resp.text

        async def timeline_span():
            return [s for s in exporter.get_finished_spans() if s.name == "timeline.append"]

        await kafka_io.wait_for(timeline_span, timeout=60, what="the timeline span")
        await asyncio.sleep(0.2)
    spans = exporter.get_finished_spans()
    names = {s.name for s in spans}
    assert {"ingestion.accept", "ingestion.normalise", "identity.resolve", "timeline.append"} <= names
    assert len({s.context.trace_id for s in spans}) == 1, "every span belongs to the one trace"
    by_id = {s.context.span_id: s for s in spans}
    chain = [s.name for s in sorted(spans, key=lambda s: s.start_time)]
    for span in spans:
        if span.name != "ingestion.accept":
            assert span.parent is not None and span.parent.span_id in by_id, f"{span.name} has its parent in the trace"
    print(f"\none trace {spans[0].context.trace_id:032x}: {' -> '.join(chain)}")
