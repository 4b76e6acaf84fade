"""JSON Schema of every event type's data, generated from the pydantic models.

``python -m shared.contracts.schemas`` rewrites ``shared/contracts/schemas/``; a test fails when the committed
files differ from what the models generate, so a contract never changes unnoticed.
"""

from __future__ import annotations

import json

from shared.contracts import MODELS, SCHEMAS_DIR


def render(event_type: str) -> str:
    schema = MODELS[event_type].model_json_schema()
    schema["$id"] = f"https://touchpoint.dev/schemas/{event_type}.json"
    schema["x-cloudevents-type"] = event_type
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def write_all() -> list[str]:
    SCHEMAS_DIR.mkdir(exist_ok=True)
    for event_type in MODELS:
        (SCHEMAS_DIR / f"{event_type}.json").write_text(render(event_type))
    return sorted(MODELS)


if __name__ == "__main__":
    for name in write_all():
        print(f"wrote schemas/{name}.json")
