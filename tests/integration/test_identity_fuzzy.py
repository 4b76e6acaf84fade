"""Fuzzy matching of profiles on real PostgreSQL: the identity service merges one person's profiles that share
no identifier, keeps namesakes apart, holds doubtful matches for review with the score, never lets a fuzzy match
join two user ids, forms the same customers whatever the order, and forgets profiles on erasure."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import orjson
import pytest
from aiokafka.structs import ConsumerRecord

from services.identity import admin
from shared import topics
from shared.cloudevents import CloudEvent, to_kafka_headers
from shared.contracts import types
from tests.integration import test_identity_rules

pytestmark = pytest.mark.integration
world = test_identity_rules.world  # that module's identity service, HTTP API and rules file, set up afresh here
T = "acme"
NOW = datetime(2026, 11, 2, 12, tzinfo=timezone.utc)
KATHARINA = {"given_name": "Katharina", "family_name": "Müller", "birth_date": "1984-03-07",
             "address": {"house_number": "12", "street": "Lindenstraße", "locality": "Berlin", "postcode": "10117"}}


def profile(event_id: str, data: dict, *identifiers: tuple[str, str], tenant: str = T, minutes: int = 0) -> ConsumerRecord:
    at = NOW + timedelta(minutes=minutes)
    body = {**data, "identifiers": [{"type": t, "value": v} for t, v in identifiers] or [{"type": "crm_id", "value": event_id}],
            "source": "crm", "event_id": event_id, "occurred_at": at.isoformat(), "received_at": at.isoformat()}
    event = CloudEvent(id=event_id, source="touchpoint/ingestion", type=types.PROFILE_INGESTED, time=at, data=body,
                       extensions={"tenant": tenant})
    value = orjson.dumps(body)
    return ConsumerRecord(topics.INGESTED.name, 0, 0, 0, 0, event_id.encode(), value, None, 3, len(value),
                          tuple(to_kafka_headers(event)))


async def customers(pool, tenant: str = T) -> dict[str, str]:
    """event id → current customer of every profile (and interaction) the tenant's graph processed."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT p.event_id, COALESCE(c.merged_into, c.customer_id) AS customer FROM identity.processed_events p"
            " JOIN identity.customers c USING (tenant, customer_id) WHERE p.tenant = $1", tenant)
    return {r["event_id"]: r["customer"] for r in rows}


def merges_published(world) -> list[dict]:
    return [orjson.loads(r.value) for r in world.producer.to(topics.IDENTITY.name)
            if dict(r.headers)["ce_type"] == types.CUSTOMERS_MERGED.encode()]


async def test_one_persons_profiles_without_a_shared_identifier_are_merged_and_explained(world):
    await world.service.process([profile("shop-1", KATHARINA, ("account_id", "SHOP-1"))])
    typos = {**KATHARINA, "given_name": "Katarina", "family_name": "Mueller",
             "address": {**KATHARINA["address"], "street": "Lindenstr."}}
    await world.service.process([profile("call-9", typos, ("crm_id", "CC-9"), minutes=1)])
    found = await customers(world.pool)
    assert found["shop-1"] == found["call-9"]
    (merge,) = [m for m in merges_published(world) if m["trigger_event_id"] == "call-9"]
    assert (merge["survivor_id"], merge["rule"]) == (found["shop-1"], "fuzzy_profile")
    explained = (await world.client.get(f"/v1/identities/{found['shop-1']}/explain", headers=world.agent)).json()
    (shown,) = [m for m in explained["merges"] if m["rule"] == "fuzzy_profile"]
    (match,) = shown["match"].values()
    assert match["probability"] >= 0.95 and match["levels"]["birth_date"] == 0 and match["levels"]["given_name"] > 0
    assert {(i["type"], i["value"]) for i in explained["identifiers"]} == {("account_id", "SHOP-1"), ("crm_id", "CC-9")}
    # Redelivery changes nothing.
    await world.service.process([profile("call-9", typos, ("crm_id", "CC-9"), minutes=1)])
    assert len([m for m in merges_published(world) if m["trigger_event_id"] == "call-9"]) == 1


async def test_a_namesake_born_elsewhere_stays_apart(world):
    await world.service.process([profile("shop-20", {**KATHARINA, "family_name": "Schulz"})])
    namesake = {**KATHARINA, "family_name": "Schulz", "birth_date": "1991-12-30",
                "address": {"house_number": "3", "street": "Hauptstraße", "locality": "München", "postcode": "80331"}}
    await world.service.process([profile("shop-21", namesake, minutes=1)])
    found = await customers(world.pool)
    assert found["shop-20"] != found["shop-21"]


