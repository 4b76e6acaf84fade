"""Routing simulation: the real routing service on real Kafka and PostgreSQL, with simulated customers and agents
on an accelerated clock, measured against queueing theory and against a baseline routing model.

    .venv/bin/python -m bench.routing_sim             # full run (~25 min)
    .venv/bin/python -m bench.routing_sim --quick     # harness check (~3 min); its figures mean nothing
    .venv/bin/python -m bench.routing_sim --speed 100 --arrivals 2400 --replicas 2 --seed 7

One routing process (``python -m services.routing``) runs on a fresh stack of the benchmark's own Kafka and
PostgreSQL with ``TOUCHPOINT_CLOCK_SPEED``/``TOUCHPOINT_CLOCK_ORIGIN``: routing time runs ``speed`` times faster
than real time, and this process stamps every event it publishes in the same routing time (same origin and
speed, :class:`~services.routing.domain.clock.ScaledClock`). Several tenants run side by side in that process:

1. ``sim-erlang-<k>`` (``--replicas`` independent copies): one queue, ``agents`` identical agents holding one
   chat each (capacity 100, chat cost 100), ``auto_accept``, 24x7. Poisson arrivals (``touchpoint.interaction
   .resolved.v1`` on ``<prefix>touchpoint.identity.v1``, a new customer each), exponential handling times. Waits
   are compared with Erlang C computed from the *measured* arrival rate and mean handling time, and with an
   ideal FIFO M/G/N queue fed the very same arrivals and handling times (same sample path).
2. ``sim-skills`` and ``sim-rr``: the same arrival sequence (3 skills x 2 languages) to 12 agents with different
   skills and languages; handling takes ``mismatch`` times longer when the agent lacks the skill or the
   language. ``sim-skills`` routes with the skills workflow (``most_available``; the skill-and-language target
   relaxes to anyone after ``relax_s``), ``sim-rr`` with ``routing_model: round_robin``. Compared: first-response
   SLA attainment and average wait.

Simulated agents learn their assignments from ``<prefix>touchpoint.routing.v1``, reply at once
(``touchpoint.conversation.agent_replied.v1``, stopping the first-response SLA clock) and resolve
(``touchpoint.conversation.resolved.v1`` on ``<prefix>touchpoint.conversations.v1``) at the routing instant
``assigned.at + handling time``. Every figure is computed from the events routing published.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import itertools
import json
import math
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import httpx
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench import harness, report
from bench.procstats import ProcessSet, cpu_delta
from services.routing.domain.clock import ScaledClock
from services.routing.domain.erlang import average_wait, erlang_c, service_level
from shared import topics
from shared.cloudevents import CloudEvent, InvalidEvent, from_kafka
from shared.contracts import types
from shared.kafka import event_record

SOURCE = "bench/routing-sim"
SKILLED, BASELINE = "sim-skills", "sim-rr"
SKILLS = {"billing": 0.40, "tech": 0.35, "sales": 0.25}          # share of arrivals per skill
LANGUAGES = {"de": 0.60, "en": 0.40}                              # share of arrivals per language
# The multi-skill desk: (agent id, skills with levels, languages).
DESK = [
    ("a01", {"billing": 9}, ["de"]), ("a02", {"billing": 8}, ["de", "en"]),
    ("a03", {"billing": 7, "sales": 4}, ["de"]), ("a04", {"billing": 6}, ["en"]),
    ("a05", {"tech": 9}, ["de"]), ("a06", {"tech": 8}, ["de", "en"]),
    ("a07", {"tech": 7}, ["en"]), ("a08", {"tech": 6, "billing": 4}, ["de", "en"]),
    ("a09", {"sales": 9}, ["de"]), ("a10", {"sales": 7}, ["de", "en"]),
    ("a11", {"sales": 6, "tech": 5}, ["en"]), ("a12", {"billing": 5, "tech": 5, "sales": 5}, ["de", "en"]),
]
RESULT_FILE = "routing-sim"


@dataclass
class Params:
    quick: bool
    speed: float
    seed: int
    agents: int              # scenario 1: identical agents per replica
    occupancy: float         # scenario 1: offered load / agents
    aht_s: float             # mean handling time (routing seconds) of a matching agent
    target_s: float          # scenario 1: service-level target T
    arrivals: int            # scenario 1: arrivals per replica, warm-up included
    replicas: int
    warmup_s: float          # arrivals in the first warmup_s routing seconds are not measured
    skills_occupancy: float  # scenario 2: offered load / agents if every conversation met a matching agent
    mismatch: float          # scenario 2: handling-time factor when the agent lacks the skill or the language
    sla_s: float             # scenario 2: first-response target
    relax_s: float           # scenario 2: the skill-and-language target relaxes to anyone after this wait
    timer_granularity_s: float  # routing seconds between timer ticks (TOUCHPOINT_TIMER_INTERVAL_S = this / speed)
    band_runs: int           # replications of the ideal queue for the sampling band

    @property
    def arrival_rate(self) -> float:
        return self.occupancy * self.agents / self.aht_s

    @property
    def duration_s(self) -> float:
        """Routing seconds over which arrivals are generated (every scenario shares it)."""
        return self.arrivals / self.arrival_rate

    @property
    def skills_rate(self) -> float:
        return self.skills_occupancy * len(DESK) / self.aht_s


# ---- configuration and arrivals ----------------------------------------------------------------------------

def always_open() -> dict:
    return {"tz": "UTC", "hours": {d: ["00:00-24:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}}


def tenant_config(p: Params, model: str, workflow: dict, sla_s: float) -> dict:
    return {
        "version": 1, "auto_accept": True, "offer_timeout_s": 60, "reassign_after_s": 0, "routing_model": model,
        "ageing_s": 0, "continuity": {"window_s": 0, "wait_s": 0},
        "capacity": {"total": 100, "cost": {"chat": 100, "default": 100}},
        "calendars": {"always": always_open()},
        "sla": [{"name": "sim-first-response", "match": "true", "calendar": "always", "first_response_s": int(sla_s)}],
        "escalation": {"queue": None, "priority_bump": 0},
        "workflow": workflow,
    }


def routing_config(p: Params) -> dict:
    single = {"default_targets": [{"queue": "general", "expression": "true"}]}
    skills = {
        "filters": [{"name": skill, "match": f"tags HAS '{skill}'", "targets": [
            {"queue": skill, "expression": f"skills.{skill} >= 1 AND languages HAS task.language",
             "timeout_s": p.relax_s},
            {"queue": skill, "expression": "true"}]} for skill in SKILLS],
        "default_targets": [{"queue": "general", "expression": "true"}],
    }
    tenants = {erlang_tenant(k): tenant_config(p, "most_available", single, p.target_s) for k in range(p.replicas)}
    tenants[SKILLED] = tenant_config(p, "most_available", skills, p.sla_s)
    tenants[BASELINE] = tenant_config(p, "round_robin", skills, p.sla_s)
    return {"tenants": tenants}


def erlang_tenant(k: int) -> str:
    return f"sim-erlang-{k + 1}"


@dataclass
class Conv:
    """One simulated conversation and what routing reported about it (instants in routing epoch seconds)."""

    tenant: str
    cid: str
    customer: str
    intended_at: float       # the customer's message (occurred_at); an offset from the start until the run begins
    handle_s: float          # handling time of a matching agent
    skill: str | None = None
    language: str | None = None
    queued_at: float | None = None
    assigned_at: float | None = None
    agent: str | None = None
    waited_s: float | None = None
    resolve_due: float | None = None
    seen_real: float | None = None
    resolved_at: float | None = None
    sla_status: str | None = None
    assignments: int = 0
    reassigned: int = 0

    @property
    def arrived_at(self) -> float | None:
        """When routing processed the arrival: its queued event, else (assigned at once) its assignment."""
        return self.queued_at if self.queued_at is not None else self.assigned_at

    @property
    def wait(self) -> float:
        return self.assigned_at - self.arrived_at

    @property
    def duration(self) -> float:
        return self.resolved_at - self.assigned_at


def poisson(rng: random.Random, rate: float, count: int) -> list[float]:
    t, out = 0.0, []
    for _ in range(count):
        t += rng.expovariate(rate)
        out.append(t)
    return out


def pick(rng: random.Random, shares: dict[str, float]) -> str:
    return rng.choices(list(shares), weights=list(shares.values()))[0]


def erlang_arrivals(p: Params, k: int) -> list[Conv]:
    rng = random.Random(f"{p.seed}/erlang/{k}")
    tenant = erlang_tenant(k)
    return [Conv(tenant, f"{tenant}-{i:05d}", f"cust-{i:05d}", t, rng.expovariate(1 / p.aht_s))
            for i, t in enumerate(poisson(rng, p.arrival_rate, p.arrivals))]


def skills_arrivals(p: Params, tenant: str) -> list[Conv]:
    """The same sequence (instants, skills, languages, base handling times) for every tenant given the seed."""
    rng = random.Random(f"{p.seed}/skills")
    count = max(1, round(p.skills_rate * p.duration_s))
    return [Conv(tenant, f"{tenant}-{i:05d}", f"cust-{i:05d}", t, rng.expovariate(1 / p.aht_s),
                 pick(rng, SKILLS), pick(rng, LANGUAGES))
            for i, t in enumerate(poisson(rng, p.skills_rate, count))]


def handling(conv: Conv, profile: tuple[dict, list] | None, mismatch: float) -> float:
    if conv.skill is None or profile is None:
        return conv.handle_s
    skills, languages = profile
    matched = conv.skill in skills and conv.language in languages
    return conv.handle_s if matched else conv.handle_s * mismatch


# ---- the simulation ----------------------------------------------------------------------------------------

def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat()


def epoch(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


class Simulation:
    """Publishes arrivals on schedule, plays the agents, and records what routing published."""

    def __init__(self, p: Params, bootstrap: str, prefix: str, clock: ScaledClock,
                 convs: list[Conv], profiles: dict[str, dict[str, tuple[dict, list]]]) -> None:
        self.p, self.bootstrap, self.prefix, self.clock = p, bootstrap, prefix, clock
        self.convs = {(c.tenant, c.cid): c for c in convs}
        self.profiles = profiles
        self.unresolved = len(convs)
        self.done = asyncio.Event()
        self.heap: list[tuple[float, int, object]] = []
        self.seq = itertools.count()
        self.wake = asyncio.Event()
        self.acks: list[asyncio.Future] = []
        self.event_counts: dict[str, int] = {}
        self.unknown = 0
        self.producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all",
                                         linger_ms=0, client_id="bench-routing-sim")
        self.consumer = AIOKafkaConsumer(prefix + topics.ROUTING.name, bootstrap_servers=bootstrap, group_id=None,
                                         auto_offset_reset="earliest", client_id="bench-routing-sim")

    def real_of(self, routing_ts: float) -> float:
        origin = self.clock.origin.timestamp()
        return origin + (routing_ts - origin) / self.clock.speed

    def schedule(self, routing_ts: float, record) -> None:
        heapq.heappush(self.heap, (self.real_of(routing_ts), next(self.seq), record))
        self.wake.set()

    def event(self, topic: str, key: str, event_type: str, tenant: str, at: float, data: dict):
        ce = CloudEvent(id=str(uuid.uuid4()), source=SOURCE, type=event_type, time=datetime.fromtimestamp(at, timezone.utc),
                        data=data, extensions={"tenant": tenant})
        return event_record(self.prefix + topic, key, ce)

    def arrival(self, c: Conv, at: float):
        data = {"channel": "chat", "direction": "inbound", "identifiers": [{"type": "user_id", "value": c.customer}],
                "conversation_id": c.cid, "language": c.language, "tags": [c.skill] if c.skill else [],
                "text": "Hello, I need help.", "source": SOURCE, "event_id": c.cid, "occurred_at": iso(at),
                "received_at": iso(at), "customer_id": c.customer}
        return self.event(topics.IDENTITY.name, c.customer, types.INTERACTION_RESOLVED, c.tenant, at, data)

    def activity(self, c: Conv, event_type: str, at: float):
        data = {"conversation_id": c.cid, "agent_id": c.agent, "occurred_at": iso(at)}
        return self.event(topics.CONVERSATIONS.name, c.cid, event_type, c.tenant, at, data)

    async def run(self, start: float, timeout_s: float) -> None:
        """Publish every arrival at ``start`` + its offset (routing time) and play the agents until every
        conversation was resolved or ``timeout_s`` real seconds passed."""
        await self.producer.start()
        await self.consumer.start()
        try:
            for c in self.convs.values():
                c.intended_at = start + c.intended_at
                self.schedule(c.intended_at, self.arrival(c, c.intended_at))
            sender = asyncio.create_task(self.send_loop())
            watcher = asyncio.create_task(self.watch_loop())
            try:
                await asyncio.wait_for(self.done.wait(), timeout_s)
            except asyncio.TimeoutError:
                print(f"  timeout: {self.unresolved} conversations not resolved", flush=True)
            finally:
                sender.cancel()
                watcher.cancel()
                await asyncio.gather(sender, watcher, return_exceptions=True)
            await asyncio.gather(*self.acks)
        finally:
            await self.consumer.stop()
            await self.producer.stop()

    async def send_loop(self) -> None:
        while True:
            now = time.time()
            while self.heap and self.heap[0][0] <= now:
                _, _, r = heapq.heappop(self.heap)
                self.acks.append(await self.producer.send(r.topic, value=r.value, key=r.key, headers=r.headers))
            self.wake.clear()
            delay = self.heap[0][0] - time.time() if self.heap else 1.0
            try:
                await asyncio.wait_for(self.wake.wait(), max(0.0, delay))
            except asyncio.TimeoutError:
                pass

    async def watch_loop(self) -> None:
        while True:
            batch = await self.consumer.getmany(timeout_ms=200, max_records=2000)
            for records in batch.values():
                for record in records:
                    self.on_record(record)

    def on_record(self, record) -> None:
        try:
            event = from_kafka(record.value, record.headers)
        except InvalidEvent:
            self.unknown += 1
            return
        kind = types.short_name(event.type).removeprefix("routing.")
        self.event_counts[kind] = self.event_counts.get(kind, 0) + 1
        c = self.convs.get((event.tenant, event.data.get("conversation_id")))
        if c is None:
            self.unknown += 1
            return
        at = epoch(event.data["at"])
        if kind == "conversation_queued" and c.queued_at is None:
            c.queued_at = at
        elif kind == "conversation_assigned":
            self.assigned(c, event.data, at)
        elif kind == "conversation_reassigned":
            c.reassigned += 1
        elif kind == "conversation_resolved" and c.resolved_at is None:
            c.resolved_at, c.sla_status = at, event.data.get("sla_status")
            self.unresolved -= 1
            if self.unresolved == 0:
                self.done.set()

    def assigned(self, c: Conv, data: dict, at: float) -> None:
        """The agent replies at once and resolves after its handling time, counted from the assignment."""
        c.assignments += 1
        c.assigned_at, c.agent, c.waited_s, c.seen_real = at, data["agent_id"], data.get("waited_s"), time.time()
        profile = self.profiles.get(c.tenant, {}).get(c.agent)
        c.resolve_due = at + handling(c, profile, self.p.mismatch)
        self.schedule(at, self.activity(c, types.CONVERSATION_AGENT_REPLIED, at))
        self.schedule(c.resolve_due, self.activity(c, types.CONVERSATION_RESOLVED, c.resolve_due))


async def set_up_agents(stack, url: str, profiles: dict[str, dict[str, tuple[dict, list]]]) -> None:
    """Profiles and presence through the HTTP API (an admin key per tenant)."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        for tenant, agents in profiles.items():
            key = await stack.api_key(tenant, ["admin"])
            headers = {"Authorization": f"Bearer {key}"}
            for agent_id, (skills, languages) in agents.items():
                body = {"name": agent_id, "skills": skills, "languages": languages, "teams": [], "capacity_total": 100}
                (await http.put(f"/v1/agents/{agent_id}", json=body, headers=headers)).raise_for_status()
                (await http.put(f"/v1/agents/{agent_id}/presence", json={"presence": "online"},
                                headers=headers)).raise_for_status()


