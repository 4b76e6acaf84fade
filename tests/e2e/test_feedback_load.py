"""Responses into the feedback service — half through the survey links (HTTP), half from upstream survey tools
(Kafka), each kind with redeliveries — and the metrics it serves equal a recomputation from the raw answers the
test generated, duplicates counted once. 12,000 responses (6,000 + 6,000, 300 redeliveries of each kind), or
50,000 (25,000 + 25,000, 1,000 of each) with ``TOUCHPOINT_TEST_SCALE=full`` (tests/support/scale.py)."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import defaultdict
from datetime import datetime, timezone

import httpx
import orjson
import pytest

from shared.cloudevents import CloudEvent
from shared.contracts import types
from shared.kafka import event_record
from tests.support import kafka_io
from tests.support.scale import scaled
from tests.support.stack import ServiceProcess, new_stack

pytestmark = pytest.mark.e2e

LINKS, UPSTREAM, REPEATS = scaled((6_000, 6_000, 300), (25_000, 25_000, 1_000))
CHANNELS = ("email", "chat", "phone", "whatsapp")
TEAMS = ("care", "billing", "tech")


def config(link_base: str) -> str:
    return f"""
tenants:
  default:
    version: 1
    survey_link_base: "{link_base}"
    fatigue: {{min_days_between: 0, duplicate_window_h: 0}}
    detractor_follow_up: {{sla_s: 172800, priority: 1, resurvey: false}}
    surveys:
      nps_after_case:
        version: 1
        title: {{en: "Recommend us?", de: "Empfehlen Sie uns?"}}
        questions:
          - {{id: nps, kind: nps, text: {{en: "Recommend us?", de: "Empfehlen Sie uns?"}}}}
    triggers:
      case_resolved: {{on: touchpoint.case.resolved.v1, survey: nps_after_case, delay_s: 0}}
