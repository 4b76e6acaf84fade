"""Writes the API documents of every service: ``docs/asyncapi/<service>.json`` (AsyncAPI 3.0, from the topic
registry and the contracts' JSON Schemas) and ``docs/openapi/<service>.json`` (from each FastAPI app).

Run ``.venv/bin/python docs/generate.py`` after changing a contract, a topic or a route; a test fails while the
committed documents differ from what this renders.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared.contracts import MODELS  # noqa: E402
from shared.topics import REGISTRY, TopicSpec  # noqa: E402

SERVICES = ("ingestion", "identity", "timeline", "routing", "notification", "feedback")
CE_HEADERS = {
    "type": "object",
    "required": ["ce_specversion", "ce_id", "ce_source", "ce_type"],
    "properties": {
        "ce_specversion": {"const": "1.0"}, "ce_id": {"type": "string"}, "ce_source": {"type": "string"},
        "ce_type": {"type": "string"}, "ce_time": {"type": "string", "format": "date-time"},
        "ce_tenant": {"type": "string"}, "content-type": {"const": "application/json"},
        "traceparent": {"type": "string", "description": "W3C trace context"},
    },
}


def _channel_id(name: str) -> str:
    return name.replace(".", "_")


def _dead_letter_message() -> dict:
    return {"name": "dead-letter", "summary": "The original record with Kafka-Connect-style error headers",
            "headers": {"type": "object", "properties": {h: {"type": "string"} for h in (
                "__connect.errors.topic", "__connect.errors.partition", "__connect.errors.offset",
                "__connect.errors.exception.class.name", "__connect.errors.exception.message",
                "touchpoint.errors.reason")}}}


def asyncapi(service: str) -> dict:
    channels, operations, messages = {}, {}, {}
    consumed = [s for s in REGISTRY if service in s.consumers]
    produced = [s for s in REGISTRY if s.producer == service]

    def add(spec: TopicSpec, action: str) -> None:
        cid = _channel_id(spec.name)
        channels[cid] = {"address": spec.name, "description": f"key: {spec.key}" + (" (compacted)" if spec.compacted else ""),
                         "messages": {t.replace(".", "_"): {"$ref": f"#/components/messages/{t.replace('.', '_')}"}
                                      for t in spec.event_types}}
        for t in spec.event_types:
            messages[t.replace(".", "_")] = {
                "name": t, "contentType": "application/json", "headers": CE_HEADERS,
                "payload": MODELS[t].model_json_schema(ref_template="#/components/messages/" + t.replace(".", "_") + "/payload/$defs/{model}"),
                "bindings": {"kafka": {"key": {"type": "string", "description": spec.key}}},
            }
        operations[f"{action}_{cid}"] = {"action": action, "channel": {"$ref": f"#/channels/{cid}"},
                                         "summary": f"{action} {', '.join(spec.event_types)}"}

    for spec in consumed:
        add(spec, "receive")
        dlq = _channel_id(spec.dead_letter())
        channels[dlq] = {"address": spec.dead_letter(), "description": "records this service could not accept",
                         "messages": {"dead_letter": {"$ref": "#/components/messages/dead_letter"}}}
        messages["dead_letter"] = _dead_letter_message()
        operations[f"send_{dlq}"] = {"action": "send", "channel": {"$ref": f"#/channels/{dlq}"}}
    for spec in produced:
        add(spec, "send")
    return {
        "asyncapi": "3.0.0",
        "info": {"title": f"Touchpoint {service}", "version": "0.1.0",
                 "description": "CloudEvents 1.0 in Kafka binary content mode; structured mode is accepted on input."},
        "defaultContentType": "application/json",
        "servers": {"local": {"host": "127.0.0.1:19092", "protocol": "kafka"}},
        "channels": channels, "operations": operations, "components": {"messages": messages},
    }


def openapi(service: str) -> dict:
    module = __import__(f"services.{service}.main", fromlist=["build_app"])
    settings = __import__(f"services.{service}.settings", fromlist=["x"])
    cls = next(v for k, v in vars(settings).items() if k.endswith("Settings") and k != "ServiceSettings")
    return module.build_app(cls()).openapi()


def render() -> dict[Path, str]:
    out = {}
    for service in SERVICES:
        out[ROOT / "docs" / "asyncapi" / f"{service}.json"] = json.dumps(asyncapi(service), indent=2, sort_keys=True) + "\n"
        out[ROOT / "docs" / "openapi" / f"{service}.json"] = json.dumps(openapi(service), indent=2, sort_keys=True) + "\n"
    return out


if __name__ == "__main__":
    for path, text in render().items():
        path.write_text(text)
        print(f"wrote {path.relative_to(ROOT)}")
