"""Identity rules on real PostgreSQL: the identity service resolves batches under the rules file, records what
it refused, holds risky merges for review; the HTTP API lists reviews with their evidence, approves and rejects
them and explains a customer's graph; the rules file is reloaded while the service runs."""

from __future__ import annotations

import os
import time
import uuid
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import httpx
import orjson
import pytest
from aiokafka.structs import ConsumerRecord
from fastapi import FastAPI

from services.identity import api
from services.identity.rules import RulesSource
from services.identity.service import IdentityService
from shared import auth, topics
from shared.auth import ApiKeyVerifier
from shared.contracts import types
from shared.db import ALL_TENANTS, create_pool
from shared.httpapi import install_error_handlers
from tests.support.recording import RecordingProducer, ingested_record
from tests.support.stack import new_stack

pytestmark = pytest.mark.integration
T = "acme"
NOW = datetime(2026, 11, 1, 12, tzinfo=timezone.utc)
RULES = """
tenants:
  default:
    version: 1
    limits: {user_id: {max: 1}, email: {max: 5, window: 365d}}
    review: {types: [device_id]}
"""


def record(event_id: str, *identifiers: tuple[str, str], minutes: int = 0) -> ConsumerRecord:
    return ingested_record(T, NOW + timedelta(minutes=minutes), event_id, *identifiers)


def resolved(producer: RecordingProducer) -> dict[str, str]:
    """event id → customer id of the resolved interactions published so far."""
    return {orjson.loads(r.value)["event_id"]: orjson.loads(r.value)["customer_id"]
            for r in producer.to(topics.IDENTITY.name) if dict(r.headers)["ce_type"] == types.INTERACTION_RESOLVED.encode()}


@pytest.fixture(scope="module")
async def world(infra, tmp_path_factory):
    stack = await new_stack(infra.bootstrap_servers, infra.admin_dsn)
    pool = await create_pool(stack.database_url, default_scope=ALL_TENANTS)
    path = tmp_path_factory.mktemp("identity") / "identity-rules.yaml"
    path.write_text(RULES)
    source = RulesSource(path)
    producer = RecordingProducer()
    service = IdentityService(pool, producer, topics.IDENTITY.name, rules=source.tenant)
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(api.router)
    app.state.resources = SimpleNamespace(pool=pool)
    app.state.verifier = ApiKeyVerifier(pool)
    app.state.service = service
    app.state.rules = source
    async with pool.acquire() as conn:
        admin_key = (await auth.create_api_key(conn, T, ["admin"])).get_secret_value()
        agent_key = (await auth.create_api_key(conn, T, ["agent:ana"])).get_secret_value()
        other_key = (await auth.create_api_key(conn, "globex", ["admin"])).get_secret_value()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://identity")
    yield SimpleNamespace(pool=pool, service=service, producer=producer, path=path, client=client,
                          admin={"Authorization": f"Bearer {admin_key}"}, agent={"Authorization": f"Bearer {agent_key}"},
                          other={"Authorization": f"Bearer {other_key}"})
    await client.aclose()
    await pool.close()


async def test_a_shared_family_email_does_not_join_two_user_ids_and_the_refusal_is_explained(world):
    await world.service.process([record("anna-1", ("user_id", "u-anna"), ("email", "family@x.org"))])
    await world.service.process([record("ben-1", ("user_id", "u-ben"), ("email", "family@x.org"), ("phone", "0000"))])
    customers = resolved(world.producer)
    assert customers["anna-1"] != customers["ben-1"]
    explained = (await world.client.get(f"/v1/identities/{customers['ben-1']}/explain", headers=world.agent)).json()
    assert [i["type"] for i in explained["identifiers"]] == ["user_id"]
    assert sorted((r["identifier"]["type"], r["identifier"]["value"], r["rule"]) for r in explained["refused"]) == [
        ("email", "family@x.org", "limit:user_id"), ("phone", "0000", "blocked")]
    assert explained["refused"][0]["event"] == {"source": "shop", "event_id": "ben-1"}
    anna = (await world.client.get(f"/v1/identities/{customers['anna-1']}/explain", headers=world.agent)).json()
    assert {(i["type"], i["value"]) for i in anna["identifiers"]} == {("user_id", "u-anna"), ("email", "family@x.org")}
    assert anna["refused"] == [] and anna["merges"] == []
    # Redelivering the batch changes nothing.
    await world.service.process([record("ben-1", ("user_id", "u-ben"), ("email", "family@x.org"), ("phone", "0000"))])
    async with world.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM identity.refusals WHERE event_id = 'ben-1'") == 2