# ---- analysis ----------------------------------------------------------------------------------------------

def fifo_waits(arrivals: list[float], durations: list[float], servers: int) -> list[float]:
    """Waits in an ideal FIFO queue with ``servers`` identical servers (arrivals in order)."""
    free = [-math.inf] * servers
    waits = []
    for a, d in zip(arrivals, durations):
        start = max(a, heapq.heappop(free))
        heapq.heappush(free, start + d)
        waits.append(start - a)
    return waits


def mmn_run(rng: random.Random, servers: int, rate: float, aht: float, warm: int, n: int) -> tuple[list, float, float]:
    """One ideal M/M/N sample path: measured waits, measured arrival rate and mean handling time."""
    arrivals = poisson(rng, rate, warm + n)
    durations = [rng.expovariate(1 / aht) for _ in arrivals]
    waits = fifo_waits(arrivals, durations, servers)[warm:]
    window = arrivals[warm:]
    return waits, (len(window) - 1) / (window[-1] - window[0]), statistics.fmean(durations[warm:])


def sampling_band(p: Params, rate: float, aht: float, sizes: list[tuple[int, int]]) -> dict:
    """What a perfect router would show at this run length: ``band_runs`` ideal M/M/N runs with the measured rate
    and handling time, each scored exactly like the real run (Erlang C from that run's own measured figures)."""
    rng = random.Random(f"{p.seed}/band")
    d_sl, d_aw, passed = [], [], 0
    for _ in range(p.band_runs):
        waits, rates, ahts = [], [], []
        for warm, n in sizes:
            w, r, h = mmn_run(rng, p.agents, rate, aht, warm, n)
            waits += w
            rates.append(r)
            ahts.append(h)
        sl_pred = service_level(p.agents, statistics.fmean(rates), statistics.fmean(ahts), p.target_s)
        aw_pred = average_wait(p.agents, statistics.fmean(rates), statistics.fmean(ahts))
        dsl = sum(w <= p.target_s for w in waits) / len(waits) - sl_pred
        daw = statistics.fmean(waits) / aw_pred - 1
        d_sl.append(dsl)
        d_aw.append(daw)
        passed += abs(dsl) <= 0.03 and abs(daw) <= 0.10
    q = lambda xs, f: round(sorted(xs)[int(f * (len(xs) - 1))], 4)  # noqa: E731
    return {"runs": p.band_runs, "sl_pp_95": [round(100 * q(d_sl, 0.025), 2), round(100 * q(d_sl, 0.975), 2)],
            "aw_rel_95": [q(d_aw, 0.025), q(d_aw, 0.975)], "perfect_router_pass_share": round(passed / p.band_runs, 3)}


