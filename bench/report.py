"""Tables for the terminal, result files in ``bench/results/`` and the generated parts of ``docs/benchmarks.md``."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
DOCS = ROOT / "docs" / "benchmarks.md"

PROCESS_ROWS = [("hop 1", "ingestion", "hop1"), ("hop 2", "identity", "hop2"), ("hop 3", "timeline", "hop3"),
                ("load generator", "loadgen", "loadgen"), ("kafka", "kafka", "kafka"),
                ("postgres (all)", "postgres", "postgres")]


def write_result(result: dict, name: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"{stamp}-{name}{'-quick' if result.get('quick') else ''}.json"
    path.write_text(json.dumps(result, indent=1, default=str) + "\n")
    return path


def publish(result: dict, name: str, markdown: str) -> Path:
    """Write the result file, print ``markdown`` and where the file is, and (unless the run was ``--quick``)
    refresh the benchmark's section of docs/benchmarks.md."""
    path = write_result(result, name)
    print(markdown)
    print(f"\nresult: {path}")
    if not result.get("quick"):
        update_docs(name, markdown)
    return path


def _lat(d: dict | None) -> str:
    if not d or not d.get("n"):
        return "-"
    return f"{d['p50_ms']} / {d['p99_ms']} / {d['p999_ms']}"


def _n(v, fmt="{:.0f}") -> str:
    return "-" if v is None else fmt.format(v)


def _capped(mode: dict, top: float | None) -> bool:
    if "capped" in mode:
        return bool(mode["capped"])
    return bool(top and mode.get("sustainable") and mode["sustainable"] >= top)


def _rate(mode: dict, top: float | None) -> str:
    """The median sustainable rate; '≥' when no rate failed (the real ceiling is higher than what was tried)."""
    v = mode.get("sustainable")
    return "-" if v is None else (f"≥{v:.0f}" if _capped(mode, top) else f"{v:.0f}")


def e2e_rows(result: dict) -> list[tuple[str, str, str]]:
    """(label, touchpoint, reference) rows of the summary."""
    s = result["summary"]
    tp = s["modes"].get("touchpoint", {})
    ref = s["modes"].get("reference", {})
    top = max((float(r) for r in str(result["config"].get("rates", "")).split(",") if r.strip()), default=None)
    rows = [
        ("sustainable events/s (median)", _rate(tp, top), _rate(ref, top)),
        ("  per round", str(tp.get("sustainable_per_round", "-")), str(ref.get("sustainable_per_round", "-"))),
        ("  hop with most lag at the first failed rate", ", ".join(tp.get("most_lag_at_first_failed_rate", [])) or "-",
         ", ".join(ref.get("most_lag_at_first_failed_rate", [])) or "-"),
        ("ratio touchpoint / reference", ("≤" if _capped(ref, top) else "")
         + _n(s.get("ratio"), "{:.2f}") +
         (f"  (per round {s.get('ratio_per_round')})" if s.get("ratio_per_round") else ""), ""),
        ("latency step rate (50 %), per round", str(tp.get("latency_rate_per_round", "-")),
         str(ref.get("latency_rate_per_round", "-"))),
        ("  → committed row p50/p99/p99.9 ms", _lat(tp.get("latency_rows")), _lat(ref.get("latency_rows"))),
        ("  → timeline topic p50/p99/p99.9 ms", _lat(tp.get("latency_topic")), _lat(ref.get("latency_topic"))),
        ("CPU µs/event at sustainable rate", "", ""),
    ]
    cpu_tp, cpu_ref = tp.get("cpu_us_per_event_at_sustainable", {}), ref.get("cpu_us_per_event_at_sustainable", {})
    cores_tp, cores_ref = tp.get("cpu_cores_at_sustainable", {}), ref.get("cpu_cores_at_sustainable", {})
    for label, a, b in PROCESS_ROWS:
        rows.append((f"  {label} ({a} / {b})" if a != b else f"  {label}",
                     f"{_n(cpu_tp.get(a))}  ({_n(cores_tp.get(a), '{:.2f}')} cores)",
                     f"{_n(cpu_ref.get(b))}  ({_n(cores_ref.get(b), '{:.2f}')} cores)"))
    rows.append(("  total (without the observer)", _n(cpu_tp.get("total")), _n(cpu_ref.get("total"))))
    rows.append(("  other work on the machine (cores)", _n(cores_tp.get("others"), "{:.2f}"),
                 _n(cores_ref.get("others"), "{:.2f}")))
    rows.append(("  observer (this process)", _n(cpu_tp.get("bench")), _n(cpu_ref.get("bench"))))
    rows.append(("CPU µs/event at 50 % (total)", _n(tp.get("cpu_us_per_event_at_50pct", {}).get("total")),
                 _n(ref.get("cpu_us_per_event_at_50pct", {}).get("total"))))
    rows.append(("peak RSS MB", "", ""))
    rss_tp, rss_ref = tp.get("peak_rss_mb", {}), ref.get("peak_rss_mb", {})
    for label, a, b in PROCESS_ROWS:
        rows.append((f"  {label}", _n(rss_tp.get(a)), _n(rss_ref.get(b))))
    rows.append(("correct in every round", _ok(tp.get("correct_all_rounds")), _ok(ref.get("correct_all_rounds"))))
    return rows


