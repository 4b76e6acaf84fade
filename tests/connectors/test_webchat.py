"""The web chat widget API on the real app, Kafka and PostgreSQL: site key and origin checks, conversation
tokens, visitor messages as inbound chat interactions (a retried send is one), agent replies streamed to
the widget over server-sent events and recorded as outbound interactions."""

from __future__ import annotations

import asyncio

import httpx
import orjson
import pytest

from tests.connectors.providers import SITE_KEY, SITE_ORIGIN, TENANT
from tests.support import kafka_io

pytestmark = pytest.mark.integration
WIDGET = {"X-Site-Key": SITE_KEY, "Origin": SITE_ORIGIN}


async def chat_interactions(live, conversation_id: str) -> list[dict]:
    records = await kafka_io.read_all(live.stack.bootstrap_servers,
                                      live.stack.topic("touchpoint.ingestion.interactions.v1"))
    found = await live.stack.opened_data(records)
    return [d for d in found if d.get("conversation_id") == conversation_id]


async def first_reply(client: httpx.AsyncClient, path: str, params: dict) -> dict:
    async with client.stream("GET", path, params=params, headers={"Origin": SITE_ORIGIN}) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
        event: dict[str, str] = {}
        async for line in resp.aiter_lines():
            if line.startswith(("id:", "event:", "data:")):
                name, _, value = line.partition(":")
                event[name] = value.strip()
            elif line == "" and "data" in event:
                return event


async def test_widget_conversation_with_agent_reply_over_sse(live):
    api_key = await live.stack.api_key(TENANT, ["ingest"])
    other_key = await live.stack.api_key("other-tenant", ["ingest"])
    async with httpx.AsyncClient(base_url=live.url, timeout=30) as client:
        assert (await client.post("/v1/webchat/conversations", json={}, headers={"X-Site-Key": "nope"})).status_code == 404
        evil = await client.post("/v1/webchat/conversations", json={}, headers={**WIDGET, "Origin": "https://evil.example"})
        assert evil.status_code == 403
        assert (await client.post("/v1/webchat/conversations", json={"email": "not-an-address"},
                                  headers=WIDGET)).status_code == 400
        started = await client.post("/v1/webchat/conversations", json={"email": "Eva@Example.org"}, headers=WIDGET)
        assert started.status_code == 201, started.text
        conversation = started.json()
        cid, token = conversation["conversation_id"], conversation["token"]
        messages = f"/v1/webchat/conversations/{cid}/messages"

        bearer = {**WIDGET, "Authorization": f"Bearer {token}"}
        for _ in range(2):  # the widget retries a send with the same client id
            resp = await client.post(messages, json={"id": "c1", "text": "Hi, is anyone there?"}, headers=bearer)
            assert resp.status_code == 202, resp.text
        wrong = await client.post(messages, json={"text": "x"}, headers={**WIDGET, "Authorization": "Bearer guess"})
        assert wrong.status_code == 404
        assert (await client.post(messages, json={"text": ""}, headers=bearer)).status_code == 422

        stream = asyncio.create_task(first_reply(client, f"/v1/webchat/conversations/{cid}/events",
                                                 {"site_key": SITE_KEY, "token": token}))
        await asyncio.sleep(0.3)
        replies = f"/v1/webchat/conversations/{cid}/replies"
        foreign = await client.post(replies, json={"text": "hello"}, headers={"Authorization": f"Bearer {other_key}"})
        assert foreign.status_code == 404, "another tenant's key cannot reach this conversation"
        assert (await client.post(replies, json={"text": "hello"})).status_code == 401
        posted = await client.post(replies, json={"id": "r1", "text": "Hello Eva, how can I help?", "agent_id": "agent-7"},
                                   headers={"Authorization": f"Bearer {api_key}"})
        assert posted.status_code == 202, posted.text
        event = await asyncio.wait_for(stream, 10)
        assert event["event"] == "reply"
        assert orjson.loads(event["data"])["text"] == "Hello Eva, how can I help?"

        resumed = await asyncio.wait_for(first_reply(client, f"/v1/webchat/conversations/{cid}/events",
                                                     {"site_key": SITE_KEY, "token": token}), 10)
        assert resumed["id"] == event["id"], "a reconnecting widget gets the replies it missed"
        denied = await client.get(f"/v1/webchat/conversations/{cid}/events", params={"site_key": SITE_KEY, "token": "guess"},
                                  headers={"Origin": SITE_ORIGIN})
        assert denied.status_code == 404

    async def both_ingested():
        found = await chat_interactions(live, cid)
        return found if len(found) >= 2 else None

    found = await kafka_io.wait_for(both_ingested, timeout=60, what="the chat interactions")
    await asyncio.sleep(1)
    found = await chat_interactions(live, cid)
    by_direction = {d["direction"]: d for d in found}
    assert len(found) == 2, "the retried visitor message is one interaction"
    assert by_direction["inbound"]["text"] == "Hi, is anyone there?"
    assert by_direction["inbound"]["channel"] == "chat"
    assert {"type": "email", "value": "eva@example.org"} in by_direction["inbound"]["identifiers"]
    assert by_direction["outbound"]["agent_id"] == "agent-7"
