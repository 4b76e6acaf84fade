"""A dead letter is logged with its origin and reason code, never with the error text (it may quote personal
data)."""

from __future__ import annotations

import logging
from types import SimpleNamespace

from shared.kafka import dead_letter


def test_a_dead_letter_is_logged_with_its_origin_and_reason_but_not_the_error_text(caplog):
    record = SimpleNamespace(topic="touchpoint.inbound.v1", partition=3, offset=41, key=b"k", value=b"{}",
                             headers=[])
    error = ValueError("cannot normalise the phone number of jane.doe@example.org")
    with caplog.at_level(logging.WARNING, logger="shared.kafka"):
        out = dead_letter(record, "invalid_identifier", error)

    assert out.topic == "touchpoint.inbound.v1.dlq"
    assert "jane.doe@example.org" in dict(out.headers)["__connect.errors.exception.message"].decode()
    [logged] = caplog.records
    assert (logged.topic, logged.partition, logged.offset, logged.reason, logged.error_class) == (
        "touchpoint.inbound.v1", 3, 41, "invalid_identifier", "ValueError")
    assert "jane.doe" not in logged.getMessage() and "jane.doe" not in str(vars(logged))
