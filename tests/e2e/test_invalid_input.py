"""Bad input over HTTP and Kafka: a 4xx with a reason or the dead-letter topic with the error; good events in the
same batch arrive untouched."""

from __future__ import annotations

import httpx
import orjson
import pytest

from tests.support import checks, kafka_io
from tests.support.data import generate

pytestmark = pytest.mark.e2e
STRUCTURED = {"Content-Type": "application/cloudevents+json"}
BATCH = {"Content-Type": "application/cloudevents-batch+json"}


async def test_invalid_events_are_refused_or_dead_lettered(stack):
    tenant = "badco"
    good = generate(tenant, people=3, events=6, seed=9)
    key = await stack.api_key(tenant, ["ingest", "read"])
    auth = {"Authorization": f"Bearer {key}"}
    missing_source = {k: v for k, v in good[1].structured().items() if k != "source"}
    unknown_channel = {**good[2].structured(), "id": "bad-channel", "data": {**good[2].data, "channel": "pigeon"}}
    async with httpx.AsyncClient(base_url=stack.processes["ingestion"].url, timeout=30) as client:
        resp = await client.post("/v1/events", content=b'{"specversion": "1.0", "id": ', headers={**auth, **STRUCTURED})
        assert resp.status_code == 400 and resp.json()["error"]["reason"] == "invalid_json"
        resp = await client.post("/v1/events", content=b"x" * (2 * 1024 * 1024), headers={**auth, **STRUCTURED})
        assert resp.status_code == 413 and resp.json()["error"]["reason"] == "payload_too_large"
        resp = await client.post("/v1/events", content=b"{}", headers={**auth, "Content-Type": "text/plain"})
        assert resp.status_code == 415
        resp = await client.post("/v1/events", content=orjson.dumps(good[0].structured()), headers=STRUCTURED)
        assert resp.status_code == 401 and resp.json()["error"]["reason"] == "missing_api_key"
        read_only = await stack.api_key(tenant, ["read"])
        resp = await client.post("/v1/events", content=orjson.dumps(good[0].structured()),
                                 headers={"Authorization": f"Bearer {read_only}", **STRUCTURED})
        assert resp.status_code == 403
        batch = [good[0].structured(), missing_source, unknown_channel, good[3].structured()]
        resp = await client.post("/v1/events", content=orjson.dumps(batch), headers={**auth, **BATCH})
        assert resp.status_code == 207, resp.text
        body = resp.json()
        assert body["accepted"] == [good[0].id, good[3].id]
        assert [(r["index"], r["reason"]) for r in body["rejected"]] == [(1, "missing_attribute"), (2, "invalid_data")]
        assert "example.org" not in resp.text, "rejections never echo personal data"

    inbound = stack.topic("touchpoint.inbound.v1")
    bad_json = (b"k1", b"{not json", kafka_io.binary_record(good[4])[2])
    no_id = (b"k2", orjson.dumps(good[4].data), [h for h in kafka_io.binary_record(good[4])[2] if h[0] != "ce_id"])
    pigeon = kafka_io.binary_record(good[4])
    pigeon = (pigeon[0], orjson.dumps({**good[4].data, "channel": "pigeon"}),
              [h if h[0] != "ce_id" else ("ce_id", b"pigeon-1") for h in pigeon[2]])
    wrong_type = (b"k4", orjson.dumps(good[4].data),
                  [h if h[0] != "ce_type" else ("ce_type", b"com.example.unknown.v1") for h in kafka_io.binary_record(good[4])[2]])
    await kafka_io.publish(stack.bootstrap_servers, inbound, [
        bad_json, kafka_io.binary_record(good[4]), no_id, pigeon, kafka_io.structured_record(good[5]), wrong_type])

    async def good_stored():
        return await checks.timeline_count(stack, tenant) >= 4

    await kafka_io.wait_for(good_stored, timeout=60, what="the good events")

    async def dead_lettered():
        records = await kafka_io.read_all(stack.bootstrap_servers, inbound + ".dlq")
        return records if len(records) >= 4 else None

    records = await kafka_io.wait_for(dead_lettered, timeout=30, what="4 dead letters")
    reasons = sorted(dict(r.headers)["touchpoint.errors.reason"].decode() for r in records)
    assert reasons == ["invalid_data", "invalid_json", "missing_attribute", "unsupported_type"]
    for r in records:
        headers = dict(r.headers)
        assert headers["__connect.errors.topic"].decode() == inbound
        assert headers["__connect.errors.exception.message"]
        assert int(headers["__connect.errors.offset"]) >= 0
    assert records[0].value is not None, "the original value is kept for re-driving"
    count, _, _ = await checks.stored_partition(stack, tenant)
    assert count == 4
    print(f"\ninvalid input: HTTP refusals 400/413/415/401/403/207, dead letters {len(records)} ({reasons}), "
          f"good events stored {count}")
