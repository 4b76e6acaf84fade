"""Start-up: seconds from launching each service's process until it answers ready (its consumers hold their
partitions, its database and Kafka answer).

    .venv/bin/python -m bench.startup                              # every service, in the order make run uses
    .venv/bin/python -m bench.startup --heartbeat-ms 3000          # with aiokafka's default heartbeat

Each service subscribes to its topics with one consumer per topic in one consumer group. The consumers start one
after another, and each one that joins rebalances the group: the members already in it must hear of the
rebalance (with their next heartbeat, ``TOUCHPOINT_KAFKA_HEARTBEAT_INTERVAL_MS``) and rejoin before anyone gets
partitions. So start-up, and every pause a rebalance causes later, grows with the heartbeat interval and the
number of subscriptions. Services start one at a time on a fresh stack of the benchmark's own Kafka and
PostgreSQL; the ones started stay up (idle) while the next starts.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import datetime, timezone

from bench import harness, report
from shared.settings import ServiceSettings

SERVICES = ("ingestion", "identity", "timeline", "routing", "notification", "feedback")


async def run(args: argparse.Namespace) -> dict:
    infra = harness.start_infra()
    stack = await harness.fresh_stack(infra)
    env = {"TOUCHPOINT_KAFKA_HEARTBEAT_INTERVAL_MS": str(args.heartbeat_ms)} if args.heartbeat_ms else {}
    seconds: dict[str, float] = {}
    try:
        for service in args.services:
            started = time.monotonic()
            proc = harness.start_service(stack, service, **env)
            await harness.wait_ready([proc], timeout=180)
            seconds[service] = round(time.monotonic() - started, 2)
            print(f"  {service}: ready after {seconds[service]} s")
    finally:
        stack.stop_all()
        await harness.drop_stack(infra, stack)
        if not args.keep_infra:
            infra.stop_all()
    default = ServiceSettings.model_fields["kafka_heartbeat_interval_ms"].default
    return {"benchmark": "startup", "heartbeat_ms": args.heartbeat_ms or default,
            "services_default": not args.heartbeat_ms, "seconds_to_ready": seconds, "git": harness.git_info(), "machine": harness.machine(),
            "at": datetime.now(timezone.utc).isoformat()}


def markdown(r: dict) -> str:
    beat = f"{r['heartbeat_ms']} ms" + (" (the services' default)" if r["services_default"] else "")
    return "\n".join([
        f"Seconds from launching each service until it is ready, heartbeat interval {beat}; {r['at'][:16]}, commit "
        f"{r['git'].get('commit', '?')[:9]}.",
        "",
        "| service | seconds to ready |",
        "|---|---|",
        *(f"| {name} | {s} |" for name, s in r["seconds_to_ready"].items()),
    ])


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.startup")
    p.add_argument("--services", nargs="+", default=list(SERVICES), choices=SERVICES)
    p.add_argument("--heartbeat-ms", type=int, default=0,
                   help="override the services' heartbeat interval (such a run does not refresh the docs)")
    p.add_argument("--keep-infra", action="store_true", help="leave the benchmark's Kafka and PostgreSQL running")
    args = p.parse_args()
    result = asyncio.run(run(args))
    if args.heartbeat_ms:  # not the services' own setting: a result file, not the docs
        print(markdown(result))
        print(f"\nresult: {report.write_result(result, 'startup')}")
    else:
        report.publish(result, "startup", markdown(result))


if __name__ == "__main__":
    main()
