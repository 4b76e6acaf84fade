"""JSON logs carry the current trace id and the extra fields, one object per line."""

from __future__ import annotations

import json
import logging

import pytest
from opentelemetry.sdk.trace import TracerProvider

from shared.logs import JsonFormatter

pytestmark = pytest.mark.unit


def test_log_line_is_json_with_trace_id():
    formatter = JsonFormatter("identity")
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "customers merged", (), None)
    record.merges = 3
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("identity.resolve") as span:
        line = json.loads(formatter.format(record))
    assert line["trace_id"] == f"{span.get_span_context().trace_id:032x}"
    assert line["service"] == "identity" and line["msg"] == "customers merged" and line["merges"] == 3


def test_log_line_without_a_span_has_no_trace_id():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "started", (), None)
    assert "trace_id" not in json.loads(JsonFormatter("timeline").format(record))
