from datetime import datetime, timezone

import orjson
import pytest

from shared.cloudevents import (
    STRUCTURED_CONTENT_TYPE,
    CloudEvent,
    InvalidEvent,
    from_kafka,
    from_structured,
    to_kafka_headers,
    to_structured,
)

pytestmark = pytest.mark.unit

TIME = datetime(2024, 5, 1, 12, 30, tzinfo=timezone.utc)


def make_event(**overrides) -> CloudEvent:
    fields = dict(
        id="evt-1", source="crm", type="touchpoint.interaction.occurred.v1", data={"channel": "email"},
        time=TIME, subject="case-7", extensions={"tenant": "acme"},
    )
    fields.update(overrides)
    return CloudEvent(**fields)


def binary_headers(**attrs: str) -> list[tuple[str, bytes]]:
    base = {"specversion": "1.0", "id": "evt-1", "source": "crm", "type": "t.v1"}
    base.update(attrs)
    return [(f"ce_{k}", v.encode()) for k, v in base.items() if v is not None] + [
        ("content-type", b"application/json")
    ]


def reason_of(exc_info) -> str:
    return exc_info.value.reason


def test_binary_round_trip():
    event = make_event()
    headers = to_kafka_headers(event, extra={"traceparent": "00-abc-def-01"})
    decoded = from_kafka(orjson.dumps(event.data), headers)
    assert decoded == event
    assert decoded.tenant == "acme"


def test_binary_without_value_has_no_data():
    decoded = from_kafka(None, binary_headers())
    assert decoded.data is None
    assert decoded.time is None


def test_structured_record_is_decoded():
    body = {"specversion": "1.0", "id": "evt-2", "source": "shop", "type": "t.v1",
            "time": "2024-05-01T12:30:00Z", "tenant": "acme", "data": {"x": 1}}
    decoded = from_kafka(orjson.dumps(body), [("content-type", STRUCTURED_CONTENT_TYPE.encode())])
    assert (decoded.id, decoded.source, decoded.type, decoded.data) == ("evt-2", "shop", "t.v1", {"x": 1})
    assert decoded.time == TIME
    assert decoded.tenant == "acme"


@pytest.mark.parametrize("missing", ["id", "source", "specversion", "type"])
def test_missing_required_attribute(missing):
    with pytest.raises(InvalidEvent) as exc_info:
        from_kafka(b"{}", binary_headers(**{missing: None}))
    assert reason_of(exc_info) == "missing_attribute"
    assert missing in exc_info.value.detail


def test_empty_required_attribute_is_missing():
    with pytest.raises(InvalidEvent) as exc_info:
        from_structured({"specversion": "1.0", "id": "", "source": "s", "type": "t"})
    assert reason_of(exc_info) == "missing_attribute"


def test_bad_json_value():
    with pytest.raises(InvalidEvent) as exc_info:
        from_kafka(b"{not json", binary_headers())
    assert reason_of(exc_info) == "invalid_json"
    assert exc_info.value.event_id == "evt-1"


def test_bad_json_structured_record():
    with pytest.raises(InvalidEvent) as exc_info:
        from_kafka(b"{not json", [("content-type", STRUCTURED_CONTENT_TYPE.encode())])
    assert reason_of(exc_info) == "invalid_json"


def test_unsupported_specversion():
    with pytest.raises(InvalidEvent) as exc_info:
        from_kafka(b"{}", binary_headers(specversion="0.3"))
    assert reason_of(exc_info) == "unsupported_specversion"


@pytest.mark.parametrize("time", ["yesterday", "2024-05-01T12:30:00"])  # garbage; no UTC offset
def test_bad_time(time):
    with pytest.raises(InvalidEvent) as exc_info:
        from_kafka(b"{}", binary_headers(time=time))
    assert reason_of(exc_info) == "invalid_attribute"


def test_non_utf8_header():
    headers = binary_headers() + [("ce_tenant", b"\xff\xfe")]
    with pytest.raises(InvalidEvent) as exc_info:
        from_kafka(b"{}", headers)
    assert reason_of(exc_info) == "invalid_header"


@pytest.mark.parametrize("name", ["Tenant", "my_ext", "x" * 21])
def test_invalid_extension_name(name):
    with pytest.raises(InvalidEvent) as exc_info:
        from_structured({"specversion": "1.0", "id": "e", "source": "s", "type": "t", name: "v"})
    assert reason_of(exc_info) == "invalid_attribute"


def test_invalid_extension_name_in_binary_mode():
    with pytest.raises(InvalidEvent) as exc_info:
        from_kafka(b"{}", binary_headers(**{"my-ext": "v"}))
    assert reason_of(exc_info) == "invalid_attribute"


def test_data_base64_rejected():
    with pytest.raises(InvalidEvent) as exc_info:
        from_structured({"specversion": "1.0", "id": "e", "source": "s", "type": "t", "data_base64": "AAE="})
    assert reason_of(exc_info) == "unsupported_data"


def test_structured_must_be_an_object():
    with pytest.raises(InvalidEvent) as exc_info:
        from_structured(["not", "an", "object"])
    assert reason_of(exc_info) == "invalid_event"


def test_structured_round_trip():
    event = make_event()
    structured = to_structured(event)
    assert structured["tenant"] == "acme"
    assert from_structured(orjson.loads(orjson.dumps(structured))) == event


def test_structured_round_trip_minimal_event():
    event = CloudEvent(id="e", source="s", type="t")
    assert from_structured(to_structured(event)) == event
