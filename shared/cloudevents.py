"""CloudEvents 1.0 envelopes and their Kafka and HTTP encodings.

Kafka: Touchpoint writes binary content mode (data as the record value, ``content-type`` header, every other
attribute in a ``ce_<name>`` header, record key = partition key) and reads both binary and structured mode
(told apart by a ``content-type`` starting with ``application/cloudevents``).

Errors: every decoding problem raises :class:`InvalidEvent` with a machine-readable ``reason``; callers turn
it into an HTTP 4xx or a dead letter. Nothing else is raised for bad input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable, Mapping

import orjson

STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"
BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"
JSON = "application/json"
REQUIRED = ("id", "source", "specversion", "type")
CORE = {"id", "source", "specversion", "type", "time", "subject", "datacontenttype", "dataschema"}
_EXTENSION_NAME = re.compile(r"^[a-z0-9]{1,20}$")
MAX_ATTRIBUTE_LENGTH = 1024


class InvalidEvent(ValueError):
    """Bad input: ``reason`` is a stable code (e.g. ``invalid_json``), ``detail`` says what exactly."""

    def __init__(self, reason: str, detail: str, event_id: str | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.event_id = event_id


@dataclass(slots=True)
class CloudEvent:
    id: str
    source: str
    type: str
    data: Any = None
    time: datetime | None = None
    subject: str | None = None
    datacontenttype: str | None = JSON
    extensions: dict[str, str] = field(default_factory=dict)
    specversion: str = "1.0"

    @property
    def tenant(self) -> str | None:
        return self.extensions.get("tenant")


def from_attributes(attrs: Mapping[str, Any], data: Any) -> CloudEvent:
    """Build an event from decoded attributes, checking what CloudEvents 1.0 requires."""
    event_id = attrs.get("id") if isinstance(attrs.get("id"), str) else None
    for name in REQUIRED:
        value = attrs.get(name)
        if not isinstance(value, str) or not value:
            raise InvalidEvent("missing_attribute", f"required attribute '{name}' is missing or empty", event_id)
        if len(value) > MAX_ATTRIBUTE_LENGTH:
            raise InvalidEvent("invalid_attribute", f"attribute '{name}' is too long", event_id)
        if "\x00" in value:
            raise InvalidEvent("invalid_attribute", f"attribute '{name}' contains a NUL character", event_id)
    if attrs["specversion"] != "1.0":
        raise InvalidEvent("unsupported_specversion", f"specversion {attrs['specversion']!r} is not 1.0", event_id)
    extensions: dict[str, str] = {}
    for name, value in attrs.items():
        if name in CORE or name in ("data", "data_base64"):
            continue
        if not _EXTENSION_NAME.match(name):
            raise InvalidEvent("invalid_attribute", f"extension name {name!r} is not lowercase alphanumeric", event_id)
        if value is not None:
            extensions[name] = str(value)[:MAX_ATTRIBUTE_LENGTH]
    return CloudEvent(
        id=attrs["id"], source=attrs["source"], type=attrs["type"], data=data,
        time=_parse_time(attrs.get("time"), event_id), subject=attrs.get("subject"),
        datacontenttype=attrs.get("datacontenttype") or JSON, extensions=extensions,
    )


def _parse_time(value: Any, event_id: str | None) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise InvalidEvent("invalid_attribute", f"time {value!r} is not RFC 3339", event_id) from None
    if parsed.tzinfo is None:
        raise InvalidEvent("invalid_attribute", "time must carry a UTC offset", event_id)
    return parsed


def loads_json(raw: bytes | str, event_id: str | None = None) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent("invalid_json", str(exc), event_id) from None


def from_structured(obj: Any) -> CloudEvent:
    """A structured-mode event already parsed from JSON (HTTP body, or a structured Kafka record)."""
    if not isinstance(obj, dict):
        raise InvalidEvent("invalid_event", "a CloudEvent must be a JSON object")
    if "data_base64" in obj:
        raise InvalidEvent("unsupported_data", "binary data (data_base64) is not accepted", obj.get("id"))
    return from_attributes(obj, obj.get("data"))


def to_structured(event: CloudEvent) -> dict[str, Any]:
    out: dict[str, Any] = {"specversion": event.specversion, "id": event.id, "source": event.source,
                           "type": event.type}
    if event.time is not None:
        out["time"] = event.time.isoformat()
    if event.subject is not None:
        out["subject"] = event.subject
    out["datacontenttype"] = event.datacontenttype or JSON
    out.update(event.extensions)
    out["data"] = event.data
    return out


# --- Kafka -----------------------------------------------------------------------------------------------

Headers = Iterable[tuple[str, bytes]]


def from_kafka(value: bytes | None, headers: Headers) -> CloudEvent:
    """Decode a Kafka record in either content mode. Raises InvalidEvent."""
    hdrs: dict[str, str] = {}
    for name, raw in headers:
        try:
            hdrs[name.lower()] = raw.decode() if raw is not None else ""
        except UnicodeDecodeError:
            raise InvalidEvent("invalid_header", f"header {name!r} is not UTF-8") from None
    content_type = hdrs.get("content-type", "")
    if content_type.startswith("application/cloudevents"):
        if value is None:
            raise InvalidEvent("invalid_event", "structured-mode record without a value")
        return from_structured(loads_json(value))
    attrs = {name[3:]: v for name, v in hdrs.items() if name.startswith("ce_")}
    attrs.setdefault("datacontenttype", content_type or JSON)
    event_id = attrs.get("id")
    data = None if value is None else loads_json(value, event_id)
    return from_attributes(attrs, data)


def to_kafka_headers(event: CloudEvent, extra: Mapping[str, str] | None = None) -> list[tuple[str, bytes]]:
    """Binary-mode headers for ``event``; the caller serialises the data as the record value."""
    headers = [
        ("ce_specversion", event.specversion.encode()),
        ("ce_id", event.id.encode()),
        ("ce_source", event.source.encode()),
        ("ce_type", event.type.encode()),
        ("content-type", (event.datacontenttype or JSON).encode()),
    ]
    if event.time is not None:
        headers.append(("ce_time", event.time.isoformat().encode()))
    if event.subject is not None:
        headers.append(("ce_subject", event.subject.encode()))
    headers.extend((f"ce_{name}", value.encode()) for name, value in event.extensions.items())
    if extra:
        headers.extend((name, value.encode()) for name, value in extra.items())
    return headers