def window(convs: list[Conv], start: float, warmup_s: float) -> list[Conv]:
    return [c for c in convs if c.intended_at >= start + warmup_s and c.resolved_at is not None]


def latency_ms(values: list[float]) -> dict:
    s = sorted(values)
    if not s:
        return {"n": 0}
    pct = lambda f: round(s[min(len(s) - 1, int(f * len(s)))], 1)  # noqa: E731
    return {"n": len(s), "p50": pct(0.5), "p99": pct(0.99), "max": round(s[-1], 1)}


def erlang_figures(p: Params, per_tenant: dict[str, list[Conv]], start: float) -> dict:
    replicas, all_waits, durations, rates, sizes = [], [], [], [], []
    ideal_waits = []
    for tenant, convs in per_tenant.items():
        done = sorted((c for c in convs if c.resolved_at is not None), key=lambda c: c.arrived_at)
        ideal = dict(zip((c.cid for c in done), fifo_waits([c.arrived_at for c in done], [c.duration for c in done],
                                                            p.agents)))
        w = window(done, start, p.warmup_s)
        arrived = sorted(c.arrived_at for c in w)
        rate = (len(arrived) - 1) / (arrived[-1] - arrived[0])
        waits = [c.wait for c in w]
        replicas.append({"tenant": tenant, "n": len(w), "arrival_rate_per_h": round(rate * 3600, 2),
                         "aht_s": round(statistics.fmean(c.duration for c in w), 1),
                         "service_level": round(sum(x <= p.target_s for x in waits) / len(waits), 4),
                         "average_wait_s": round(statistics.fmean(waits), 2)})
        all_waits += waits
        ideal_waits += [ideal[c.cid] for c in w]
        durations += [c.duration for c in w]
        rates.append(rate)
        sizes.append((len(done) - len(w), len(w)))
    rate, aht = statistics.fmean(rates), statistics.fmean(durations)
    sl = sum(x <= p.target_s for x in all_waits) / len(all_waits)
    aw = statistics.fmean(all_waits)
    pred_sl, pred_aw = service_level(p.agents, rate, aht, p.target_s), average_wait(p.agents, rate, aht)
    ideal_sl = sum(x <= p.target_s for x in ideal_waits) / len(ideal_waits)
    ideal_aw = statistics.fmean(ideal_waits)
    convs = [c for cs in per_tenant.values() for c in cs]
    e2e = [c.waited_s for c in window(convs, start, p.warmup_s) if c.waited_s is not None]
    hits = [c.sla_status == "hit" for c in window(convs, start, p.warmup_s)]
    return {
        "n": len(all_waits), "replicas": replicas,
        "measured": {"arrival_rate_per_h": round(rate * 3600, 3), "aht_s": round(aht, 2),
                     "occupancy": round(rate * aht / p.agents, 4), "service_level": round(sl, 4),
                     "average_wait_s": round(aw, 2), "waited_share": round(sum(x > 0 for x in all_waits) / len(all_waits), 4),
                     "e2e_average_wait_s": round(statistics.fmean(e2e), 2) if e2e else None,
                     "routing_sla_hit_share": round(sum(hits) / len(hits), 4) if hits else None},
        "erlang_c": {"p_wait": round(erlang_c(p.agents, rate, aht), 4), "service_level": round(pred_sl, 4),
                     "average_wait_s": round(pred_aw, 2)},
        "same_path_fifo": {"service_level": round(ideal_sl, 4), "average_wait_s": round(ideal_aw, 2)},
        "diff": {"service_level_pp": round(100 * (sl - pred_sl), 2), "average_wait_rel": round(aw / pred_aw - 1, 4),
                 "same_path_service_level_pp": round(100 * (sl - ideal_sl), 2),
                 "same_path_average_wait_rel": round(aw / ideal_aw - 1, 4) if ideal_aw else None},
        "pass": {"service_level": abs(sl - pred_sl) <= 0.03, "average_wait": abs(aw / pred_aw - 1) <= 0.10},
        "sampling_band": sampling_band(p, rate, aht, sizes),
    }


