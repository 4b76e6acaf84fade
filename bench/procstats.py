"""CPU time and memory of processes from /proc (Linux), without extra dependencies.

- CPU: ``utime + stime`` of the process; for a group (PostgreSQL) the sum over the postmaster (including
  ``cutime + cstime``: CPU of children it already reaped) and its living children.
- Memory: ``VmHWM`` (peak resident set over the process's lifetime) for one process; for a group the peak over
  samples of the summed proportional set size (``Pss`` from ``smaps_rollup``), so shared buffers count once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2:].split()  # fields from 'state' (field 3) on


def cpu_seconds(pid: int, with_children: bool = False) -> float | None:
    f = _stat_fields(pid)
    if f is None:
        return None
    ticks = int(f[11]) + int(f[12])  # utime, stime
    if with_children:
        ticks += int(f[13]) + int(f[14])  # cutime, cstime
    return ticks / TICK


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent on anything but idle and iowait since boot (first line of /proc/stat)."""
    f = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in f[:8])
    return (user + nice + system + irq + softirq + steal) / TICK


def children(pid: int) -> list[int]:
    out = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            f = _stat_fields(int(entry.name))
            if f is not None and int(f[1]) == pid:
                out.append(int(entry.name))
    return out


def status_kb(pid: int, key: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def pss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass
class Tracked:
    """One named process, or a group (a parent and its children) such as PostgreSQL."""

    name: str
    pid: int
    group: bool = False
    peak_group_kb: int = 0
    rss_samples: list[tuple[float, int]] = field(default_factory=list)

    def cpu(self) -> float | None:
        if not self.group:
            return cpu_seconds(self.pid)
        total = cpu_seconds(self.pid, with_children=True)
        if total is None:
            return None
        return total + sum(cpu_seconds(c) or 0.0 for c in children(self.pid))

    def rss_kb(self) -> int | None:
        if not self.group:
            return status_kb(self.pid, "VmRSS")
        total = pss_kb(self.pid) + sum(pss_kb(c) for c in children(self.pid))
        self.peak_group_kb = max(self.peak_group_kb, total)
        return total

    def peak_rss_kb(self) -> int | None:
        if self.group:
            self.rss_kb()
            return self.peak_group_kb
        return status_kb(self.pid, "VmHWM")

    def alive(self) -> bool:
        return Path(f"/proc/{self.pid}").exists()


class ProcessSet:
    def __init__(self) -> None:
        self.items: dict[str, Tracked] = {}

    def add(self, name: str, pid: int, group: bool = False) -> None:
        self.items[name] = Tracked(name, pid, group)

    def remove(self, name: str) -> None:
        self.items.pop(name, None)

    def cpu_snapshot(self) -> dict[str, float]:
        """CPU seconds per tracked process, plus ``machine``: every process on the machine."""
        snap = {n: c for n, t in self.items.items() if (c := t.cpu()) is not None}
        snap["machine"] = machine_busy_seconds()
        return snap

    def sample_rss(self, now: float) -> dict[str, int]:
        out = {}
        for n, t in self.items.items():
            kb = t.rss_kb()
            if kb is not None:
                t.rss_samples.append((now, kb))
                out[n] = kb
        return out

    def peaks_mb(self) -> dict[str, float]:
        return {n: round(kb / 1024, 1) for n, t in self.items.items() if (kb := t.peak_rss_kb())}


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {n: after[n] - before[n] for n in after if n in before}


def postmaster_pid(data_dir: Path) -> int | None:
    try:
        return int((data_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def machine() -> dict:
    mem: dict[str, str] = {}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            k, v = line.split(":", 1)
            mem[k] = v.strip()
    except OSError:
        pass
    model = ""
    try:
        model = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                      if l.startswith("model name")), "")
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu_model": model, "mem_total": mem.get("MemTotal"),
            "mem_available": mem.get("MemAvailable"), "kernel": os.uname().release,
            "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3]}
