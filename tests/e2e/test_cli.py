"""The ``touchpoint`` command against the running system: topics, keys, lag, dead letters, identity show, merge,
split and erase, tail, and a rebuild of the timeline from the log."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import httpx
import orjson
import pytest

from tests.support import checks, kafka_io
from tests.support.data import Event

pytestmark = pytest.mark.e2e
TENANT = "ops"


def cli(stack, *args: str, key: str = "", check: bool = True, timeout: float = 120) -> str:
    env = stack.env(TOUCHPOINT_API_KEY=key, TOUCHPOINT_IDENTITY_URL=stack.processes["identity"].url,
                    TOUCHPOINT_TIMELINE_URL=stack.processes["timeline"].url)
    out = subprocess.run([sys.executable, "-m", "shared.cli", *args], env=env, capture_output=True, text=True,
                         timeout=timeout)
    if check:
        assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def event(n: int, person: str, idents: list[tuple[str, str]], channel: str = "email") -> Event:
    return Event(f"ops-{person}-{n}", "crm", TENANT, 0, {
        "channel": channel, "direction": "inbound", "occurred_at": f"2026-03-0{n % 9 + 1}T10:00:00Z",
        "identifiers": [{"type": t, "value": v} for t, v in idents]})


async def publish(stack, events: list[Event], extra: list | None = None) -> None:
    await kafka_io.publish(stack.bootstrap_servers, stack.topic("touchpoint.inbound.v1"),
                           [kafka_io.binary_record(e) for e in events] + (extra or []))


async def lookup(client: httpx.AsyncClient, type_: str, value: str) -> dict | None:
    resp = await client.get("/v1/customers/lookup", params={"type": type_, "value": value})
    return resp.json() if resp.status_code == 200 else None


async def test_operations_cli(stack):
    assert "all present" in cli(stack, "create-topics")
    key = cli(stack, "api-keys", "create", TENANT, "--scopes", "ingest,read,admin").strip()
    spare = cli(stack, "api-keys", "create", TENANT, "--scopes", "read").strip()
    assert cli(stack, "api-keys", "revoke", spare.split("_")[1]).strip() == "revoked"

    anna = [event(n, "anna", [("email", "anna@example.com")]) for n in range(3)]
    anna_phone = [event(n, "annaphone", [("phone", "+49 30 5550001")], "phone") for n in range(2)]
    ben = [event(n, "ben", [("email", "ben@example.com")]) for n in range(2)]
    poison = (b"p", orjson.dumps({"channel": "pigeon", "direction": "inbound",
                                  "identifiers": [{"type": "email", "value": "x@example.com"}]}),
              kafka_io.binary_record(ben[0])[2][:1] + [("ce_id", b"pigeon"), ("ce_source", b"crm"),
               ("ce_type", b"touchpoint.interaction.occurred.v1"), ("ce_tenant", TENANT.encode())])
    await publish(stack, anna + anna_phone + ben, [poison])
    client = httpx.AsyncClient(base_url=stack.processes["timeline"].url, headers={"Authorization": f"Bearer {key}"})

    async def stored():
        return await checks.timeline_count(stack, TENANT) >= 7

    await kafka_io.wait_for(stored, timeout=60, what="7 rows")
    def lag_settled() -> str | None:
        out = cli(stack, "lag")
        return out if "total lag 0" in out else None

    lag_out = await kafka_io.wait_for(lambda: asyncio.to_thread(lag_settled), timeout=30, what="lag 0")
    assert "touchpoint-identity" in lag_out

    inspected = cli(stack, "dlq", "inspect", "touchpoint.inbound.v1")
    assert '"reason": "invalid_data"' in inspected and "1 dead letters" in inspected and "pigeon" not in inspected.split("message")[0]
    assert cli(stack, "dlq", "redrive", "touchpoint.inbound.v1").strip() == "re-driven 1, skipped 0"
    await kafka_io.wait_for(lambda: asyncio.to_thread(
        lambda: "2 dead letters" in cli(stack, "dlq", "inspect", "touchpoint.inbound.v1")), timeout=30,
        what="the re-driven record back through ingestion")
    assert cli(stack, "dlq", "redrive", "touchpoint.inbound.v1").strip() == "re-driven 1, skipped 0", "only the new one"

    a = (await lookup(client, "email", "anna@example.com"))["customer_id"]
    p = (await lookup(client, "phone", "+49 30 5550001"))["customer_id"]
    assert a != p
    shown = json.loads(cli(stack, "identity", "show", a, key=key))
    assert [i["value"] for i in shown["identifiers"]] == ["anna@example.com"]
    assert shown["identifiers"][0]["linked_by"]["source"] == "crm"

    merged = json.loads(cli(stack, "identity", "merge", a, p, key=key))
    survivor = merged["survivor_id"]

    async def merged_on_timeline():
        found = await lookup(client, "phone", "+49 30 5550001")
        return found and found["customer_id"] == survivor and found["entry_count"] == 5

    await kafka_io.wait_for(merged_on_timeline, timeout=30, what="the merge on the timeline")

    explained = json.loads(cli(stack, "explain", survivor, key=key))
    (merge,) = explained["merges"]
    assert merge["rule"] == "manual" and explained["refused"] == []
    undone = json.loads(cli(stack, "identity", "unmerge", merge["merge_id"], key=key))
    assert undone["merge_id"] == merge["merge_id"] and len(undone["split_ids"]) == 1
    (back,) = merged["merged_ids"]
    id_type, value, entries = {a: ("email", "anna@example.com", 3), p: ("phone", "+49 30 5550001", 2)}[back]

    async def unmerged_on_timeline():
        found = await lookup(client, id_type, value)
        return found and found["customer_id"] == back and found["entry_count"] == entries

    await kafka_io.wait_for(unmerged_on_timeline, timeout=30, what="the undone merge on the timeline")
    merged = json.loads(cli(stack, "identity", "merge", a, p, key=key))
    assert merged["survivor_id"] == survivor
    await kafka_io.wait_for(merged_on_timeline, timeout=30, what="the merge again on the timeline")

    split = json.loads(cli(stack, "identity", "split", survivor, "--identifier", "phone:+49305550001", key=key))
    new_id = split["new_customer_id"]

    async def split_on_timeline():
        found = await lookup(client, "phone", "+49 30 5550001")
        return found and found["customer_id"] == new_id and found["entry_count"] == 2

    await kafka_io.wait_for(split_on_timeline, timeout=30, what="the split on the timeline")
    assert (await lookup(client, "email", "anna@example.com"))["entry_count"] == 3

    tailed = cli(stack, "tail", survivor, "-n", "2", key=key).strip().splitlines()
    assert len(tailed) == 2 and all("email" in line for line in tailed)
    tail_proc = subprocess.Popen([sys.executable, "-m", "shared.cli", "tail", survivor, "-n", "0", "--follow", "14"],
                                 env=stack.env(TOUCHPOINT_API_KEY=key, TOUCHPOINT_TIMELINE_URL=stack.processes["timeline"].url),
                                 stdout=subprocess.PIPE, text=True)
    await asyncio.sleep(4)
    await publish(stack, [event(7, "anna-live", [("email", "anna@example.com")], "chat")])
    followed = (await asyncio.to_thread(tail_proc.communicate, timeout=30))[0]
    assert "crm/ops-anna-live-7" in followed

    ben_id = (await lookup(client, "email", "ben@example.com"))["customer_id"]
    erased = json.loads(cli(stack, "erase", ben_id, key=key))
    assert erased["customer_id"] == ben_id and erased["requested_at"]

    async def ben_gone():
        return await lookup(client, "email", "ben@example.com") is None

    await kafka_io.wait_for(ben_gone, timeout=30, what="the erasure on the timeline")
    snapshots = await checks.latest_snapshots(stack, TENANT)
    assert snapshots[ben_id] is None, "a tombstone on touchpoint.customers.v1"

    before = await checks.stored_partition(stack, TENANT)
    stack.processes["timeline"].terminate()
    rebuilt = cli(stack, "rebuild", "timeline", timeout=180)
    assert "rebuilt the timeline from" in rebuilt
    after = await checks.stored_partition(stack, TENANT)
    assert after[0] == before[0] and after[1] == before[1], "the rebuilt timeline equals the live one"
    assert all(c != ben_id for c in after[2].values()), "an erased customer does not come back"
    stack.processes["timeline"].start()
    await stack.processes["timeline"].wait_ready()
    await client.aclose()
    print(f"\ncli: merge -> {survivor[:8]}, split -> {new_id[:8]}, erase -> {ben_id[:8]}, rebuild kept {after[0]} rows")