def skills_figures(p: Params, convs: list[Conv], start: float, profiles: dict[str, tuple[dict, list]]) -> dict:
    w = window(convs, start, p.warmup_s)
    waits = sorted(c.wait for c in w)
    answered = [c.assigned_at - c.intended_at for c in w]
    matched = [c.skill in profiles[c.agent][0] and c.language in profiles[c.agent][1] for c in w]
    busy = sum(c.duration for c in w)
    span = max(c.arrived_at for c in w) - min(c.arrived_at for c in w)
    return {"n": len(w), "sla_attainment": round(sum(x <= p.sla_s for x in answered) / len(w), 4),
            "routing_sla_hit_share": round(sum(c.sla_status == "hit" for c in w) / len(w), 4),
            "average_wait_s": round(statistics.fmean(waits), 2), "p90_wait_s": round(waits[int(0.9 * (len(waits) - 1))], 1),
            "matched_share": round(sum(matched) / len(w), 4), "aht_s": round(busy / len(w), 1),
            "occupancy": round(busy / (len(DESK) * span), 4) if span else None}


def pipeline(convs: list[Conv], clock: ScaledClock) -> dict:
    """Delays of the pipeline in real milliseconds: this process → routing (arrivals, resolutions) and routing's
    assignment instant → this process seeing the assignment."""
    ms, origin = 1000 / clock.speed, clock.origin.timestamp()
    done = [c for c in convs if c.resolved_at is not None and c.arrived_at is not None]
    real = lambda ts: origin + (ts - origin) / clock.speed  # noqa: E731
    return {"arrival_to_routing_ms": latency_ms([(c.arrived_at - c.intended_at) * ms for c in done]),
            "resolution_to_routing_ms": latency_ms([(c.resolved_at - c.resolve_due) * ms for c in done]),
            "assignment_to_agent_ms": latency_ms([(c.seen_real - real(c.assigned_at)) * 1000 for c in done])}


