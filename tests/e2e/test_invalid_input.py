"""Bad input over HTTP and Kafka: a 4xx with a reason or the dead-letter topic with the error; good events in the
same batch arrive untouched."""

from __future__ import annotations

import asyncio
import time

import httpx
import orjson
import pytest

from tests.support import checks, kafka_io
from tests.support.data import generate
from tests.support.stack import new_stack

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


async def test_dead_letter_ceiling_stops_the_service_before_parking_a_whole_topic(infra):
    """1 % poison is parked and the service runs on; a flood of poison (as after a bad deployment) crosses the
    ceiling: nothing of that batch is parked or committed, the process exits with status 3 and says why."""
    tenant = "ceiling"
    stack = await new_stack(infra.bootstrap_servers, infra.admin_dsn)
    ingestion = stack.start("ingestion", TOUCHPOINT_DEAD_LETTER_MAX_SHARE="0.2", TOUCHPOINT_DEAD_LETTER_WINDOW="200")
    try:
        await ingestion.wait_ready()
        inbound = stack.topic("touchpoint.inbound.v1")
        good = generate(tenant, people=50, events=500, seed=31)
        records = [kafka_io.binary_record(e) for e in good]
        for n in range(5):  # 1 %: undecodable JSON
            records[n * 100 + 50] = (b"poison", b"{not json", records[n * 100 + 50][2])
        await kafka_io.publish(stack.bootstrap_servers, inbound, records)

        async def parked_five():
            return len(await kafka_io.read_all(stack.bootstrap_servers, inbound + ".dlq")) == 5

        await kafka_io.wait_for(parked_five, timeout=60, what="5 dead letters")
        await asyncio.sleep(1)
        assert ingestion.popen.poll() is None, "1 % poison must not stop the service"

        # The flood is waiting when the service starts, so it arrives as one batch.
        ingestion.terminate()
        flood = [(b"poison", b"{not json", kafka_io.binary_record(good[0])[2]) for _ in range(300)]
        await kafka_io.publish(stack.bootstrap_servers, inbound, flood)
        started = time.monotonic()
        ingestion.start()
        code = await asyncio.to_thread(ingestion.popen.wait, 60)
        stopped_after = time.monotonic() - started
        parked = await kafka_io.read_all(stack.bootstrap_servers, inbound + ".dlq")
        behind = await kafka_io.lag(stack.bootstrap_servers, stack.prefix + "touchpoint-ingestion", inbound)
        assert code == 3
        assert len(parked) == 5, "the batch that crossed the ceiling was not parked"
        assert behind == 300, "nor committed: it is still there for after the fix"
        log_text = ingestion.log_path.read_text()
        assert "dead-letter ceiling exceeded" in log_text

        relaxed = stack.start("ingestion", name="ingestion-relaxed", TOUCHPOINT_DEAD_LETTER_MAX_SHARE="1.0")
        await relaxed.wait_ready()

        async def all_parked():
            return len(await kafka_io.read_all(stack.bootstrap_servers, inbound + ".dlq")) == 305

        await kafka_io.wait_for(all_parked, timeout=60, what="the flood parked once the ceiling is raised")
        print(f"\ndead-letter ceiling: 5 of 500 parked, service running; flood of 300 → exit status {code} after "
              f"{stopped_after:.1f} s, parked 5, lag {behind}; with the ceiling raised all 305 parked")
    finally:
        stack.stop_all()
