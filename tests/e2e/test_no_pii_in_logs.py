"""No personal data in the logs, even at DEBUG: a canary carried in identifiers and text through the good path,
the HTTP refusal path and the dead-letter path never appears in any service's log."""

from __future__ import annotations

import uuid

import httpx
import orjson
import pytest

from tests.support import checks, kafka_io
from tests.support.stack import new_stack

pytestmark = pytest.mark.e2e


def canary_event(canary: str, n: int) -> dict:
    return {"specversion": "1.0", "id": f"{canary}-{n}", "source": "crm", "type": "touchpoint.interaction.occurred.v1",
            "data": {"channel": "email", "direction": "inbound", "occurred_at": "2026-11-01T10:00:00Z",
                     "identifiers": [{"type": "email", "value": f"{canary.lower()}@example.org"},
                                     {"type": "phone", "value": "+49 30 5550199"}],
                     "subject": f"complaint {canary}", "text": f"my name is {canary}, call me back"}}


async def test_a_canary_in_personal_fields_never_reaches_the_logs(infra):
    canary = f"CANARY{uuid.uuid4().hex[:12].upper()}"
    stack = await new_stack(infra.bootstrap_servers, infra.admin_dsn)
    procs = [stack.start(s, TOUCHPOINT_LOG_LEVEL="DEBUG") for s in ("ingestion", "identity", "timeline")]
    try:
        for proc in procs:
            await proc.wait_ready()
        key = await stack.api_key("pii", ["ingest", "read"])
        auth = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(base_url=stack.processes["ingestion"].url, timeout=30) as client:
            good = await client.post("/v1/events", content=orjson.dumps([canary_event(canary, n) for n in range(5)]),
                                     headers={**auth, "Content-Type": "application/cloudevents-batch+json"})
            bad_data = canary_event(canary, 9)
            bad_data["data"]["channel"] = f"pigeon-{canary}"
            refused = await client.post("/v1/events", content=orjson.dumps(bad_data),
                                        headers={**auth, "Content-Type": "application/cloudevents+json"})
            broken = await client.post("/v1/events", content=f'{{"id": "{canary}", '.encode(),
                                       headers={**auth, "Content-Type": "application/cloudevents+json"})
        assert (good.status_code, refused.status_code, broken.status_code) == (202, 400, 400)
        inbound = stack.topic("touchpoint.inbound.v1")
        poison = [(canary.encode(), f'{{"text": "{canary}"'.encode(), [("ce_id", canary.encode())]),
                  (canary.encode(), orjson.dumps({**canary_event(canary, 7)["data"], "channel": canary}),
                   [("ce_specversion", b"1.0"), ("ce_id", b"x-7"), ("ce_source", b"crm"),
                    ("ce_type", b"touchpoint.interaction.occurred.v1"), ("ce_tenant", b"pii")])]
        await kafka_io.publish(stack.bootstrap_servers, inbound, poison)

        async def settled():
            parked = await kafka_io.read_all(stack.bootstrap_servers, inbound + ".dlq")
            return len(parked) >= 2 and await checks.timeline_count(stack, "pii") >= 5

        await kafka_io.wait_for(settled, timeout=60, what="5 entries stored and 2 dead letters")
    finally:
        stack.stop_all()
    logs = {p.name: p.read_text(errors="replace") for p in (proc.log_path for proc in procs)}
    lines = sum(text.count("\n") for text in logs.values())
    leaks = {name: text.count(canary) + text.lower().count(canary.lower()) for name, text in logs.items()}
    assert lines > 60, "the services logged"
    assert sum(leaks.values()) == 0, f"canary in the logs: {leaks}"
    print(f"\nPII in logs: canary in identifiers, subject, text, a refused event, broken JSON and 2 dead letters; "
          f"{lines} DEBUG log lines from 3 services contain it 0 times")
