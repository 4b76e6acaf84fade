"""py-spy on running service processes: collapsed stacks to ``bench/results/profiles/`` and a text summary.

``py-spy record --nonblocking --format raw`` samples without pausing the process (100 Hz). Idle samples are
not recorded, so ``busy`` = samples / (rate × seconds) is the share of wall time the process spent running
Python (or native code called from it); samples waiting in the event loop's ``select`` are counted as idle. The collapsed files open in speedscope or flamegraph.pl.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import sys
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

PROFILE_DIR = Path(__file__).resolve().parent / "results" / "profiles"
RATE = 100
_LINE = re.compile(r":\d+\)$")


def py_spy() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


class Profiler:
    def __init__(self, pids: dict[str, int], seconds: float) -> None:
        self.pids = pids
        self.seconds = seconds
        self.procs: dict[str, asyncio.subprocess.Process] = {}
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        self.paths = {name: PROFILE_DIR / f"{stamp}-{name}.txt" for name in pids}

    async def start(self) -> None:
        exe = py_spy()
        if exe is None:
            print("  profile: py-spy not installed (.venv/bin/pip install py-spy); skipped", flush=True)
            return
        PROFILE_DIR.mkdir(parents=True, exist_ok=True)
        for name, pid in self.pids.items():
            self.procs[name] = await asyncio.create_subprocess_exec(
                exe, "record", "--pid", str(pid), "--duration", str(int(self.seconds)), "--rate", str(RATE),
                "--format", "raw", "--nonblocking", "--output", str(self.paths[name]),
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)

    async def finish(self) -> dict:
        out = {}
        for name, proc in self.procs.items():
            _, err = await proc.communicate()
            path = self.paths[name]
            if proc.returncode != 0 or not path.exists():
                out[name] = {"error": err.decode(errors="replace")[-500:]}
                continue
            out[name] = summarise(path, self.seconds)
            print_summary(name, out[name])
        return out


IDLE_LEAVES = ("select (selectors.py)", "EpollSelector.select (selectors.py)", "poll (selectors.py)")


def _module(frame: str) -> str:
    """Top-level module of a py-spy frame label ``function (path/file.py:line)``."""
    path = frame[frame.rfind("(") + 1:].rstrip(")")
    top = path.split("/", 1)[0] if "/" in path else path.split(".", 1)[0]
    return top


def _owner(frames: list[str]) -> str:
    """The innermost frame outside the standard library: which package's call the sample's time is spent for."""
    for f in reversed(frames):
        if f.startswith(("Handle._run (asyncio/", "BaseEventLoop._run_once (asyncio/")):
            break  # reached the event loop's dispatch: below it is only the server's start-up (uvicorn)
        top = _module(f)
        if top and top not in sys.stdlib_module_names and not top.startswith("<"):
            return top
    return "stdlib (event loop)"


def summarise(path: Path, seconds: float, top: int = 15) -> dict:
    self_time: Counter = Counter()
    inclusive: Counter = Counter()
    owners: Counter = Counter()
    total = idle = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_LINE.sub(")", f) for f in stack.split(";")]
        if frames[-1] in IDLE_LEAVES:
            idle += n
            continue
        total += n
        self_time[frames[-1]] += n
        owners[_owner(frames)] += n
        for f in set(frames):
            inclusive[f] += n
    pct = lambda c: round(100 * c / total, 1) if total else 0  # noqa: E731
    project = [(f, pct(c)) for f, c in inclusive.most_common() if "(services/" in f or "(shared/" in f]
    return {"file": str(path.resolve().relative_to(PROFILE_DIR.parents[2])), "samples": total, "idle_samples": idle,
            "busy": round(total / (RATE * seconds), 2),
            "by_package": [(k, pct(c)) for k, c in owners.most_common(12)],
            "top_self": [(f, pct(c)) for f, c in self_time.most_common(top)],
            "top_project_inclusive": project[:top]}


def print_summary(name: str, s: dict) -> None:
    print(f"  profile {name}: busy {s['busy']:.0%} of wall time ({s['samples']} samples, idle excluded; {s['file']})",
          flush=True)
    print("    by package (innermost non-stdlib frame): "
          + ", ".join(f"{k} {p:.0f} %" for k, p in s["by_package"][:8]), flush=True)
    print("    self time:", flush=True)
    for f, p in s["top_self"][:10]:
        print(f"      {p:5.1f} %  {f}", flush=True)
    print("    project code, inclusive:", flush=True)
    for f, p in s["top_project_inclusive"][:12]:
        print(f"      {p:5.1f} %  {f}", flush=True)