def health(convs: list[Conv]) -> dict:
    return {"unresolved": sum(c.resolved_at is None for c in convs),
            "never_assigned": sum(c.assigned_at is None for c in convs),
            "assigned_more_than_once": sum(c.assignments > 1 for c in convs),
            "reassigned": sum(c.reassigned for c in convs)}


async def dead_letters(bootstrap: str, prefix: str) -> dict[str, int]:
    """Records on the dead-letter topics of what routing consumes (should stay 0)."""
    names = [prefix + t.name + ".dlq" for t in (topics.IDENTITY, topics.AGENTS, topics.CONVERSATIONS)]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()  # noqa: SLF001 - metadata of unsubscribed topics
        out = {}
        for name in names:
            parts = [TopicPartition(name, p) for p in (consumer.partitions_for_topic(name) or ())]
            ends = await consumer.end_offsets(parts) if parts else {}
            out[name.removeprefix(prefix)] = sum(ends.values())
        return out
    finally:
        await consumer.stop()


def log_problems(path: Path, offset: int) -> dict:
    """Warning and error lines the routing service logged after ``offset`` (bytes: start-up noise such as the
    consumer group's first rebalances is left out), and the first few of them."""
    with open(path, "rb") as log:
        log.seek(offset)
        lines = log.read().decode(errors="replace").splitlines()
    bad = [line for line in lines if any(k in line for k in ('"WARNING"', '"ERROR"', '"CRITICAL"', "Traceback"))]
    return {"lines": len(lines), "warnings_or_errors": len(bad), "first": [line[:400] for line in bad[:5]]}