"""


def record(tenant: str, event_type: str, key: str, data: dict, event_id: str | None = None) -> tuple:
    event = CloudEvent(id=event_id or str(uuid.uuid4()), source="test/load", type=event_type,
                       time=datetime.now(timezone.utc), data=data, extensions={"tenant": tenant})
    r = event_record("unused", key, event)
    return r.key, r.value, r.headers


def nps(scores: list[int]) -> float:
    return 100.0 * (sum(s >= 9 for s in scores) - sum(s <= 6 for s in scores)) / len(scores)


@pytest.fixture(scope="module")
async def load_stack(infra, tmp_path_factory):
    folder = tmp_path_factory.mktemp("feedback-load")
    s = await new_stack(infra.bootstrap_servers, infra.admin_dsn)
    feedback = ServiceProcess("feedback", "feedback", s.env(TOUCHPOINT_TICK_INTERVAL_S="0.2",
                                                            TOUCHPOINT_GAUGE_INTERVAL_S="3600"))
    (folder / "feedback.yaml").write_text(config(f"{feedback.url}/v1/surveys"))
    feedback.env["TOUCHPOINT_FEEDBACK_CONFIG"] = str(folder / "feedback.yaml")
    feedback.start()
    s.processes["feedback"] = feedback
    await feedback.wait_ready()
    yield s
    s.stop_all()


async def test_responses_over_http_and_kafka_give_exact_metrics_with_duplicates_counted_once(load_stack):
    stack, tenant = load_stack, "load"
    rng = random.Random(11)
    key = await stack.api_key(tenant, ["read"])
    truth: dict[str, list[int]] = defaultdict(list)  # by channel and by team: every distinct response's score

    # LINKS resolved cases, one customer each, become LINKS invitations with links.
    cases = {f"L{n}": (rng.choice(CHANNELS), rng.choice(TEAMS)) for n in range(LINKS)}
    await kafka_io.publish(stack.bootstrap_servers, stack.topic("touchpoint.business.v1"), [
        record(tenant, types.CASE_RESOLVED, case, {"case_id": case, "customer": {"customer_id": f"cust-{case}"},
                                                   "occurred_at": datetime.now(timezone.utc).isoformat(),
                                                   "channel": channel, "team": team})
        for case, (channel, team) in cases.items()])

    async def links():
        found = [d for r in await kafka_io.read_all(stack.bootstrap_servers, stack.topic("touchpoint.feedback.v1"))
                 if dict(r.headers)["ce_type"] == types.FEEDBACK_INVITED.encode()
                 for d in [orjson.loads(r.value)]]
        return found if len(found) >= LINKS else None

    invited = await kafka_io.wait_for(links, timeout=300, interval=2, what=f"{LINKS:,} invitations")
    started = time.monotonic()
    answers = [(d["link"].rsplit("/", 1)[1], rng.randint(0, 10), d["channel"], d["team"]) for d in invited]
    repeats = rng.sample(answers, REPEATS)
    statuses: dict[int, int] = defaultdict(int)
    url = stack.processes["feedback"].url
    queue: asyncio.Queue = asyncio.Queue()
    for item in answers + repeats:
        queue.put_nowait(item)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            token, score, _, _ = queue.get_nowait()
            resp = await client.post(f"/v1/responses/{token}", json={"nps": score})
            statuses[resp.status_code] += 1

    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        await asyncio.gather(*(worker(client) for _ in range(32)))
    http_s = time.monotonic() - started
    for _, score, channel, team in answers:
        truth[f"channel:{channel}"].append(score)
        truth[f"team:{team}"].append(score)
    print(f"\n{LINKS + REPEATS} HTTP posts in {http_s:.1f} s ({(LINKS + REPEATS) / http_s:.0f}/s): {dict(statuses)}")
    assert statuses == {200: LINKS, 409: REPEATS}, "every first answer stored, every repeat refused"

    # UPSTREAM upstream responses plus REPEATS redeliveries of the same events (same CloudEvents id and response id).
    upstream = []
    for n in range(UPSTREAM):
        channel, team, score = rng.choice(CHANNELS), rng.choice(TEAMS), rng.randint(0, 10)
        truth[f"channel:{channel}"].append(score)
        truth[f"team:{team}"].append(score)
        upstream.append(record(tenant, types.FEEDBACK_RESPONSE_SUBMITTED, f"U{n}", {
            "response_id": f"U{n}", "survey_id": "nps_after_case", "customer": {"customer_id": f"up-{n}"},
            "submitted_at": datetime.now(timezone.utc).isoformat(), "answers": {"nps": score},
            "channel": channel, "team": team}, event_id=f"upstream-{n}"))
    await kafka_io.publish(stack.bootstrap_servers, stack.topic("touchpoint.feedback-inbound.v1"),
                           upstream + rng.sample(upstream, REPEATS))

    async def stored():
        conn = await stack.connect()
        try:
            n = await conn.fetchval("SELECT count(*) FROM feedback.responses WHERE tenant = $1", tenant)
        finally:
            await conn.close()
        return n if n == LINKS + UPSTREAM else None

    await kafka_io.wait_for(stored, timeout=180, interval=1, what=f"{LINKS + UPSTREAM:,} responses stored")
    async with httpx.AsyncClient(base_url=url, timeout=30, headers={"Authorization": f"Bearer {key}"}) as client:
        served = {}
        for by in ("channel", "team"):
            items = (await client.get("/v1/metrics", params={"metric": "nps", "by": by})).json()["items"]
            served.update({f"{by}:{i['key']}": i for i in items})
    print("NPS served vs recomputed: " + ", ".join(
        f"{k} {served[k]['value']:.3f}/{nps(v):.3f} (n={served[k]['count']})" for k, v in sorted(truth.items())))
    assert set(served) == set(truth)
    for group, scores in truth.items():
        assert served[group]["count"] == len(scores), group
        assert served[group]["value"] == pytest.approx(nps(scores), abs=1e-9), group
        assert served[group]["low"] <= served[group]["value"] <= served[group]["high"]
    assert sum(served[f"channel:{c}"]["count"] for c in CHANNELS) == LINKS + UPSTREAM