async def test_a_doubtful_match_waits_for_review_with_its_score_and_approval_merges(world):
    await world.service.process([profile("shop-30", {"given_name": "Jonas", "family_name": "Weber",
                                                     "address": {"locality": "Potsdam", "postcode": "14467"}})])
    await world.service.process([profile("call-31", {"given_name": "Jonas", "family_name": "Weber"}, minutes=1)])
    found = await customers(world.pool)
    assert found["shop-30"] != found["call-31"]
    pending = (await world.client.get("/v1/identities/reviews", headers=world.admin)).json()["reviews"]
    (review,) = [r for r in pending if set(r["customers"]) == {found["shop-30"], found["call-31"]}]
    assert review["rule"] == "fuzzy_profile" and 0.5 <= review["match"]["probability"] < 0.95
    assert review["match"]["levels"] == {"family_name": 0, "given_name": 0}
    assert review["trigger"] == {"source": "crm", "event_id": "call-31"}
    approved = (await world.client.post(f"/v1/identities/reviews/{review['review_id']}/approve", headers=world.admin)).json()
    assert approved["status"] == "approved"
    found = await customers(world.pool)
    assert found["shop-30"] == found["call-31"]


async def test_a_fuzzy_match_never_joins_two_user_ids(world):
    await world.service.process([profile("app-40", {**KATHARINA, "given_name": "Lena"}, ("user_id", "u-lena"))])
    await world.service.process([profile("app-41", {**KATHARINA, "given_name": "Lena"}, ("user_id", "u-lena-2"),
                                         minutes=1)])
    found = await customers(world.pool)
    assert found["app-40"] != found["app-41"]
    explained = (await world.client.get(f"/v1/identities/{found['app-41']}/explain", headers=world.agent)).json()
    assert [(r["identifier"], r["rule"]) for r in explained["refused"]] == [
        ({"type": "customer", "value": found["app-40"]}, "fuzzy:limit:user_id")]


def _people() -> list[tuple[str, dict]]:
    """Three records of Anna (typos in each field), two of Bernd, and Anna's namesake."""
    anna = {"given_name": "Anna", "family_name": "Lindqvist", "birth_date": "1979-06-15", "national_id": "556677",
            "address": {"house_number": "8", "street": "Seeweg", "locality": "Kiel", "postcode": "24103"}}
    bernd = {"given_name": "Bernd", "family_name": "Ostrowski", "birth_date": "1962-01-30",
             "address": {"house_number": "41", "street": "Ringstraße", "locality": "Essen", "postcode": "45127"}}
    return [("anna-1", anna), ("anna-2", {**anna, "given_name": "Ana", "national_id": "556676"}),
            ("anna-3", {**anna, "birth_date": "1979-06-51", "address": {**anna["address"], "street": "Seewg"}}),
            ("bernd-1", bernd), ("bernd-2", {**bernd, "family_name": "Ostrowsky", "national_id": None}),
            ("other-anna", {**anna, "birth_date": "1990-02-02", "national_id": "112233",
                            "address": {"house_number": "1", "street": "Parkallee", "locality": "Bremen",
                                        "postcode": "28209"}})]


async def test_the_customers_formed_do_not_depend_on_the_order_or_the_batches(world):
    people = _people()
    partitions = []
    for n, seed in enumerate((1, 2, 3)):
        tenant = f"order-{n}"
        shuffled = random.Random(seed).sample(people, len(people))
        cut = seed % len(people)
        for batch in (shuffled[:cut], shuffled[cut:]):
            await world.service.process([profile(e, {k: v for k, v in d.items() if v is not None}, tenant=tenant)
                                         for e, d in batch])
        found = await customers(world.pool, tenant)
        groups: dict[str, set[str]] = {}
        for event_id, customer in found.items():
            groups.setdefault(customer, set()).add(event_id)
        partitions.append(sorted(sorted(g) for g in groups.values()))
    assert partitions[0] == [["anna-1", "anna-2", "anna-3"], ["bernd-1", "bernd-2"], ["other-anna"]]
    assert partitions[1] == partitions[0] and partitions[2] == partitions[0]


async def test_erasure_forgets_the_customers_profiles_and_their_blocking_keys(world):
    await world.service.process([profile("erase-1", {**KATHARINA, "given_name": "Greta"}, tenant="erase")])
    customer = (await customers(world.pool, "erase"))["erase-1"]
    async with world.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM identity.profile_blocks WHERE tenant = 'erase'") > 0
    await admin.erase(world.pool, "erase", customer, "req-1")
    async with world.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM identity.profiles WHERE tenant = 'erase'") == 0
        assert await conn.fetchval("SELECT count(*) FROM identity.profile_blocks WHERE tenant = 'erase'") == 0