# ---- the run -----------------------------------------------------------------------------------------------

async def progress(sim: Simulation, total: int, every_s: float) -> None:
    t0 = time.time()
    while True:
        await asyncio.sleep(every_s)
        print(f"  {time.time() - t0:6.0f} s: {total - sim.unresolved}/{total} conversations resolved, "
              f"{len(sim.heap)} sends scheduled, routing events {sum(sim.event_counts.values())}", flush=True)


def agent_profiles(p: Params) -> dict[str, dict[str, tuple[dict, list]]]:
    profiles = {erlang_tenant(k): {f"agent-{i + 1:02d}": ({}, []) for i in range(p.agents)} for k in range(p.replicas)}
    for tenant in (SKILLED, BASELINE):
        profiles[tenant] = {agent_id: (dict(skills), list(langs)) for agent_id, skills, langs in DESK}
    return profiles


async def simulate(p: Params, infra, stack, result: dict) -> None:
    config = routing_config(p)
    path = Path(tempfile.mkdtemp(prefix="routing-sim-")) / "routing.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    origin = datetime.now(timezone.utc).replace(microsecond=0)
    clock = ScaledClock(origin, p.speed)
    env = {"TOUCHPOINT_ROUTING_CONFIG": str(path), "TOUCHPOINT_CLOCK_SPEED": str(p.speed),
           "TOUCHPOINT_CLOCK_ORIGIN": origin.isoformat(),
           "TOUCHPOINT_TIMER_INTERVAL_S": f"{p.timer_granularity_s / p.speed:.4f}"}
    service = harness.start_service(stack, "routing", **env)
    result.update(routing_config=config, service_env=env, service_log=str(service.log_path.relative_to(harness.ROOT)))
    await harness.wait_ready([service])
    profiles = agent_profiles(p)
    await set_up_agents(stack, service.url, profiles)
    convs = [c for k in range(p.replicas) for c in erlang_arrivals(p, k)]
    convs += skills_arrivals(p, SKILLED) + skills_arrivals(p, BASELINE)
    sim = Simulation(p, stack.bootstrap_servers, stack.prefix, clock, convs, profiles)
    procs = ProcessSet()
    procs.add("routing", service.popen.pid)
    for name, pid, group in (("kafka", harness.kafka_pid(), False), ("postgres", harness.postgres_pid(), True),
                             ("bench", os.getpid(), False)):
        if pid:
            procs.add(name, pid, group)
    start = clock.now().timestamp() + 5 * p.speed  # after the consumer group settled
    timeout = p.duration_s / p.speed + 60 + 40 * p.aht_s * p.mismatch / p.speed
    print(f"simulating {len(convs)} conversations over {p.duration_s:,.0f} routing seconds "
          f"(~{p.duration_s / p.speed / 60:.1f} min real, timeout {timeout / 60:.1f} min)", flush=True)
    log_offset = service.log_path.stat().st_size
    before, t0 = procs.cpu_snapshot(), time.time()
    ticker = asyncio.create_task(progress(sim, len(convs), 60 if not p.quick else 15))
    try:
        await sim.run(start, timeout)
    finally:
        ticker.cancel()
    wall = time.time() - t0
    cpu = cpu_delta(before, procs.cpu_snapshot())
    stack.stop_all()
    result["run"] = {"wall_s": round(wall, 1), "cpu_cores": {k: round(v / wall, 3) for k, v in cpu.items()},
                     "routing_events": sim.event_counts, "unmatched_events": sim.unknown,
                     "pipeline": pipeline(convs, clock), "health": health(convs),
                     "dead_letters": await dead_letters(stack.bootstrap_servers, stack.prefix),
                     "service_log": log_problems(service.log_path, log_offset)}
    by_tenant: dict[str, list[Conv]] = {}
    for c in convs:
        by_tenant.setdefault(c.tenant, []).append(c)
    result["erlang"] = erlang_figures(p, {erlang_tenant(k): by_tenant[erlang_tenant(k)] for k in range(p.replicas)}, start)
    result["skills"] = {t: skills_figures(p, by_tenant[t], start, profiles[t]) for t in (SKILLED, BASELINE)}
    s, b = result["skills"][SKILLED], result["skills"][BASELINE]
    result["skills"]["pass"] = {"sla_attainment": s["sla_attainment"] > b["sla_attainment"],
                                "average_wait": s["average_wait_s"] < b["average_wait_s"]}


