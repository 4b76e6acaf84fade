"""Tracing: one trace per event across every hop, carried in W3C ``traceparent`` Kafka headers.

Off by default: without ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT``) no tracer provider is made
and every step is a shared no-op object, so tracing costs nothing. With it, spans are exported over OTLP/HTTP,
configured by the standard ``OTEL_*`` variables (``OTEL_SERVICE_NAME``, ``OTEL_EXPORTER_OTLP_HEADERS``, ...).

Services consume in batches, so spans are per event, not per batch: ``Steps.start`` opens a span named after
the business step (``identity.resolve``) whose parent is the context in the incoming record's headers, and
``Step.headers()`` gives the headers that carry it into the record the step produces.
"""

from __future__ import annotations

import os
from typing import Iterable, Mapping

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

PROPAGATOR = TraceContextTextMapPropagator()
TRACE_HEADERS = ("traceparent", "tracestate")


def provider_from_environment(service: str) -> TracerProvider | None:
    """A provider exporting over OTLP when the standard variables ask for it; None (tracing off) otherwise."""
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return None
    if not (os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")):
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: PLC0415 - only when on

    name = os.environ.get("OTEL_SERVICE_NAME", f"touchpoint-{service}")
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


class Step:
    def __init__(self, span: trace.Span) -> None:
        self.span = span

    def headers(self) -> list[tuple[str, bytes]]:
        carrier: dict[str, str] = {}
        PROPAGATOR.inject(carrier, context=trace.set_span_in_context(self.span))
        return [(k, v.encode()) for k, v in carrier.items()]

    def end(self, error: BaseException | None = None) -> None:
        if error is not None:
            self.span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        self.span.end()


class _NoStep(Step):
    def __init__(self) -> None:  # noqa: D107 - no span at all
        pass

    def headers(self) -> list[tuple[str, bytes]]:
        return []

    def end(self, error: BaseException | None = None) -> None:
        return None


NO_STEP = _NoStep()


class Steps:
    """Starts business-step spans for one service; a no-op when tracing is off."""

    def __init__(self, provider: TracerProvider | None, service: str) -> None:
        self._tracer = provider.get_tracer(f"touchpoint.{service}") if provider else None

    @property
    def enabled(self) -> bool:
        return self._tracer is not None

    def start(self, name: str, headers: Iterable[tuple[str, bytes]] | Mapping[str, str] | None = None,
              kind: SpanKind = SpanKind.CONSUMER, **attributes: str | int) -> Step:
        if self._tracer is None:
            return NO_STEP
        carrier = _carrier(headers)
        context = PROPAGATOR.extract(carrier) if carrier else None
        return Step(self._tracer.start_span(name, context=context, kind=kind, attributes=attributes))


def _carrier(headers: Iterable[tuple[str, bytes]] | Mapping[str, str] | None) -> dict[str, str]:
    if not headers:
        return {}
    if isinstance(headers, Mapping):
        return {k.lower(): v for k, v in headers.items() if k.lower() in TRACE_HEADERS}
    return {k: v.decode() for k, v in headers if k in TRACE_HEADERS and v is not None}


def end_all(steps: Iterable[Step], error: BaseException | None = None) -> None:
    for step in steps:
        step.end(error)
