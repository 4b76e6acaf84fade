"""Every webhook connector against the real ingestion app on real Kafka and PostgreSQL: tampered requests
publish nothing, a valid message delivered four times (three of them concurrently) is answered 2xx every
time and becomes exactly one interaction, and its raw payload is kept once."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import httpx
import orjson
import pytest

from tests.connectors.providers import CONNECTORS, TENANT, VERIFY_TOKEN, tampered, valid_delivery
from tests.support import kafka_io

pytestmark = pytest.mark.integration
SOURCES = {"whatsapp": "whatsapp", "messenger": "facebook", "instagram": "instagram", "twilio": "twilio",
           "x": "x", "generic": "crm"}
EXPECTED_IDS = {"whatsapp": "wamid.{}", "messenger": "m_{}", "instagram": "ig_{}", "twilio": "SM{}", "x": "{}",
                "generic": "msg_{}"}


async def ingested(live) -> Counter:
    """(source, upstream id) → records on the normalised topic, for this tenant."""
    records = await kafka_io.read_all(live.stack.bootstrap_servers,
                                      live.stack.topic("touchpoint.ingestion.interactions.v1"))
    out = Counter()
    for r in records:
        if dict(r.headers).get("ce_tenant") == TENANT.encode():
            data = orjson.loads(r.value)
            out[(data["source"], data["event_id"])] += 1
    return out


async def inbound_ids(live) -> set[str]:
    records = await kafka_io.read_all(live.stack.bootstrap_servers, live.stack.topic("touchpoint.inbound.v1"))
    return {dict(r.headers)["ce_id"].decode() for r in records}


async def test_only_valid_requests_publish_exactly_once(live):
    good_uid, bad_uid = uuid.uuid4().hex[:12], uuid.uuid4().hex[:12]
    expected = {(SOURCES[c], EXPECTED_IDS[c].format(good_uid)) for c in CONNECTORS}
    async with httpx.AsyncClient(base_url=live.url, timeout=30) as client:
        for connector in CONNECTORS:
            for case, d in tampered(connector, bad_uid).items():
                resp = await client.post(d.path, content=d.body, headers=d.headers)
                assert resp.status_code in (400, 401), f"{connector} {case}: {resp.status_code}"
            good = valid_delivery(connector, good_uid)
            answers = await asyncio.gather(*(client.post(good.path, content=good.body, headers=good.headers)
                                             for _ in range(3)))
            answers.append(await client.post(good.path, content=good.body, headers=good.headers))
            assert [a.status_code for a in answers] == [200] * 4, f"{connector}: {[a.text for a in answers]}"

    async def all_ingested():
        counts = await ingested(live)
        return counts if expected <= set(counts) else None

    await kafka_io.wait_for(all_ingested, timeout=60, what="one interaction per connector")

    async def caught_up():
        return await kafka_io.lag(live.stack.bootstrap_servers, live.settings.group(live.settings.group_id),
                                  live.stack.topic("touchpoint.inbound.v1")) == 0

    await kafka_io.wait_for(caught_up, timeout=60, what="ingestion consumed the inbound topic")
    counts = await ingested(live)
    assert {key: counts[key] for key in expected} == {key: 1 for key in expected}, "a retry became a second interaction"
    assert not [i for i in await inbound_ids(live) if bad_uid in i], "a tampered request reached Kafka"

    conn = await live.stack.connect()
    try:
        rows = await conn.fetch("SELECT connector, count(*) AS n, bool_or(truncated) AS cut FROM ingestion.raw_payloads"
                                " WHERE EXISTS (SELECT 1 FROM unnest(event_ids) AS e WHERE e LIKE '%' || $1 || '%')"
                                " GROUP BY connector", good_uid)
    finally:
        await conn.close()
    assert {r["connector"]: r["n"] for r in rows} == {c: 1 for c in ("whatsapp", "messenger", "instagram", "twilio",
                                                                        "x", "crm")}
    print(f"\nwebhooks: {len(CONNECTORS)} connectors, valid message sent 4x each → 1 interaction each; "
          f"{sum(len(tampered(c, bad_uid)) for c in CONNECTORS)} tampered requests → 0 published")


async def test_handshake_and_body_limit_on_the_real_app(live):
    async with httpx.AsyncClient(base_url=live.url, timeout=30) as client:
        resp = await client.get(f"/v1/webhooks/{TENANT}/whatsapp", params={
            "hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "8812"})
        assert (resp.status_code, resp.text) == (200, "8812")
        resp = await client.post(f"/v1/webhooks/{TENANT}/whatsapp", content=b"x" * (2 * 1024 * 1024),
                                 headers={"Content-Type": "application/json"})
        assert resp.status_code == 413 and resp.json()["error"]["reason"] == "payload_too_large"