async def run(p: Params, args: argparse.Namespace) -> dict:
    infra = harness.start_infra()
    result: dict = {"started": datetime.now(timezone.utc).isoformat(), "quick": p.quick,
                    "command": "python -m bench.routing_sim " + " ".join(sys.argv[1:]),
                    "machine": harness.machine(), "git": harness.git_info(), "params": asdict(p),
                    "infra": "stopped at the end" if not args.keep_infra else "left running (--keep-infra)"}
    stack = None
    try:
        result["versions"] = await harness.versions(infra.admin_dsn)
        stack = await harness.fresh_stack(infra)
        await simulate(p, infra, stack, result)
    finally:
        if stack is not None:
            stack.stop_all()
            if not args.keep_data:
                await harness.drop_stack(infra, stack)
        if not args.keep_infra:
            infra.stop_all()
    result["finished"] = datetime.now(timezone.utc).isoformat()
    return result


# ---- output ------------------------------------------------------------------------------------------------

def _ok(flag: bool) -> str:
    return "pass" if flag else "FAIL"


def parameters_text(p: Params) -> list[str]:
    return [
        f"clock speed {p.speed:g}x (1 real s = {p.speed:g} routing s), seed {p.seed}, warm-up {p.warmup_s:g} routing s "
        f"excluded, timer tick every {p.timer_granularity_s:g} routing s",
        f"scenario 1: {p.replicas} x M/M/{p.agents} (one chat per agent, auto-accept, 24x7), occupancy {p.occupancy:g}, "
        f"arrival rate {p.arrival_rate * 3600:.1f}/h, AHT {p.aht_s:g} s, T = {p.target_s:g} s, "
        f"{p.arrivals} arrivals per replica over {p.duration_s / 3600:.1f} routing h",
        f"scenario 2: {len(DESK)} agents, skills {SKILLS}, languages {LANGUAGES}, occupancy {p.skills_occupancy:g} "
        f"if always matched, arrival rate {p.skills_rate * 3600:.1f}/h, mismatch x{p.mismatch:g}, "
        f"first-response SLA {p.sla_s:g} s, relax to anyone after {p.relax_s:g} s",
    ]


def table(result: dict) -> str:
    p = Params(**result["params"])
    e, s, r = result["erlang"], result["skills"], result["run"]
    m, pred, same, d = e["measured"], e["erlang_c"], e["same_path_fifo"], e["diff"]
    band = e["sampling_band"]
    lines = [f"Routing simulation{' (QUICK: harness check only, the figures are not meaningful)' if p.quick else ''}",
             *("  " + t for t in parameters_text(p)), "",
             f"1. Single-skill queue vs Erlang C — {e['n']} measured conversations; measured arrival rate "
             f"{m['arrival_rate_per_h']}/h, AHT {m['aht_s']} s, occupancy {m['occupancy']}, P(wait>0) "
             f"{m['waited_share']} (Erlang C {pred['p_wait']})"]
    rows = [("", "measured", "Erlang C", "diff", "target", "result", "same-path FIFO", "diff"),
            (f"service level (<= {p.target_s:g} s)", f"{m['service_level']:.4f}", f"{pred['service_level']:.4f}",
             f"{d['service_level_pp']:+.2f} pp", "±3 pp", _ok(e["pass"]["service_level"]),
             f"{same['service_level']:.4f}", f"{d['same_path_service_level_pp']:+.2f} pp"),
            ("average wait (s)", f"{m['average_wait_s']:.2f}", f"{pred['average_wait_s']:.2f}",
             f"{100 * d['average_wait_rel']:+.1f} %", "±10 %", _ok(e["pass"]["average_wait"]),
             f"{same['average_wait_s']:.2f}", f"{100 * (d['same_path_average_wait_rel'] or 0):+.1f} %")]
    lines += _grid(rows)
    lines.append(f"   a perfect FIFO router at this run length ({band['runs']} ideal M/M/{p.agents} runs): service-level "
                 f"diff 95 % within {band['sl_pp_95']} pp, average-wait diff within "
                 f"[{100 * band['aw_rel_95'][0]:+.0f} %, {100 * band['aw_rel_95'][1]:+.0f} %]; it meets both targets in "
                 f"{100 * band['perfect_router_pass_share']:.0f} % of runs")
    lines.append(f"   routing's own SLA clocks (first response <= {p.target_s:g} s from the customer's message): hit share "
                 f"{m['routing_sla_hit_share']}; wait incl. the arrival's way to routing {m['e2e_average_wait_s']} s")
    k, b = s[SKILLED], s[BASELINE]
    lines += ["", f"2. Multi-skill desk, same {k['n']} arrivals: skills workflow vs round robin"]
    rows = [("", "skills (most_available)", "round robin", "skills better"),
            (f"SLA attainment (<= {p.sla_s:g} s)", f"{k['sla_attainment']:.4f}", f"{b['sla_attainment']:.4f}",
             _ok(s["pass"]["sla_attainment"])),
            ("average wait (s)", f"{k['average_wait_s']:.2f}", f"{b['average_wait_s']:.2f}", _ok(s["pass"]["average_wait"])),
            ("p90 wait (s)", f"{k['p90_wait_s']}", f"{b['p90_wait_s']}", ""),
            ("routing's SLA hit share", f"{k['routing_sla_hit_share']}", f"{b['routing_sla_hit_share']}", ""),
            ("matched skill+language", f"{k['matched_share']}", f"{b['matched_share']}", ""),
            ("mean handling (s)", f"{k['aht_s']}", f"{b['aht_s']}", ""),
            ("occupancy", f"{k['occupancy']}", f"{b['occupancy']}", "")]
    lines += _grid(rows)
    pl = r["pipeline"]
    lines += ["", f"run: {r['wall_s']} s wall; CPU cores {r['cpu_cores']}; pipeline p50/p99 ms: arrival→routing "
              f"{_lat(pl['arrival_to_routing_ms'])}, resolution→routing {_lat(pl['resolution_to_routing_ms'])}, "
              f"assignment→agent {_lat(pl['assignment_to_agent_ms'])}",
              f"health: {r['health']}, dead letters {r['dead_letters']}, unmatched events {r['unmatched_events']}, "
              f"service log warnings/errors {r['service_log']['warnings_or_errors']}"]
    return "\n".join(lines)


