"""The noise guard: is a measured figure trustworthy? Each setting's own spread, and what the
rest of the machine did while it was measured.

* **Spread**: the coefficient of variation (std / mean) of a setting's repeated totals; above
  :data:`MAX_CV` the median is not a stable figure.
* **Contention** (Linux, ``/proc/self/task/*/schedstat``): the nanoseconds this process's
  threads spent runnable but waiting for a CPU, per second of the span: the average number of
  its threads another process (or the hypervisor) kept off a core. Above :data:`MAX_WAITING`
  the figure is the machine's load, not the engine's speed (a pool whose worker is
  descheduled waits for it; a step then takes many times its time).
* **Load** (``/proc/stat``, kept for the record): the CPU time the machine spent busy minus this
  process's own (``os.times``), i.e. what other processes took, in CPUs; the steal time's
  share, judged above :data:`MAX_STEAL` over spans of :data:`MIN_STEAL_SPAN` s or more (the
  counters tick every 10 ms); the runnable-thread count.

:class:`LoadWatch` measures one span; :func:`noise_verdict` turns a span and the samples into
the record's ``noise`` field ({verdict: "ok" | "untrustworthy", reasons: [...], the numbers}).
Elsewhere than Linux the load is unknown and only the spread is judged.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np

MAX_CV = 0.10         # coefficient of variation of a setting's totals
MAX_WAITING = 0.10    # this process's threads waiting for a CPU, on average
MAX_STEAL = 0.05      # share of CPU time the hypervisor may take
MIN_STEAL_SPAN = 1.0  # seconds: below, the 10 ms counters say nothing about steal


@dataclass(frozen=True)
class CpuSample:
    wall: float        # time.monotonic()
    busy: float        # seconds all CPUs spent busy (user, nice, system, irq, softirq)
    steal: float       # seconds stolen by the hypervisor
    total: float       # seconds of every state
    own: float         # this process's CPU seconds (all its threads)
    running: int       # runnable threads now (procs_running)
    waiting: float | None  # seconds this process's threads have waited for a CPU (None: unknown)


def _clock_ticks() -> int:
    try:
        return os.sysconf("SC_CLK_TCK")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return 100


def own_wait_seconds(task_dir: str = "/proc/self/task") -> float | None:
    """Seconds this process's live threads have spent runnable but not running (schedstat's
    run-queue wait), or None where the kernel does not say."""
    try:
        tasks = os.listdir(task_dir)
    except OSError:
        return None
    total, known = 0, False
    for tid in tasks:
        try:
            with open(f"{task_dir}/{tid}/schedstat", encoding="ascii") as f:
                fields = f.read(256).split()
            total += int(fields[1])
            known = True
        except (OSError, IndexError, ValueError):  # a thread that ended meanwhile
            continue
    return total / 1e9 if known else None


def cpu_sample(stat_path: str = "/proc/stat") -> CpuSample | None:
    """The machine's CPU counters now, or None where /proc/stat is unreadable."""
    try:
        with open(stat_path, encoding="ascii", errors="replace") as f:
            lines = f.read(1 << 16).splitlines()
    except OSError:
        return None
    fields, running = None, 0
    for line in lines:
        parts = line.split()
        if parts and parts[0] == "cpu":
            fields = [int(x) for x in parts[1:] if x.isdigit()]
        elif parts[:1] == ["procs_running"] and len(parts) > 1 and parts[1].isdigit():
            running = int(parts[1])
    if not fields or len(fields) < 8:
        return None
    hz = float(_clock_ticks())
    user, nice, system, idle, iowait, irq, softirq, steal = (v / hz for v in fields[:8])
    times = os.times()
    return CpuSample(wall=time.monotonic(), busy=user + nice + system + irq + softirq, steal=steal,
                     total=sum(fields[:8]) / hz, own=times.user + times.system, running=running,
                     waiting=own_wait_seconds())


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