def _ok(v) -> str:
    return "-" if v is None else ("yes" if v else "NO")


def e2e_table(result: dict) -> str:
    rows = e2e_rows(result)
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows + [("", "touchpoint", "")])
    m = result["machine"]
    lines = [f"Touchpoint vs raw reference pipe — {m['nproc']} cores, {m['mem_total']}, load at start "
             f"{' '.join(m['loadavg_at_start'])}; commit {result['git']['commit'][:10]}"
             f"{' (dirty)' if result['git']['dirty_files'] else ''}",
             f"{'':{w0}}  {'touchpoint':>{w1}}  reference", "-" * (w0 + w1 + 24)]
    for a, b, c in rows:
        lines.append(f"{a:{w0}}  {b:>{w1}}  {c}")
    lines += _extras(result)
    return "\n".join(lines)


def _extras(result: dict) -> list[str]:
    lines = []
    h = result.get("http")
    if h:
        g = h["generator"]
        lines.append(f"POST /v1/events (batches of {g.get('batch')}) at {h['rate']:.0f}/s for {h['seconds']:.0f}s: "
                     f"{'sustained' if h['ok'] else 'NOT sustained (' + '; '.join(h['reasons']) + ')'}; "
                     f"row p50/p99/p99.9 {_lat(h['rows_latency'])} ms; topic {_lat(h['topic_latency'])} ms; "
                     f"request p50/p99 {g.get('request_ms_p50')}/{g.get('request_ms_p99')} ms; statuses {g.get('statuses')}")
    soak = result.get("soak")
    if soak and soak.get("growth"):
        parts = ", ".join(f"{k} {v['baseline_mb']}→{v['final_mb']} MB ({v['growth_pct']:+.1f} %)"
                          for k, v in soak["growth"].items())
        lines.append(f"soak at {soak['rate']}/s for {soak['minutes']:g} min ({'lag flat' if soak.get('step_ok') else 'lag NOT flat'}): RSS {parts}")
    t = result["summary"].get("targets")
    if t:
        lines.append("targets: " + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in t.items()))
    return lines


def e2e_markdown(result: dict, path: Path) -> str:
    m, v, g = result["machine"], result["versions"], result["git"]
    rows = e2e_rows(result)
    out = [f"Latest run: `{result['command'].strip()}` — {result['started'][:19]}Z, commit `{g['commit'][:10]}`"
           f"{' with uncommitted changes in ' + ', '.join(f'`{f}`' for f in g['dirty_files'][:8]) if g['dirty_files'] else ''}.",
           f"Machine: {m['nproc']} cores ({m['cpu_model']}), {m['mem_total']}, load average at start "
           f"{' '.join(m['loadavg_at_start'])}; Python {v['python']}, Kafka {v['kafka']}, PostgreSQL {v['postgres']} "
           f"(fsync {v['postgres_fsync']}), aiokafka {v.get('aiokafka')}, faststream {v.get('faststream')}. "
           f"Full figures: [`{path.relative_to(ROOT)}`](../{path.relative_to(ROOT)}).", "",
           "| | touchpoint | reference |", "|---|---|---|"]
    out += [f"| {a.strip() if not a.startswith('  ') else '&nbsp;&nbsp;' + a.strip()} | {b} | {c} |" for a, b, c in rows]
    extras = _extras(result)
    if extras:
        out.append("")
        out += [f"- {line}" for line in extras]
    return "\n".join(out)


TEMPLATE = """# Benchmarks

Benchmarks live in `bench/`, print their figures and are run by hand (`make bench`, `make bench-api`); they are
never timed tests. Each run writes its raw figures to `bench/results/` and refreshes its section below.

## End to end: `python -m bench.e2e`

<!-- bench:e2e:start -->
(not run yet)
<!-- bench:e2e:end -->

## Timeline HTTP API: `python -m bench.timeline_api`

<!-- bench:timeline_api:start -->
(not run yet)
<!-- bench:timeline_api:end -->
"""


def update_docs(section: str, markdown: str) -> None:
    text = DOCS.read_text() if DOCS.exists() else TEMPLATE
    start, end = f"<!-- bench:{section}:start -->", f"<!-- bench:{section}:end -->"
    if start not in text:
        text = text.rstrip() + f"\n\n{start}\n{end}\n"
    text = re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _: f"{start}\n{markdown}\n{end}", text,
                  flags=re.S)
    DOCS.parent.mkdir(parents=True, exist_ok=True)
    DOCS.write_text(text)


def main() -> None:
    """``python -m bench.report RESULT.json [--docs]``: print a result file's table again (and refresh the docs)."""
    import argparse  # noqa: PLC0415

    p = argparse.ArgumentParser(prog="python -m bench.report")
    p.add_argument("result", type=Path)
    p.add_argument("--docs", action="store_true", help="refresh its section of docs/benchmarks.md")
    a = p.parse_args()
    result = json.loads(a.result.read_text())
    path = a.result.resolve()
    if "timeline_api" in path.name:
        from bench import timeline_api  # noqa: PLC0415

        print(timeline_api.table(result))
        if a.docs:
            update_docs("timeline_api", timeline_api.markdown(result, path))
    else:
        print(e2e_table(result))
        if a.docs:
            update_docs("e2e", e2e_markdown(result, path))


if __name__ == "__main__":
    main()