def _lat(d: dict) -> str:
    return f"{d['p50']}/{d['p99']}" if d.get("n") else "-"


def _grid(rows: list[tuple]) -> list[str]:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return ["   " + "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def markdown(result: dict, path: Path) -> str:
    g, v, m = result["git"], result["versions"], result["machine"]
    rel = path.relative_to(harness.ROOT)
    return "\n".join([
        f"Latest run: `{result['command'].strip()}` — {result['started'][:19]}Z, commit `{g['commit'][:10]}`"
        f"{' (with uncommitted changes)' if g['dirty_files'] else ''}; {m['nproc']} cores, Kafka {v['kafka']}, "
        f"PostgreSQL {v['postgres']}. Full figures: [`{rel}`](../{rel}).", "", "```", table(result), "```"])


def params_from(args: argparse.Namespace) -> Params:
    quick = args.quick
    p = Params(quick=quick, speed=args.speed, seed=args.seed, agents=8, occupancy=0.8, aht_s=300.0, target_s=20.0,
               arrivals=args.arrivals or (150 if quick else 2400), replicas=args.replicas or (1 if quick else 4),
               warmup_s=600.0 if quick else 1800.0, skills_occupancy=0.6, mismatch=1.6, sla_s=60.0, relax_s=30.0,
               timer_granularity_s=2.0, band_runs=40 if quick else 200)
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    a = argparse.ArgumentParser(prog="python -m bench.routing_sim", description=__doc__.split("\n\n")[0])
    a.add_argument("--quick", action="store_true", help="a small run that checks the harness (~3 min)")
    a.add_argument("--speed", type=float, default=100.0, help="routing seconds per real second")
    a.add_argument("--arrivals", type=int, help="scenario 1 arrivals per replica (default 2400; quick 150)")
    a.add_argument("--replicas", type=int, help="independent copies of scenario 1 (default 4; quick 1)")
    a.add_argument("--seed", type=int, default=1)
    a.add_argument("--keep-infra", action="store_true", help="leave the benchmark's Kafka and PostgreSQL running")
    a.add_argument("--keep-data", action="store_true", help="keep the stack's database and topics")
    a.add_argument("--docs", choices=("auto", "yes", "no"), default="auto",
                   help="refresh docs/benchmarks.md (auto: full runs only)")
    return a.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    p = params_from(args)
    print("\n".join(parameters_text(p)) + ("\nQUICK run: checks the harness only" if p.quick else ""), flush=True)
    result = asyncio.run(run(p, args))
    print()
    print(table(result))
    report.RESULTS.mkdir(parents=True, exist_ok=True)
    path = report.RESULTS / f"{RESULT_FILE}{'-quick' if p.quick else ''}.json"
    path.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(f"\nresults: {path.relative_to(harness.ROOT)}")
    if args.docs == "yes" or (args.docs == "auto" and not p.quick):
        report.update_docs("routing_sim", markdown(result, path))
        print("docs/benchmarks.md refreshed")


if __name__ == "__main__":
    main()