class LoadWatch:
    """``with LoadWatch() as w: measure()``; then ``w.load()``: what other processes and the
    hypervisor took during the span (None where unknown)."""

    def __enter__(self):
        self.start, self.end = cpu_sample(), None
        return self

    def __exit__(self, *exc):
        self.end = cpu_sample()
        return False

    def load(self) -> dict | None:
        a, b = self.start, self.end
        if a is None or b is None or b.wall - a.wall <= 0:
            return None
        wall = b.wall - a.wall
        others = max(0.0, (b.busy - a.busy) - (b.own - a.own)) / wall
        total = b.total - a.total
        waiting = (b.waiting - a.waiting) / wall if a.waiting is not None and b.waiting is not None else None
        return {"seconds": wall, "threads_waiting": None if waiting is None else max(0.0, waiting),
                "other_cpus_busy": others, "steal_fraction": (b.steal - a.steal) / total if total > 0 else 0.0,
                "runnable_threads": max(a.running, b.running), "usable_cpus": usable_cpus()}


def combine_loads(loads) -> dict | None:
    """One load over several spans (a setup measured once per round): the waiting, the other
    processes' CPUs and the steal averaged by span length, the counts' maxima."""
    loads = [x for x in loads if x is not None]
    if not loads:
        return None
    seconds = sum(x["seconds"] for x in loads)
    if seconds <= 0:
        return None

    def mean(key):
        known = [x for x in loads if x[key] is not None]
        return sum(x[key] * x["seconds"] for x in known) / sum(x["seconds"] for x in known) if known else None
    return {"seconds": seconds, "threads_waiting": mean("threads_waiting"), "other_cpus_busy": mean("other_cpus_busy"),
            "steal_fraction": mean("steal_fraction"), "runnable_threads": max(x["runnable_threads"] for x in loads),
            "usable_cpus": loads[0]["usable_cpus"]}


def coefficient_of_variation(samples) -> float | None:
    values = np.asarray([v for v in samples if v is not None], dtype=np.float64)
    if values.size < 2 or not np.isfinite(values).all() or values.mean() <= 0:
        return None
    return float(values.std(ddof=1) / values.mean())


def noise_verdict(samples, load: dict | None, threads: int) -> dict:
    """The record's ``noise`` field for a setting measured by `samples` (its repeated totals)
    on `threads` threads while `load` (:meth:`LoadWatch.load`) was on the machine."""
    cv = coefficient_of_variation(samples)
    reasons = []
    if cv is not None and cv > MAX_CV:
        reasons.append(f"spread: CV {100 * cv:.0f}% over {len(samples)} runs (> {100 * MAX_CV:.0f}%)")
    if load is not None:
        waiting = load["threads_waiting"]
        if waiting is not None and waiting > MAX_WAITING:
            reasons.append(f"load: its threads waited for a CPU {waiting:.2f} of the time (other processes kept "
                           f"{load['other_cpus_busy']:.1f} CPUs busy; {threads} threads on {load['usable_cpus']} CPUs)")
        if load["seconds"] >= MIN_STEAL_SPAN and load["steal_fraction"] > MAX_STEAL:
            reasons.append(f"steal: the hypervisor took {100 * load['steal_fraction']:.0f}% of the CPU time")
    numbers = ("seconds", "threads_waiting", "other_cpus_busy", "steal_fraction", "runnable_threads", "usable_cpus")
    return {"verdict": "untrustworthy" if reasons else "ok", "reasons": reasons, "cv": cv, "threads": threads,
            **({k: load[k] for k in numbers} if load is not None else {"load": None})}


def noise_warnings(records) -> list[str]:
    """One line per record the guard called untrustworthy: 'latency v1 T=16: <reasons>'."""
    lines = []
    for r in records:
        noise = r.get("noise") if isinstance(r, dict) else None
        if isinstance(noise, dict) and noise.get("verdict") == "untrustworthy":
            T = (r.get("params") or {}).get("T")
            where = " ".join(str(x) for x in (r.get("benchmark"), r.get("version"), f"T={T}" if T else None) if x)
            lines.append(f"{where}: " + "; ".join(noise.get("reasons") or []))
    return lines