async def test_a_merge_through_a_shared_tablet_waits_for_review_and_approval_merges(world):
    await world.service.process([record("carla-1", ("device_id", "tablet-7"), ("email", "carla@x.org"))])
    await world.service.process([record("dan-1", ("email", "dan@x.org"))])
    await world.service.process([record("both-1", ("device_id", "tablet-7"), ("email", "dan@x.org"), minutes=5),
                                 record("both-2", ("device_id", "tablet-7"), ("email", "dan@x.org"), minutes=6)])
    customers = resolved(world.producer)
    carla, dan = customers["carla-1"], customers["dan-1"]
    assert customers["both-1"] == customers["both-2"] == min(carla, dan, key=lambda c: c != carla)  # the oldest
    pending = (await world.client.get("/v1/identities/reviews", headers=world.admin)).json()["reviews"]
    (review,) = [r for r in pending if set(r["customers"]) == {carla, dan}]
    assert {(i["type"], i["value"]) for i in review["linking_identifiers"]} == {("device_id", "tablet-7"), ("email", "dan@x.org")}
    assert review["trigger"] == {"source": "shop", "event_id": "both-1"}
    assert {i["value"] for i in review["evidence"][carla]} == {"tablet-7", "carla@x.org"}
    assert {i["value"] for i in review["evidence"][dan]} == {"dan@x.org"}
    assert (await world.client.get("/v1/identities/reviews", headers=world.agent)).status_code == 403
    assert (await world.client.post(f"/v1/identities/reviews/{review['review_id']}/approve",
                                    headers=world.other)).status_code == 404
    approved = (await world.client.post(f"/v1/identities/reviews/{review['review_id']}/approve", headers=world.admin)).json()
    assert approved["status"] == "approved" and approved["merge_id"]
    merges = [orjson.loads(r.value) for r in world.producer.to(topics.IDENTITY.name)
              if dict(r.headers)["ce_type"] == types.CUSTOMERS_MERGED.encode()]
    (merge,) = [m for m in merges if m["merge_id"] == approved["merge_id"]]
    assert (merge["survivor_id"], merge["merged_ids"], merge["rule"]) == (carla, [dan], "review_approved")
    explained = (await world.client.get(f"/v1/identities/{dan}/explain", headers=world.agent)).json()
    assert explained["customer_id"] == carla and [r["status"] for r in explained["reviews"]] == ["approved"]
    again = await world.client.post(f"/v1/identities/reviews/{review['review_id']}/reject", headers=world.admin)
    assert again.status_code == 409


async def test_a_rejected_merge_is_not_proposed_again(world):
    await world.service.process([record("eva-1", ("device_id", "kiosk-1"))])
    await world.service.process([record("fay-1", ("email", "fay@x.org"))])
    await world.service.process([record("kiosk-1", ("device_id", "kiosk-1"), ("email", "fay@x.org"), minutes=1)])
    customers = resolved(world.producer)
    pending = (await world.client.get("/v1/identities/reviews", headers=world.admin)).json()["reviews"]
    (review,) = [r for r in pending if set(r["customers"]) == {customers["eva-1"], customers["fay-1"]}]
    rejected = (await world.client.post(f"/v1/identities/reviews/{review['review_id']}/reject", headers=world.admin)).json()
    assert rejected == {"review_id": review["review_id"], "status": "rejected", "merge_id": None}
    await world.service.process([record("kiosk-2", ("device_id", "kiosk-1"), ("email", "fay@x.org"), minutes=2)])
    async with world.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM identity.reviews WHERE $1 = ANY(customers)",
                                   customers["fay-1"]) == 1
        assert await conn.fetchval("SELECT merged_into FROM identity.customers WHERE customer_id = $1",
                                   customers["fay-1"]) is None


async def test_the_rules_file_is_reloaded_while_the_service_runs(world):
    rules = (await world.client.get("/v1/identities/rules", headers=world.admin)).json()
    assert rules["rules"]["version"] == 1 and rules["last_error"] is None
    emails = [("email", f"gus{n}@x.org") for n in range(3)]
    await world.service.process([record("gus-1", ("user_id", "u-gus"), *emails[:2])])
    world.path.write_text(RULES.replace("version: 1", "version: 2").replace("email: {max: 5", "email: {max: 2"))
    os.utime(world.path, ns=(time.time_ns(), time.time_ns() + 5_000_000))
    await world.service.process([record("gus-2", ("user_id", "u-gus"), emails[2], minutes=1)])
    gus = resolved(world.producer)["gus-1"]
    explained = (await world.client.get(f"/v1/identities/{gus}/explain", headers=world.agent)).json()
    assert [(r["identifier"]["value"], r["rule"]) for r in explained["refused"]] == [("gus2@x.org", "limit:email")]
    assert (await world.client.get("/v1/identities/rules", headers=world.admin)).json()["rules"]["version"] == 2
    world.path.write_text("tenants: {default: {limits: {email: {max: zero}}}}")
    os.utime(world.path, ns=(time.time_ns(), time.time_ns() + 9_000_000))
    kept = (await world.client.get("/v1/identities/rules", headers=world.admin)).json()
    assert kept["rules"]["version"] == 2 and "max" in kept["last_error"]
    world.path.write_text(RULES)
    os.utime(world.path, ns=(time.time_ns(), time.time_ns() + 13_000_000))


async def test_explain_is_tenant_scoped(world):
    customer = resolved(world.producer)["anna-1"]
    assert (await world.client.get(f"/v1/identities/{customer}/explain", headers=world.other)).status_code == 404
    assert (await world.client.get(f"/v1/identities/{uuid.uuid4()}/explain", headers=world.admin)).status_code == 404
