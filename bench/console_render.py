"""Agent console benchmark: first render of a customer with 10,000 timeline entries, and live-update latency,
in headless Chromium (Debian's package, driven by Playwright).

    .venv/bin/python -m bench.console_render                 # 20 cold loads, 30 live updates
    .venv/bin/python -m bench.console_render --quick         # harness check

On a fresh stack on the benchmark's own PostgreSQL and Kafka, with the timeline service as its own process:
1. 10,000 entries for the target customer (plus ``--other-rows`` for other customers) are written in the shape
   the service stores them (``bench.timeline_api.populate``);
2. ``--loads`` times, a new browser context (empty cache, new session) opens ``/console?customer=<id>`` with an
   agent key; measured: from navigation start to the header and the first timeline page rendered (the page
   marks that instant), and the whole ``openCustomer`` (both API calls + render);
3. ``--updates`` times, one ``touchpoint.interaction.resolved.v1`` for the customer is published to the identity
   topic (what the timeline consumes) and the time until the entry is on the open page is measured: Kafka
   acknowledgement → timeline projection → PostgreSQL NOTIFY → server-sent event → DOM.
Printed: p50 / p95 / max of each, the targets being a first render under 1 s and a live update within 2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import time
import uuid
from datetime import datetime, timezone

from aiokafka import AIOKafkaProducer
from playwright.async_api import async_playwright

from bench import harness, report
from bench.timeline_api import TARGET, TENANT, populate
from shared import topics
from shared.cloudevents import CloudEvent
from shared.contracts import types
from shared.kafka import event_record

CHROMIUM = os.environ.get("TOUCHPOINT_CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")


def summary(values_ms: list[float]) -> dict:
    ordered = sorted(values_ms)
    return {"n": len(ordered), "p50_ms": round(statistics.median(ordered), 1),
            "p95_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))], 1),
            "max_ms": round(ordered[-1], 1)}


async def cold_loads(browser, url: str, key: str, loads: int) -> tuple[list[float], list[float]]:
    since_navigation, open_customer = [], []
    for _ in range(loads):
        context = await browser.new_context(viewport={"width": 1400, "height": 1000})
        await context.add_init_script(f"sessionStorage.setItem('touchpoint.key', '{key}')")
        page = await context.new_page()
        await page.goto(f"{url}?customer={TARGET}")
        await page.wait_for_selector("body[data-rendered-at]")
        since_navigation.append(float(await page.get_attribute("body", "data-rendered-at")))
        open_customer.append(float(await page.get_attribute("body", "data-rendered-ms")))
        assert await page.locator("#entries .entry").count() == 50
        await context.close()
    return since_navigation, open_customer


async def live_updates(browser, url: str, key: str, stack, updates: int) -> list[float]:
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    await context.add_init_script(f"sessionStorage.setItem('touchpoint.key', '{key}')")
    page = await context.new_page()
    await page.goto(f"{url}?customer={TARGET}")
    await page.wait_for_selector("body[data-rendered-at]")
    await page.wait_for_timeout(500)
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap_servers, enable_idempotence=True, acks="all")
    await producer.start()
    took = []
    try:
        for n in range(updates):
            subject = f"live {n} {uuid.uuid4().hex[:8]}"
            now = datetime.now(timezone.utc)
            data = {"channel": "chat", "direction": "inbound", "identifiers": [{"type": "email", "value": "t@example.org"}],
                    "subject": subject, "text": subject, "tags": [], "source": "bench-live", "event_id": subject,
                    "occurred_at": now.isoformat(), "received_at": now.isoformat(), "customer_id": TARGET}
            event = CloudEvent(id=str(uuid.uuid4()), source="touchpoint/identity", type=types.INTERACTION_RESOLVED,
                               time=now, data=data, extensions={"tenant": TENANT})
            r = event_record(stack.topic(topics.IDENTITY.name), TARGET, event)
            await producer.send_and_wait(r.topic, r.value, key=r.key, headers=r.headers)
            started = time.perf_counter()
            await page.locator(".entry.new", has_text=subject).wait_for(timeout=20_000)
            took.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(0.2)
    finally:
        await producer.stop()
        await context.close()
    return took


async def run(args: argparse.Namespace) -> dict:
    infra = harness.start_infra()
    stack = await harness.fresh_stack(infra)
    try:
        await populate(stack, args.entries, args.other_rows)
        proc = harness.start_service(stack, "timeline")
        await harness.wait_ready([proc])
        key = await stack.api_key(TENANT, ["agent:bench"])
        url = proc.url + "/console"
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            try:
                await cold_loads(browser, url, key, 2)  # warm the service and the database caches
                since_navigation, open_customer = await cold_loads(browser, url, key, args.loads)
                live = await live_updates(browser, url, key, stack, args.updates)
            finally:
                await browser.close()
        proc.terminate()
    finally:
        stack.stop_all()
        await harness.drop_stack(infra, stack)
        if not args.keep_infra:
            infra.stop_all()
    return {
        "benchmark": "console_render", "quick": args.quick, "entries": args.entries, "other_rows": args.other_rows,
        "first_render_since_navigation": summary(since_navigation), "open_customer": summary(open_customer),
        "live_update": summary(live), "chromium": CHROMIUM, "git": harness.git_info(), "machine": harness.machine(),
        "at": datetime.now(timezone.utc).isoformat(),
    }


def markdown(result: dict) -> str:
    r, o, lv = result["first_render_since_navigation"], result["open_customer"], result["live_update"]
    return "\n".join([
        f"Customer with {result['entries']:,} entries (+{result['other_rows']:,} rows of other customers), headless "
        f"Chromium, {r['n']} cold loads, {lv['n']} live updates; {result['at'][:16]}, commit {result['git'].get('commit', '?')[:9]}.",
        "",
        "| measured | p50 | p95 | max | target |",
        "|---|---|---|---|---|",
        f"| first render (navigation start → header + first 50 entries drawn) | {r['p50_ms']} ms | {r['p95_ms']} ms | {r['max_ms']} ms | < 1,000 ms |",
        f"| opening the customer (2 API calls + render) | {o['p50_ms']} ms | {o['p95_ms']} ms | {o['max_ms']} ms | — |",
        f"| live update (Kafka ack → entry on the open page) | {lv['p50_ms']} ms | {lv['p95_ms']} ms | {lv['max_ms']} ms | < 2,000 ms |",
    ])


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.console_render")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--entries", type=int, default=10_000)
    p.add_argument("--other-rows", type=int, default=100_000)
    p.add_argument("--loads", type=int, default=20)
    p.add_argument("--updates", type=int, default=30)
    p.add_argument("--keep-infra", action="store_true", help="leave the benchmark's Kafka and PostgreSQL running")
    args = p.parse_args()
    if args.quick:
        args.other_rows, args.loads, args.updates = 1_000, 3, 3
    result = asyncio.run(run(args))
    report.publish(result, "console_render", markdown(result))


if __name__ == "__main__":
    main()
