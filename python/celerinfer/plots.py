"""Plots of benchmark result records (``docs/results_schema.md``).

``make_plots(records, out_dir)`` writes every plot for which the records hold data and returns
``{plot name: path}``. Each plot is also a function of its own, ``plot_<name>(records, path=None)``,
returning the :class:`matplotlib.figure.Figure` (or ``None`` when the records hold nothing for
it), so notebooks can call them one by one:

=======================  ===========================  ==============================================
name                     function                     records used
=======================  ===========================  ==============================================
``latency_vs_T``         :func:`plot_latency`         latency
``memory_vs_T``          :func:`plot_memory`          memory
``phase_breakdown``      :func:`plot_phase_breakdown` phase
``quality``              :func:`plot_quality`         perplexity
``roofline``             :func:`plot_roofline`        roofline (+ calibrate for missing peaks)
``speedup``              :func:`plot_speedup`         latency (needs v0)
``latency_distribution`` :func:`plot_latency_distribution` latency (per-token samples)
``memory_throughput``    :func:`plot_memory_throughput`   latency + memory, or roofline; calibrate
``tradeoff``             :func:`plot_tradeoff`        latency + memory + perplexity
``compare_backends``     :func:`plot_compare_backends` compare (bench compare)
``compare_speedup``      :func:`plot_compare_speedup` compare (celerinfer's ratios)
=======================  ===========================  ==============================================

Run selection: by default each benchmark's records come from its latest run (the run whose
newest record has the latest timestamp), so a log holding many runs plots the newest
measurements. ``run_id="all"`` keeps every run (per version and setting the newest record wins)
and ``run_id=<id or unique prefix>`` picks one run.

Figures are plain :class:`~matplotlib.figure.Figure` objects on an Agg canvas: pyplot and its
global state are never used, so nothing leaks between plots and no display is needed.
"""

from __future__ import annotations

import math
import re
import warnings
import zlib
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

try:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import Normalize, SymLogNorm
    from matplotlib.figure import Figure
    from matplotlib.layout_engine import ConstrainedLayoutEngine
    from matplotlib.lines import Line2D
    from matplotlib.ticker import LogFormatter, NullFormatter, ScalarFormatter
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("celerinfer.plots needs matplotlib (pip install matplotlib)") from exc

MiB = float(2**20)
DPI = 120
PHASES = ("embedding", "attention", "mlp", "head", "other")
BASELINE_SPEED_VERSION = "v0"

#: fixed colors of the known versions: the same version has the same color in every plot
VERSION_COLORS = {
    "v0": "#4d4d4d",  # no cache: dark gray
    "v1": "#1f77b4",  # fp32 cache: blue
    "v2": "#ff7f0e",  # INT8: orange
    "v3": "#2ca02c",  # sharing: green
    "v4": "#d62728",  # INT8 + sharing: red
    "v5": "#9467bd",  # fp16: purple
    "v6": "#8c564b",  # INT8 KIVI: brown
}
#: colors for versions not in VERSION_COLORS (v7 takes the first, v8 the second, ...)
EXTRA_COLORS = ("#e377c2", "#17becf", "#bcbd22", "#7f7f7f", "#393b79", "#637939", "#8c6d31",
                "#843c39", "#7b4173", "#3182bd", "#e6550d", "#31a354")
VERSION_MARKERS = {"v0": "o", "v1": "s", "v2": "^", "v3": "D", "v4": "v", "v5": "P", "v6": "X"}
EXTRA_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">")
SHORT_DESCRIPTIONS = {
    "v0": "no cache",
    "v1": "fp32 cache",
    "v2": "INT8 cache",
    "v3": "fp32 + sharing",
    "v4": "INT8 + sharing",
    "v5": "fp16 cache",
    "v6": "INT8 KIVI",
}
PHASE_COLORS = {"embedding": "#8dd3c7", "attention": "#fb8072", "mlp": "#80b1d3", "head": "#fdb462",
                "other": "#bebada"}
ROOFLINE_PHASE_MARKERS = {"prefill": "s", "decode": "o"}

_VERSION_RE = re.compile(r"^v(\d+)$")


# ---- small helpers -----------------------------------------------------------------------------

def _version_key(version: str):
    m = _VERSION_RE.match(str(version))
    return (0, int(m.group(1)), "") if m else (1, 0, str(version))


def versions_order(records_or_versions: Iterable) -> list[str]:
    """The distinct versions of records (dicts with a "version") or of version names, sorted
    numerically: v0, v1, ..., v9, v10; names not of the form vN come after, alphabetically."""
    found = set()
    for item in records_or_versions:
        v = item.get("version") if isinstance(item, dict) else item
        if v is not None:
            found.add(str(v))
    return sorted(found, key=_version_key)


def version_color(version: str) -> str:
    """The version's fixed color; unknown versions get further colors, the same on every call."""
    if version in VERSION_COLORS:
        return VERSION_COLORS[version]
    m = _VERSION_RE.match(str(version))
    index = int(m.group(1)) - len(VERSION_COLORS) if m else zlib.crc32(str(version).encode())
    return EXTRA_COLORS[index % len(EXTRA_COLORS)]


def version_marker(version: str) -> str:
    if version in VERSION_MARKERS:
        return VERSION_MARKERS[version]
    m = _VERSION_RE.match(str(version))
    index = int(m.group(1)) if m else zlib.crc32(str(version).encode())
    return EXTRA_MARKERS[index % len(EXTRA_MARKERS)]


def version_label(version: str, records: Iterable[dict] = ()) -> str:
    """'v2 (INT8 cache)': the version and a short description (the registry's for unknown ones)."""
    desc = SHORT_DESCRIPTIONS.get(version)
    if desc is None:
        for r in records:
            if r.get("version") == version:
                d = _get(r, "version_flags", "description")
                if isinstance(d, str) and d:
                    desc = d if len(d) <= 28 else d[:27] + "…"
                    break
    return f"{version} ({desc})" if desc else str(version)


def _get(d, *keys):
    """d[k1][k2]...; None when any level is missing or not a dict."""
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def _num(x) -> float | None:
    """A finite float, or None (null, NaN, infinities, strings, booleans)."""
    if x is None or isinstance(x, bool):
        return None
    if isinstance(x, (int, float, np.integer, np.floating)):
        f = float(x)
        return f if math.isfinite(f) else None
    return None


def _median(x) -> float | None:
    """The median of a statistics object, or the number itself."""
    return _num(x.get("median")) if isinstance(x, dict) else _num(x)


def _samples(stat, unit_ns: float = 1e6) -> np.ndarray:
    """The raw samples of a statistics object in its unit (samples_ns / unit_ns, or samples)."""
    if not isinstance(stat, dict):
        return np.zeros(0)
    raw = stat.get("samples_ns")
    scale = unit_ns
    if not isinstance(raw, (list, tuple)) or not raw:
        raw, scale = stat.get("samples"), 1.0
    if not isinstance(raw, (list, tuple)) or not raw:
        return np.zeros(0)
    vals = np.array([v for v in (_num(x) for x in raw) if v is not None], dtype=np.float64)
    return vals / scale


def _yerr(stat, median: float) -> tuple[float, float] | None:
    """(below, above) error of a median: the ci95 interval, else +-std, else None."""
    if not isinstance(stat, dict):
        return None
    lo, hi = _num(stat.get("ci95_low")), _num(stat.get("ci95_high"))
    if lo is not None and hi is not None:
        return max(median - lo, 0.0), max(hi - median, 0.0)
    std = _num(stat.get("std"))
    if std is not None:
        return abs(std), abs(std)
    return None


def _timestamp(record) -> float:
    t = record.get("timestamp") if isinstance(record, dict) else None
    if not isinstance(t, str):
        return float("-inf")
    try:
        dt = datetime.fromisoformat(t.strip().replace("Z", "+00:00"))
    except ValueError:
        return float("-inf")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def _T(record) -> int | None:
    t = _num(_get(record, "params", "T"))
    return int(t) if t is not None else None


# ---- record selection --------------------------------------------------------------------------

def select_records(records: Iterable[dict], run_id: str | None = None) -> list[dict]:
    """The records to plot. run_id None (or "latest"): per benchmark, the records of its latest run
    (the run whose newest record is newest; on equal timestamps the one later in the list);
    "all": every record; otherwise the run with that id (or unique id prefix): ValueError when no
    record has it. Non-dict entries and records without a benchmark are dropped."""
    recs = [r for r in records if isinstance(r, dict) and isinstance(r.get("benchmark"), str)]
    if run_id is None or run_id == "latest":
        newest: dict[str, dict] = {}
        for index, r in enumerate(recs):
            key = (_timestamp(r), index)
            runs = newest.setdefault(r["benchmark"], {})
            rid = r.get("run_id")
            if rid not in runs or key > runs[rid]:
                runs[rid] = key
        chosen = {bench: max(runs, key=runs.get) for bench, runs in newest.items()}
        return [r for r in recs if r.get("run_id") == chosen[r["benchmark"]]]
    if run_id == "all":
        return recs
    ids = {r.get("run_id") for r in recs}
    if run_id not in ids:
        matches = sorted(i for i in ids if isinstance(i, str) and i.startswith(str(run_id)))
        if len(matches) != 1:
            known = ", ".join(sorted(str(i)[:12] for i in ids if i is not None)) or "none"
            what = "is ambiguous" if matches else "matches no record"
            raise ValueError(f"run id {run_id!r} {what} (runs in these records: {known})")
        run_id = matches[0]
    return [r for r in recs if r.get("run_id") == run_id]


def _of(records: Iterable[dict], benchmark: str) -> list[dict]:
    return [r for r in records if r.get("benchmark") == benchmark and isinstance(r.get("version"), str)
            and isinstance(r.get("metrics"), dict)]


def _newest(records: Iterable[dict], key: Callable[[dict], object]) -> dict:
    """{key(r): the newest record with that key} (records whose key is None are skipped)."""
    out: dict = {}
    best: dict = {}
    for index, r in enumerate(records):
        k = key(r)
        if k is None:
            continue
        rank = (_timestamp(r), index)
        if k not in best or rank > best[k]:
            best[k], out[k] = rank, r
    return out


def _by_version_T(records: Iterable[dict], benchmark: str) -> dict[str, dict[int, dict]]:
    """{version: {T: newest record}} of one benchmark."""
    newest = _newest(_of(records, benchmark), lambda r: (r["version"], _T(r)) if _T(r) is not None else None)
    out: dict[str, dict[int, dict]] = {}
    for (v, T), r in newest.items():
        out.setdefault(v, {})[T] = r
    return {v: dict(sorted(out[v].items())) for v in versions_order(out)}


def _compatible(a: dict, b: dict) -> bool:
    """Records measured on the same model with the same prompt length and batch size."""
    for path in (("model", "name"), ("params", "prompt_length"), ("params", "batch_size")):
        x, y = _get(a, *path), _get(b, *path)
        if x is not None and y is not None and x != y:
            return False
    return True


# ---- figure helpers ----------------------------------------------------------------------------

def _version_line(ax, version: str, xs, ys, records):
    """One version's line in its fixed color and marker, findable by gid = the version name."""
    line, = ax.plot(xs, ys, marker=version_marker(version), color=version_color(version),
                    label=version_label(version, records), linewidth=1.8)
    line.set_gid(version)
    return line


def _figure(ncols: int = 1, width: float = 7.0, height: float = 5.0, **subplot_kw):
    """A Figure on an Agg canvas with constrained layout and room for the footnote."""
    fig = Figure(figsize=(width, height), dpi=DPI,
                 layout=ConstrainedLayoutEngine(rect=(0.0, 0.045, 1.0, 0.955)))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols, squeeze=False, **subplot_kw)[0]
    return fig, list(axes)


def _short_run(rid) -> str:
    return str(rid)[:8] if rid is not None else "?"


def footnote_text(records: list[dict]) -> str:
    """'model: ... | threads: ... | CPU: ... | run: ... (date)' of the records a plot shows."""
    def distinct(values):
        seen = []
        for v in values:
            if v is not None and v not in seen:
                seen.append(v)
        return seen

    parts = []
    models = distinct(_get(r, "model", "name") for r in records)
    if models:
        nparams = distinct(_get(r, "model", "num_parameters") for r in records)
        text = ", ".join(str(m) for m in models[:3]) + (" ..." if len(models) > 3 else "")
        if len(models) == 1 and len(nparams) == 1 and _num(nparams[0]):
            n = _num(nparams[0])
            text += f" ({n / 1e6:.3g}M params)" if n >= 1e5 else f" ({int(n):,} params)"
        parts.append(f"model: {text}")
    for label, path in (("batch", ("params", "batch_size")), ("prompt", ("params", "prompt_length"))):
        vals = distinct(_get(r, *path) for r in records)
        if len(vals) == 1:
            parts.append(f"{label}: {vals[0]}")
    threads = distinct(r.get("threads") for r in records)
    if threads:
        parts.append("threads: " + ", ".join(str(t) for t in threads))
    cpus = distinct(r.get("cpu_model") for r in records)
    if cpus:
        parts.append("CPU: " + "; ".join(str(c) for c in cpus[:2]) + (" ..." if len(cpus) > 2 else ""))
    gpus = distinct(r.get("gpu_name") for r in records)
    if gpus:
        parts.append("GPU: " + "; ".join(str(g) for g in gpus[:2]))
    runs: dict = {}
    for r in records:
        runs[r.get("run_id")] = max(runs.get(r.get("run_id"), float("-inf")), _timestamp(r))
    if runs:
        ordered = sorted(runs, key=runs.get)
        shown = [_short_run(rid) for rid in ordered[-3:]]
        when = runs[ordered[-1]]
        date = (datetime.fromtimestamp(when, tz=timezone.utc).strftime(" (%Y-%m-%d %H:%M UTC)")
                if math.isfinite(when) else "")
        more = f" +{len(ordered) - 3} more" if len(ordered) > 3 else ""
        parts.append(("runs: " if len(ordered) > 1 else "run: ") + ", ".join(shown) + more + date)
    if any(r.get("status") not in (None, "ok") for r in records):
        parts.append("some measurements interrupted")
    return " | ".join(parts)


def _finish(fig, title: str, records: list[dict], path) -> Figure:
    fig.suptitle(title, fontsize=13, fontweight="bold")
    note = footnote_text(records)
    if len(note) > 190:
        note = note[:189] + "…"
    fig.text(0.01, 0.008, note, fontsize=7, color="#555555", ha="left", va="bottom")
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=DPI)
    return fig


def _span(values) -> float:
    """max / min of the positive values (1 when fewer than two)."""
    pos = [v for v in values if v is not None and v > 0]
    return max(pos) / min(pos) if len(pos) >= 2 else 1.0


def _T_axis(ax, Ts) -> None:
    """x axis of generated tokens: log base 2 when T spans a factor of 4 or more, ticks at the Ts."""
    Ts = sorted({t for t in Ts if t is not None})
    if Ts and Ts[0] > 0 and Ts[-1] / Ts[0] >= 4:
        ax.set_xscale("log", base=2)
        if len(Ts) <= 12:
            ax.set_xticks(Ts)
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
    elif len(Ts) <= 12:
        ax.set_xticks(Ts)
    ax.set_xlabel("T: generated tokens (tokens)")


class _PlainLogFormatter(LogFormatter):
    """LogFormatter's choice of which ticks to label, written as plain numbers (20, 0.5, 1e-05)."""

    def _num_to_string(self, x, vmin, vmax):
        return f"{x:g}"


def _log_y(ax) -> None:
    """Log y axis with plain-number tick labels instead of 2x10^1."""
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(_PlainLogFormatter(labelOnlyBase=False))
    ax.yaxis.set_minor_formatter(_PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(1.2, 0.6)))


def _log_y_if_wide(ax, values, decades: float = 1.0) -> bool:
    if _span(values) >= 10**decades and all(v > 0 for v in values if v is not None):
        _log_y(ax)
        return True
    return False


def _clusters(points, dx: float, dy: float) -> list[list[int]]:
    """Indices of points grouped so that points within (dx, dy) of a group member share a group
    (single linkage): their labels are stacked next to the group instead of overlapping."""
    groups: list[list[int]] = []
    for i, (x, y) in enumerate(points):
        hits = [g for g in groups if any(abs(x - points[j][0]) < dx and abs(y - points[j][1]) < dy for j in g)]
        merged = [i] + [j for g in hits for j in g]
        groups = [g for g in groups if g not in hits] + [sorted(merged)]
    return groups


def _stacked_labels(ax, anchors, labels, colors, groups, *, log: bool, step: float = 10.5, fontsize=7,
                    fontweight="normal"):
    """Each group's labels, one per line, stacked to the right of the group, top point first."""
    for g in groups:
        g = sorted(g, key=lambda i: -anchors[i][1])
        xs = [anchors[i][0] for i in g]
        ys = [anchors[i][1] for i in g]
        y = float(np.exp(np.mean(np.log(ys)))) if log else float(np.mean(ys))
        for k, i in enumerate(g):
            ax.annotate(labels[i], (max(xs), y), textcoords="offset points",
                        xytext=(9, (len(g) - 1) / 2 * step - k * step), fontsize=fontsize, color=colors[i],
                        va="center", ha="left", fontweight=fontweight)


def _legend(ax, **kw):
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(fontsize=8, **kw)


# ---- latency -----------------------------------------------------------------------------------

def plot_latency(records: list[dict], path=None, *, run_id: str | None = None) -> Figure | None:
    """Median total generation time vs T per version (error bars: ci95 of the median, else std)
    and median per-token (decode step) latency vs T: v0 grows with T (it recomputes the whole
    sequence every step, O(T^2) in total), the cached versions stay nearly flat (O(T))."""
    recs = select_records(records, run_id)
    data = _by_version_T(recs, "latency")
    panels = (("total_ms", "total generation time (ms)", "Median total time to generate T tokens"),
              ("per_token_ms", "per-token decode latency (ms/token)", "Median per-token latency"))
    series = {key: {} for key, _, _ in panels}
    for v, byT in data.items():
        for key, _, _ in panels:
            pts = [(T, _median(r["metrics"].get(key)), r["metrics"].get(key)) for T, r in byT.items()]
            pts = [p for p in pts if p[1] is not None]
            if pts:
                series[key][v] = pts
    if not any(series.values()):
        return None
    used = [r for byT in data.values() for r in byT.values()]
    fig, axes = _figure(2, width=13, height=5.2)
    for ax, (key, ylabel, title) in zip(axes, panels):
        all_y, all_T = [], []
        for v, pts in series[key].items():
            Ts = [p[0] for p in pts]
            ys = [p[1] for p in pts]
            all_y += ys
            all_T += Ts
            color = version_color(v)
            line, = ax.plot(Ts, ys, marker=version_marker(v), color=color, label=version_label(v, recs),
                            linewidth=1.8, markersize=6)
            line.set_gid(v)
            errs = [(T, y, _yerr(st, y)) for T, y, st in pts]
            errs = [e for e in errs if e[2] is not None]
            if errs:
                yerr = np.array([[e[2][0] for e in errs], [e[2][1] for e in errs]])
                ax.errorbar([e[0] for e in errs], [e[1] for e in errs], yerr=yerr, fmt="none",
                            ecolor=color, elinewidth=1.2, capsize=0, alpha=0.8)
        _T_axis(ax, all_T)
        _log_y_if_wide(ax, all_y)
        ax.set_ylabel(ylabel + (", log scale" if ax.get_yscale() == "log" else ""))
        ax.set_title(title, fontsize=11)
        ax.grid(True, which="major", alpha=0.3)
    _legend(axes[0], loc="best", title="version")
    axes[1].text(0.01, 0.99, "error bars: 95% CI of the median (else ±1 std)", transform=axes[1].transAxes,
                 fontsize=7, va="top", color="#555555")
    return _finish(fig, "Generation latency vs generated tokens T", used, path)


def _tokens_per_s(record) -> float | None:
    m = record["metrics"]
    tps = _num(m.get("tokens_per_s"))
    if tps is None:
        total = _median(m.get("total_ms"))
        T, batch = _T(record), _num(_get(record, "params", "batch_size")) or 1
        if total and T:
            tps = batch * T / (total / 1e3)
    return tps if tps and tps > 0 else None


def _decode_tokens_per_s(record) -> float | None:
    m = record["metrics"]
    tps = _num(m.get("decode_tokens_per_s"))
    if tps is None:
        per = _median(m.get("per_token_ms"))
        batch = _num(_get(record, "params", "batch_size")) or 1
        if per:
            tps = batch / (per / 1e3)
    return tps if tps and tps > 0 else None


def plot_speedup(records: list[dict], path=None, *, run_id: str | None = None,
                 baseline: str = BASELINE_SPEED_VERSION) -> Figure | None:
    """Speedup of each version over the baseline v0 (no cache): tokens/s ratio at each T."""
    recs = select_records(records, run_id)
    data = _by_version_T(recs, "latency")
    base = {T: _tokens_per_s(r) for T, r in data.get(baseline, {}).items()}
    lines = {}
    for v, byT in data.items():
        if v == baseline:
            continue
        pts = []
        for T, r in byT.items():
            b, t = base.get(T), _tokens_per_s(r)
            if b and t and _compatible(r, data[baseline][T]):
                pts.append((T, t / b))
        if pts:
            lines[v] = pts
    if not lines:
        return None
    used = [r for v in [baseline, *lines] for r in data[v].values()]
    fig, (ax,) = _figure(1, width=8, height=5.2)
    all_T = []
    for v, pts in lines.items():
        Ts, ys = [p[0] for p in pts], [p[1] for p in pts]
        all_T += Ts
        _version_line(ax, v, Ts, ys, recs)
        ax.annotate(f"{ys[-1]:.2f}×", (Ts[-1], ys[-1]), textcoords="offset points", xytext=(6, 0),
                    fontsize=8, color=version_color(v), va="center")
    ref = ax.axhline(1.0, color=version_color(baseline), linestyle="--", linewidth=1,
                     label=f"{version_label(baseline)} = 1")
    ref.set_gid("baseline")
    _T_axis(ax, all_T)
    ax.set_ylabel(f"speedup vs {baseline} (× its tokens/s)")
    ax.set_title(f"Throughput relative to {baseline} (higher is better)", fontsize=11)
    ax.grid(True, alpha=0.3)
    ax.margins(x=0.12)
    _legend(ax, loc="best")
    return _finish(fig, f"Speedup over {baseline} vs generated tokens T", used, path)


def plot_latency_distribution(records: list[dict], path=None, *, run_id: str | None = None) -> Figure | None:
    """Per-token (decode step) latency distribution per version at the largest T: box plots of the
    samples (box: quartiles, whiskers: 1.5 IQR, line: the record's median), p90 and p99 marked."""
    recs = select_records(records, run_id)
    data = _by_version_T(recs, "latency")
    candidates = [T for byT in data.values() for T, r in byT.items()
                  if isinstance(r["metrics"].get("per_token_ms"), dict)]
    if not candidates:
        return None
    T = max(candidates)
    stats, p90s, p99s, used = [], [], [], []
    for v, byT in data.items():
        r = byT.get(T)
        st = r["metrics"].get("per_token_ms") if r else None
        if not isinstance(st, dict):
            continue
        samples = _samples(st)
        med = _median(st)
        if med is None and samples.size:
            med = float(np.median(samples))
        if med is None:
            continue
        if samples.size:
            q1, q3 = (float(x) for x in np.percentile(samples, [25, 75]))
            iqr = q3 - q1
            inside = samples[(samples >= q1 - 1.5 * iqr) & (samples <= q3 + 1.5 * iqr)]
            lo, hi = (float(inside.min()), float(inside.max())) if inside.size else (q1, q3)
            fliers = samples[(samples < lo) | (samples > hi)]
        else:
            q1 = q3 = med
            lo = _num(st.get("min")) if _num(st.get("min")) is not None else med
            hi = _num(st.get("max")) if _num(st.get("max")) is not None else med
            fliers = np.zeros(0)
        stats.append({"label": v, "med": med, "q1": min(q1, med), "q3": max(q3, med), "whislo": min(lo, q1, med),
                      "whishi": max(hi, q3, med), "fliers": fliers})
        p90 = _num(st.get("p90"))
        p99 = _num(st.get("p99"))
        if p90 is None and samples.size:
            p90 = float(np.percentile(samples, 90))
        if p99 is None and samples.size:
            p99 = float(np.percentile(samples, 99))
        p90s.append(p90)
        p99s.append(p99)
        used.append(r)
    if not stats:
        return None
    fig, (ax,) = _figure(1, width=max(7.0, 1.3 * len(stats) + 3), height=5.2)
    xs = np.arange(1, len(stats) + 1)
    parts = ax.bxp(stats, positions=xs, widths=0.55, patch_artist=True, showfliers=True,
                   flierprops={"marker": ".", "markersize": 2, "alpha": 0.4},
                   medianprops={"color": "black", "linewidth": 1.6})
    for box, st in zip(parts["boxes"], stats):
        box.set_facecolor(version_color(st["label"]))
        box.set_alpha(0.55)
    for line, st in zip(parts["medians"], stats):
        line.set_gid(f"median:{st['label']}")
    for values, marker, name in ((p90s, "_", "p90"), (p99s, "_", "p99")):
        pts = [(x, y) for x, y in zip(xs, values) if y is not None]
        if pts:
            col = ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker=marker, s=500 if name == "p99" else 350,
                             linewidths=2.2, color="#d62728" if name == "p99" else "#ff9896", label=name, zorder=5)
            col.set_gid(name)
            for x, y in pts:
                ax.annotate(f"{name} {y:.3g}", (x, y), textcoords="offset points",
                            xytext=(18, 0) if name == "p99" else (-18, 0), ha="left" if name == "p99" else "right",
                            fontsize=7, va="center", color="#8b0000" if name == "p99" else "#b15a5a")
    ax.set_xticks(xs, [version_label(st["label"], recs) for st in stats], fontsize=8)
    values = [st["whislo"] for st in stats] + [st["whishi"] for st in stats] + [y for y in p99s if y]
    _log_y_if_wide(ax, values, decades=0.5)
    ax.set_ylabel("per-token decode latency (ms/token)" + (", log scale" if ax.get_yscale() == "log" else ""))
    ax.set_xlabel("version")
    n_samples = [int(_samples(r["metrics"]["per_token_ms"]).size) for r in used]
    counts = f"{min(n_samples)}" if min(n_samples) == max(n_samples) else f"{min(n_samples)}-{max(n_samples)}"
    ax.set_title(f"Per-token latency distribution at T = {T} ({counts} decode steps per version)"
                 if max(n_samples) else f"Per-token latency at T = {T} (no raw samples: min/median/max)",
                 fontsize=11)
    ax.grid(True, axis="y", alpha=0.3)
    _legend(ax, loc="best")
    return _finish(fig, "Per-token latency distribution (tail latency)", used, path)


# ---- memory ------------------------------------------------------------------------------------

def plot_memory(records: list[dict], path=None, *, run_id: str | None = None) -> Figure | None:
    """KV cache bytes vs T per version (MiB); second panel: engine buffers (solid) and process peak
    RSS (dotted) per version against the model weights (dashed horizontal line)."""
    recs = select_records(records, run_id)
    data = _by_version_T(recs, "memory")
    if not data:
        return None

    def series(key):
        out = {}
        for v, byT in data.items():
            pts = [(T, _num(r["metrics"].get(key))) for T, r in byT.items()]
            pts = [(T, y / MiB) for T, y in pts if y is not None]
            if pts:
                out[v] = pts
        return out

    kv, engine, rss = series("kv_cache_bytes"), series("engine_bytes"), series("peak_rss_bytes")
    if not (kv or engine or rss):
        return None
    weights = [_num(r["metrics"].get("weight_bytes")) or _num(_get(r, "model", "weight_bytes"))
               for byT in data.values() for r in byT.values()]
    weights = [w for w in weights if w]
    used = [r for byT in data.values() for r in byT.values()]
    fig, axes = _figure(2, width=13, height=5.2)
    ax = axes[0]
    all_T = []
    for v, pts in kv.items():
        Ts, ys = [p[0] for p in pts], [p[1] for p in pts]
        all_T += Ts
        _version_line(ax, v, Ts, ys, recs)
    _T_axis(ax, all_T or [T for byT in data.values() for T in byT])
    ax.set_ylabel("KV cache size (MiB)")
    ax.set_ylim(bottom=0)
    ax.set_title("KV cache bytes held after generating T tokens (scales included)", fontsize=10)
    ax.grid(True, alpha=0.3)
    _legend(ax, loc="upper left", title="version")

    ax = axes[1]
    all_T, all_y = [], []
    for style, dataset, kind in (("-", engine, "engine"), (":", rss, "rss")):
        for v, pts in dataset.items():
            Ts, ys = [p[0] for p in pts], [p[1] for p in pts]
            all_T += Ts
            all_y += ys
            line, = ax.plot(Ts, ys, linestyle=style, marker=version_marker(v), color=version_color(v),
                            linewidth=1.6 if kind == "engine" else 1.2, markersize=5 if kind == "engine" else 3,
                            alpha=1.0 if kind == "engine" else 0.7)
            line.set_gid(f"{kind}:{v}")
    handles = []
    if weights:
        w = float(np.median(weights)) / MiB
        wl = ax.axhline(w, color="black", linestyle="--", linewidth=1.2)
        wl.set_gid("weights")
        all_y.append(w)
        handles.append(Line2D([], [], color="black", linestyle="--", label=f"model weights ({w:.3g} MiB)"))
    if engine:
        handles.append(Line2D([], [], color="gray", linestyle="-", marker="o", label="engine buffers (incl. cache)"))
    if rss:
        handles.append(Line2D([], [], color="gray", linestyle=":", marker="o", markersize=3,
                              label="process peak RSS"))
    _T_axis(ax, all_T or [T for byT in data.values() for T in byT])
    _log_y_if_wide(ax, all_y, decades=1.5)
    ax.set_ylabel("memory (MiB)" + (", log scale" if ax.get_yscale() == "log" else ""))
    if ax.get_yscale() != "log":
        ax.set_ylim(bottom=0)
    ax.set_title("Engine buffers and peak RSS vs the weights (colors: versions)", fontsize=10)
    ax.grid(True, alpha=0.3)
    if handles:
        ax.legend(handles=handles, fontsize=8, loc="best")
    return _finish(fig, "Memory vs generated tokens T", used, path)


def _kv_read_factor(record) -> float:
    """How many times a decode step reads each stored KV byte: 1, or (with cross-layer sharing)
    layers / stored layers, since both layers of a pair attend over the shared cache."""
    if not _get(record, "version_flags", "cross_layer_sharing"):
        return 1.0
    layers = _num(_get(record, "model", "config", "num_hidden_layers"))
    if not layers:
        return 2.0
    return layers / math.ceil(layers / 2)


def decode_bytes_per_step(latency: dict, memory: dict) -> float | None:
    """Bytes a decode step reads: the weights once, plus the KV cache it attends over, averaged over
    the T decode steps (the cache holds P + i positions at step i, on average P + T/2), counted as
    often as it is read (twice per pair with cross-layer sharing)."""
    m = memory["metrics"]
    weight = _num(m.get("weight_bytes")) or _num(_get(memory, "model", "weight_bytes"))
    if weight is None:
        return None
    T = _T(memory)
    P = _num(_get(memory, "params", "prompt_length")) or 0.0
    batch = _num(_get(memory, "params", "batch_size")) or 1.0
    per_tok = _num(m.get("kv_bytes_per_token"))
    kv_total = _num(m.get("kv_cache_bytes"))
    if per_tok is None and kv_total is not None and T:
        cached = P + T - 1
        per_tok = kv_total / (cached * batch) if cached > 0 else 0.0
    if per_tok is None or not T:
        return None
    return weight + per_tok * batch * (P + T / 2.0) * _kv_read_factor(memory)


def _measured_peaks(records: list[dict]) -> tuple[float | None, float | None, str]:
    """(GB/s, GFLOP/s, source) from the roofline records' peaks, else the calibrate record."""
    roof = _of(records, "roofline")
    gbps = [g for g in (_num(r["metrics"].get("peak_gbps")) for r in roof) if g]
    gflops = [g for g in (_num(r["metrics"].get("peak_gflops")) for r in roof) if g]
    bw = float(np.median(gbps)) if gbps else None
    fl = float(np.median(gflops)) if gflops else None
    source = "measured"
    cal = [r for r in records if r.get("benchmark") == "calibrate" and isinstance(r.get("metrics"), dict)]
    if cal and (bw is None or fl is None):
        newest = max(enumerate(cal), key=lambda ir: (_timestamp(ir[1]), ir[0]))[1]
        if bw is None:
            bw = _median(newest["metrics"].get("bandwidth_gbps"))
        if fl is None:
            fl = _median(newest["metrics"].get("matmul_gflops"))
        source = "measured by calibrate"
    return (bw if bw and bw > 0 else None), (fl if fl and fl > 0 else None), source


def plot_memory_throughput(records: list[dict], path=None, *, run_id: str | None = None) -> Figure | None:
    """Achieved memory throughput of decode per version vs T: bytes read per decode step
    (:func:`decode_bytes_per_step`, from the memory record at the same T) / the median per-token
    time (latency record), against the measured bandwidth (calibrate or roofline records). Without
    latency+memory pairs the roofline decode records' achieved GB/s are shown instead."""
    recs = select_records(records, run_id)
    lat, mem = _by_version_T(recs, "latency"), _by_version_T(recs, "memory")
    series, used, source = {}, [], "latency + memory records"
    for v in versions_order(list(lat) + list(mem)):
        pts = []
        for T, lr in lat.get(v, {}).items():
            mr = mem.get(v, {}).get(T)
            per = _median(lr["metrics"].get("per_token_ms"))
            if mr is None or not per or not _compatible(lr, mr):
                continue
            nbytes = decode_bytes_per_step(lr, mr)
            if nbytes is None:
                continue
            pts.append((T, nbytes / (per / 1e3) / 1e9))
            used += [lr, mr]
        if pts:
            series[v] = pts
    if not series:
        source = "roofline decode records"
        roof = _newest([r for r in _of(recs, "roofline") if _get(r, "params", "phase") == "decode"],
                       lambda r: (r["version"], _T(r)) if _T(r) is not None else None)
        for (v, T), r in sorted(roof.items(), key=lambda kv: (_version_key(kv[0][0]), kv[0][1])):
            g = _num(r["metrics"].get("achieved_gbps"))
            if g is not None:
                series.setdefault(v, []).append((T, g))
                used.append(r)
    if not series:
        return None
    bw, _, bw_source = _measured_peaks(recs)
    fig, (ax,) = _figure(1, width=8.5, height=5.2)
    all_T, all_y = [], []
    for v in versions_order(series):
        pts = series[v]
        Ts, ys = [p[0] for p in pts], [p[1] for p in pts]
        all_T += Ts
        all_y += ys
        _version_line(ax, v, Ts, ys, recs)
    if bw:
        ref = ax.axhline(bw, color="black", linestyle="--", linewidth=1.3,
                         label=f"memory bandwidth {bw:.3g} GB/s ({bw_source})")
        ref.set_gid("bandwidth")
        all_y.append(bw)
        used += [r for r in recs if r.get("benchmark") == "calibrate"]
        if max(all_y) > bw * 1.05:
            ax.text(0.99, 0.01, "above the bandwidth line: the working set fits in the CPU caches",
                    transform=ax.transAxes, ha="right", va="bottom", fontsize=7, color="#555555")
    _T_axis(ax, all_T)
    _log_y_if_wide(ax, all_y, decades=1.5)
    if ax.get_yscale() != "log":
        ax.set_ylim(bottom=0)
    ax.set_ylabel("achieved memory throughput of decode (GB/s)")
    ax.set_title(f"Bytes read per decode step (weights + KV cache) / step time  [{source}]", fontsize=10)
    ax.grid(True, alpha=0.3)
    _legend(ax, loc="best")
    return _finish(fig, "Decode memory throughput vs generated tokens T", used, path)


# ---- phases ------------------------------------------------------------------------------------

def plot_phase_breakdown(records: list[dict], path=None, *, run_id: str | None = None) -> Figure | None:
    """Stacked bars of the median time per phase (embedding, attention, mlp, head, other) per
    version at T* (the most common T of the phase records; the largest on ties), and the shares."""
    recs = select_records(records, run_id)
    phase = _of(recs, "phase")
    if not phase:
        return None
    counts = Counter(_T(r) for r in phase)
    T_star = max(counts, key=lambda t: (counts[t], -1 if t is None else t))
    data = _newest([r for r in phase if _T(r) == T_star], lambda r: r["version"])
    versions = versions_order(data)
    heights = {v: {p: _median(_get(data[v], "metrics", "phases_ms", p)) for p in PHASES} for v in versions}
    versions = [v for v in versions if any(h is not None for h in heights[v].values())]
    if not versions:
        return None
    used = [data[v] for v in versions]
    fig, axes = _figure(2, width=max(10.0, 1.6 * len(versions) + 6), height=5.4)
    xs = np.arange(len(versions))
    labels = [version_label(v, recs) for v in versions]
    totals = np.zeros(len(versions))
    for p in PHASES:
        h = np.array([heights[v][p] or 0.0 for v in versions])
        bars = axes[0].bar(xs, h, bottom=totals, color=PHASE_COLORS[p], edgecolor="white", linewidth=0.6,
                           label=p, width=0.6)
        totals = totals + h
    for x, tot, v in zip(xs, totals, versions):
        measured = _median(_get(data[v], "metrics", "total_ms"))
        text = f"{tot:.3g} ms" if measured is None else f"{measured:.3g} ms total"
        axes[0].annotate(text, (x, tot), textcoords="offset points", xytext=(0, 3), ha="center", fontsize=8)
    axes[0].set_xticks(xs, labels, fontsize=8, rotation=20 if len(versions) > 4 else 0)
    axes[0].set_ylabel("median time per run (ms)")
    axes[0].set_xlabel("version")
    axes[0].set_ylim(0, max(totals.max(), 1e-12) * 1.12)
    axes[0].set_title(f"Time per phase at T* = {T_star} (all steps of one generation)", fontsize=10)
    axes[0].grid(True, axis="y", alpha=0.3)
    handles, lbls = axes[0].get_legend_handles_labels()
    axes[0].legend(handles[::-1], lbls[::-1], fontsize=8, loc="upper right", title="phase")

    bottoms = np.zeros(len(versions))
    for p in PHASES:
        h = np.array([heights[v][p] or 0.0 for v in versions])
        share = np.divide(h, totals, out=np.zeros_like(h), where=totals > 0) * 100
        axes[1].bar(xs, share, bottom=bottoms, color=PHASE_COLORS[p], edgecolor="white", linewidth=0.6,
                    width=0.6, label=f"_share:{p}")
        for x, s, b in zip(xs, share, bottoms):
            if s >= 7:
                axes[1].text(x, b + s / 2, f"{s:.0f}%", ha="center", va="center", fontsize=7)
        bottoms = bottoms + share
    axes[1].set_xticks(xs, labels, fontsize=8, rotation=20 if len(versions) > 4 else 0)
    axes[1].set_ylabel("share of the phases' total (%)")
    axes[1].set_xlabel("version")
    axes[1].set_ylim(0, 100)
    axes[1].set_title("Share of each phase", fontsize=10)
    return _finish(fig, f"Where the time goes: per-phase breakdown at T* = {T_star}", used, path)


# ---- quality -----------------------------------------------------------------------------------

def plot_quality(records: list[dict], path=None, *, run_id: str | None = None) -> Figure | None:
    """Perplexity per version (bars; the baseline hatched and drawn as a dashed line) and the KL
    divergence from the baseline's next-token distribution (bars, log scale when the values span
    more than two decades; 0 for the baseline), top-1 agreement written above the bars."""
    recs = select_records(records, run_id)
    data = _newest(_of(recs, "perplexity"), lambda r: r["version"])
    versions = versions_order(data)
    if not versions:
        return None
    baselines = [_get(data[v], "params", "baseline_version") for v in versions]
    baseline = next((b for b in baselines if b), None)
    ppl = {v: _num(data[v]["metrics"].get("perplexity")) for v in versions}
    kl = {}
    for v in versions:
        k = _num(data[v]["metrics"].get("kl_vs_baseline"))
        kl[v] = 0.0 if (k is None and v == baseline) else k
    top1 = {v: _num(data[v]["metrics"].get("top1_agreement")) for v in versions}
    if all(p is None for p in ppl.values()) and all(k is None for k in kl.values()):
        return None
    used = [data[v] for v in versions]
    fig, axes = _figure(2, width=max(11.0, 1.5 * len(versions) + 6), height=5.4)
    xs = np.arange(len(versions))
    labels = [version_label(v, recs) for v in versions]
    colors = [version_color(v) for v in versions]

    ax = axes[0]
    heights = [ppl[v] if ppl[v] is not None else 0.0 for v in versions]
    bars = ax.bar(xs, heights, color=colors, width=0.6, edgecolor="black", linewidth=0.6, label="_perplexity")
    base_ppl = ppl.get(baseline) if baseline else None
    for bar, v in zip(bars, versions):
        if v == baseline:
            bar.set_hatch("//")
        if ppl[v] is None:
            ax.text(bar.get_x() + bar.get_width() / 2, 0, "n/a", ha="center", va="bottom", fontsize=8)
            continue
        text = f"{ppl[v]:.4g}"
        if base_ppl and v != baseline:
            text += f"\n({(ppl[v] / base_ppl - 1) * 100:+.2f}%)"
        ax.annotate(text, (bar.get_x() + bar.get_width() / 2, ppl[v]), textcoords="offset points",
                    xytext=(0, 3), ha="center", fontsize=7)
    if base_ppl:
        ref = ax.axhline(base_ppl, color="black", linestyle="--", linewidth=1,
                         label=f"baseline {version_label(baseline, recs)}: {base_ppl:.4g}")
        ref.set_gid("baseline")
        ax.legend(fontsize=8, loc="upper right")
    ax.set_ylim(0, max(max(heights), 1e-12) * 1.32)
    ax.set_xticks(xs, labels, fontsize=8, rotation=20 if len(versions) > 4 else 0)
    ax.set_xlabel("version")
    ax.set_ylabel("perplexity (exp of mean NLL per token; lower is better)")
    nt = {_num(data[v]["metrics"].get("num_tokens")) for v in versions} - {None}
    ax.set_title("Perplexity" + (f" over {int(max(nt)):,} tokens" if nt else ""), fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)

    ax = axes[1]
    kl_h = [kl[v] if kl[v] is not None else 0.0 for v in versions]
    positive = [k for k in kl_h if k > 0]
    log = len(positive) >= 2 and max(positive) / min(positive) >= 100
    if log:
        _log_y(ax)
    bars = ax.bar(xs, kl_h, color=colors, width=0.6, edgecolor="black", linewidth=0.6, label="_kl")
    if log:
        ax.set_ylim(min(positive) / 5, max(positive) * 8)
    elif positive:
        ax.set_ylim(0, max(positive) * 1.25)
    else:
        ax.set_ylim(0, 1)
    bottom = ax.get_ylim()[0]
    for bar, v in zip(bars, versions):
        x = bar.get_x() + bar.get_width() / 2
        if v == baseline:
            bar.set_hatch("//")
        k = kl[v]
        if k is None:
            txt, y = "KL n/a", bottom
        elif k <= 0:
            txt, y = "KL 0" + (" (baseline)" if v == baseline else ""), bottom
        else:
            txt, y = f"{k:.2e}", k
        if top1[v] is not None:
            txt += f"\ntop-1 {top1[v] * 100:.1f}%"
        ax.annotate(txt, (x, y), textcoords="offset points", xytext=(0, 3), ha="center", fontsize=7)
    ax.set_xticks(xs, labels, fontsize=8, rotation=20 if len(versions) > 4 else 0)
    ax.set_xlabel("version")
    ax.set_ylabel("KL(p_baseline ‖ p_version) (nats/token)" + (", log scale" if log else ""))
    ax.set_title(f"Divergence from the baseline {baseline or '?'} (top-1 agreement annotated)", fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
    return _finish(fig, "Quality cost of each KV-cache version", used, path)


# ---- roofline ----------------------------------------------------------------------------------

def plot_roofline(records: list[dict], path=None, *, run_id: str | None = None) -> Figure | None:
    """Log-log roofline: the measured memory-bandwidth slope (peak_gbps * intensity) and compute
    ceiling (peak_gflops) of the records (or the calibrate record), each (version, phase) a point
    at (arithmetic intensity, achieved GFLOP/s), annotated with its fraction of the ceiling that
    limits it at that intensity."""
    recs = select_records(records, run_id)
    data = _newest(_of(recs, "roofline"), lambda r: (r["version"], str(_get(r, "params", "phase"))))
    points = []
    for (v, phase), r in data.items():
        m = r["metrics"]
        ai = _num(m.get("arithmetic_intensity"))
        if ai is None and _num(m.get("flops")) and _num(m.get("bytes")):
            ai = m["flops"] / m["bytes"]
        gf = _num(m.get("achieved_gflops"))
        t = _median(m.get("time_ms"))
        if gf is None and _num(m.get("flops")) and t:
            gf = m["flops"] / (t / 1e3) / 1e9
        if ai and gf and ai > 0 and gf > 0:
            points.append((v, phase, ai, gf, r))
    if not points:
        return None
    points.sort(key=lambda p: (_version_key(p[0]), p[1]))
    bw, fl, source = _measured_peaks(recs)
    used = [p[4] for p in points]
    fig, (ax,) = _figure(1, width=9.5, height=6.2)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ais = [p[2] for p in points]
    gfs = [p[3] for p in points]
    ridge = fl / bw if (bw and fl) else None
    x_lo = min(ais + ([ridge] if ridge else [])) / 8
    x_hi = max(ais + ([ridge] if ridge else [])) * 8
    if bw:
        x_end = ridge if ridge else x_hi
        line, = ax.plot([x_lo, x_end], [bw * x_lo, bw * x_end], color="black", linewidth=2,
                        label=f"memory bandwidth {bw:.3g} GB/s ({source})")
        line.set_gid("bandwidth")
    if fl:
        x_start = ridge if ridge else x_lo
        line, = ax.plot([x_start, x_hi], [fl, fl], color="black", linewidth=2, linestyle="-.",
                        label=f"compute peak {fl:.3g} GFLOP/s ({source})")
        line.set_gid("compute")
    if ridge:
        ax.axvline(ridge, color="gray", linewidth=0.8, linestyle=":")
        ax.annotate(f"ridge {ridge:.3g} flop/B", (ridge, fl), textcoords="offset points", xytext=(4, -14),
                    fontsize=7, color="gray")
    labels = []
    for v, phase, ai, gf, r in points:
        col = ax.scatter([ai], [gf], color=version_color(v), marker=ROOFLINE_PHASE_MARKERS.get(phase, "D"), s=60,
                         edgecolors="black", linewidths=0.6, zorder=4)
        col.set_gid(f"{v}:{phase}")
        ceilings = []
        if bw:
            ceilings.append((bw * ai, "BW"))
        if fl:
            ceilings.append((fl, "peak FLOP/s"))
        text = f"{v} {phase}"
        if ceilings:
            limit, name = min(ceilings)
            text += f" {gf / limit * 100:.0f}% of {name}"
        labels.append(text)
    # points close together (e.g. every version's prefill) get their labels stacked beside them
    logs = [(math.log10(p[2]), math.log10(p[3])) for p in points]
    _stacked_labels(ax, [(p[2], p[3]) for p in points], labels, [version_color(p[0]) for p in points],
                    _clusters(logs, 0.35, 0.35), log=True)
    y_all = gfs + ([fl] if fl else []) + ([bw * x_lo] if bw else [])
    ax.set_ylim(min(y_all) / 4, max(y_all) * 4)
    ax.set_xlim(x_lo, x_hi)
    ax.set_xlabel("arithmetic intensity (flop/byte)")
    ax.set_ylabel("achieved performance (GFLOP/s)")
    ax.set_title("Roofline: prefill vs decode per version (ceilings measured on this machine)", fontsize=10)
    ax.grid(True, which="both", alpha=0.25)
    handles, _ = ax.get_legend_handles_labels()
    for v in versions_order([p[0] for p in points]):
        handles.append(Line2D([], [], linestyle="", marker="o", color=version_color(v), label=version_label(v, recs)))
    for phase in sorted({p[1] for p in points}):
        handles.append(Line2D([], [], linestyle="", marker=ROOFLINE_PHASE_MARKERS.get(phase, "D"), color="white",
                              markeredgecolor="black", label=phase))
    ax.legend(handles=handles, fontsize=8, loc="upper left")
    if not (bw or fl):
        ax.text(0.99, 0.01, "no measured peaks in the records: ceilings not drawn", transform=ax.transAxes,
                ha="right", va="bottom", fontsize=8, color="#8b0000")
    used += [r for r in recs if r.get("benchmark") == "calibrate"]
    return _finish(fig, "Roofline (measured ceilings)", used, path)


# ---- trade-off ---------------------------------------------------------------------------------

def plot_tradeoff(records: list[dict], path=None, *, run_id: str | None = None) -> Figure | None:
    """Speed / memory / quality in one picture: x = KV cache bytes at the largest T that every
    version has in both the latency and memory records (else each version's largest such T),
    y = decode tokens/s there, color = KL divergence from the quality baseline."""
    recs = select_records(records, run_id)
    lat, mem = _by_version_T(recs, "latency"), _by_version_T(recs, "memory")
    quality = _newest(_of(recs, "perplexity"), lambda r: r["version"])
    if not (lat and mem and quality):
        return None
    pairs = {}
    for v in versions_order(list(lat) + list(mem)):
        Ts = [T for T in lat.get(v, {}) if T in mem.get(v, {}) and _compatible(lat[v][T], mem[v][T])]
        Ts = [T for T in Ts if _decode_tokens_per_s(lat[v][T]) and _num(mem[v][T]["metrics"].get("kv_cache_bytes"))
              is not None]
        if Ts:
            pairs[v] = set(Ts)
    if not pairs:
        return None
    common = set.intersection(*pairs.values())
    T_used = {v: (max(common) if common else max(Ts)) for v, Ts in pairs.items()}
    versions = list(pairs)
    xs = [mem[v][T_used[v]]["metrics"]["kv_cache_bytes"] / MiB for v in versions]
    ys = [_decode_tokens_per_s(lat[v][T_used[v]]) for v in versions]
    kls = [_num(quality[v]["metrics"].get("kl_vs_baseline")) if v in quality else None for v in versions]
    baseline = next((_get(r, "params", "baseline_version") for r in quality.values()
                     if _get(r, "params", "baseline_version")), None)
    kls = [0.0 if (k is None and v == baseline and v in quality) else k for v, k in zip(versions, kls)]
    used = [lat[v][T_used[v]] for v in versions] + [mem[v][T_used[v]] for v in versions] + list(quality.values())
    fig, (ax,) = _figure(1, width=9, height=6)
    known = [i for i, k in enumerate(kls) if k is not None]
    unknown = [i for i, k in enumerate(kls) if k is None]
    if known:
        vals = np.array([max(kls[i], 0.0) for i in known])
        pos = vals[vals > 0]
        if pos.size and pos.max() / pos.min() >= 100:
            # values below 1e-9 of the largest are numerical noise: the linear part of the scale
            norm = SymLogNorm(linthresh=float(max(pos.min(), pos.max() * 1e-9)), vmin=0.0, vmax=float(pos.max()))
        else:
            norm = Normalize(vmin=0.0, vmax=float(vals.max()) if vals.max() > 0 else 1.0)
        sc = ax.scatter([xs[i] for i in known], [ys[i] for i in known], c=vals, cmap="viridis_r", norm=norm, s=180,
                        edgecolors="black", linewidths=0.8, zorder=4)
        sc.set_gid("versions")
        cbar = fig.colorbar(sc, ax=ax)
        if isinstance(norm, SymLogNorm):
            lo, hi = math.ceil(math.log10(norm.linthresh)), math.floor(math.log10(norm.vmax))
            step = max(1, math.ceil((hi - lo + 1) / 6))
            cbar.set_ticks([0.0] + [10.0**e for e in range(hi, lo - 1, -step)][::-1])
        cbar.set_label(f"KL divergence vs baseline {baseline or ''} (nats/token)")
    if unknown:
        sc2 = ax.scatter([xs[i] for i in unknown], [ys[i] for i in unknown], s=180, facecolors="none",
                         edgecolors="gray", linewidths=1.2, zorder=4, label="no quality record")
        sc2.set_gid("no-quality")
    # the version name at each point; its description and KL in the legend
    handles = []
    for v, x, y, k in zip(versions, xs, ys, kls):
        ax.annotate(v, (x, y), textcoords="offset points", xytext=(8, 6), fontsize=9, color=version_color(v),
                    fontweight="bold")
        ktxt = "KL n/a" if k is None else ("KL 0" if k <= 0 else f"KL {k:.2g}")
        handles.append(Line2D([], [], linestyle="", marker="o", markersize=7, markerfacecolor="white",
                              markeredgecolor=version_color(v), markeredgewidth=2,
                              label=f"{version_label(v, recs)}: {x:.3g} MiB, {y:,.0f} tok/s, {ktxt}"))
    if unknown:
        handles.append(Line2D([], [], linestyle="", marker="o", markersize=7, markerfacecolor="none",
                              markeredgecolor="gray", label="hollow gray: no quality record"))
    ax.legend(handles=handles, fontsize=7, loc="best")
    right = max(xs) * 1.3 if max(xs) > 0 else 1.0
    ax.set_xlim(min(0.0, min(xs)) - 0.04 * right, right)
    ax.set_ylim(0, max(ys) * 1.2)
    Ts = sorted(set(T_used.values()))
    at = f"T = {Ts[0]}" if len(Ts) == 1 else "each version's largest T (" + ", ".join(map(str, Ts)) + ")"
    ax.set_xlabel(f"KV cache size at {at} (MiB)")
    ax.set_ylabel("decode throughput (tokens/s)")
    ax.set_title("Up and to the left is better: faster decode, smaller cache; lighter color = closer to baseline",
                 fontsize=9)
    ax.grid(True, alpha=0.3)
    return _finish(fig, "Speed / memory / quality trade-off", used, path)


# ---- all plots ---------------------------------------------------------------------------------

#: plot name (the file stem) -> plot function
# ---- backend comparison (bench compare) --------------------------------------------------------

BACKEND_COLORS = {"celerinfer": "#1f77b4", "torch": "#ff7f0e", "llama.cpp": "#2ca02c"}
_COMPARE_SPEEDS = (("pp_tokens_per_s", "prefill (pp)"), ("tg_tokens_per_s", "decode (tg)"))


def _compare_records(records: Iterable[dict], run_id: str | None) -> list[dict]:
    """The compare records to plot (one per setup label, the newest), in measurement order."""
    recs = [r for r in select_records(records, run_id) if r.get("benchmark") == "compare"
            and isinstance(r.get("metrics"), dict) and isinstance(_get(r, "params", "label"), str)]
    newest = _newest(recs, lambda r: r["params"]["label"])
    return sorted(newest.values(), key=_timestamp)


def plot_compare_backends(records: list[dict], path=None, *, run_id: str | None = None) -> Figure | None:
    """Tokens/s of every setup of `bench compare` (celerinfer, torch, llama.cpp x weight format x
    KV cache): prefill and decode side by side, bars colored by backend, 95% CI whiskers."""
    recs = _compare_records(records, run_id)
    if not recs:
        return None
    fig, axes = _figure(2, width=12, height=max(3.5, 1.2 + 0.42 * len(recs)), sharey=True)
    ys = np.arange(len(recs))[::-1]
    for ax, (metric, title) in zip(axes, _COMPARE_SPEEDS):
        for y, r in zip(ys, recs):
            stat = r["metrics"].get(metric)
            med = _median(stat)
            if med is None:
                continue
            backend = r["params"].get("backend")
            err = _yerr(stat, med)
            bar = ax.barh(y, med, color=BACKEND_COLORS.get(backend, "#7f7f7f"), height=0.7,
                          xerr=None if err is None else [[err[0]], [err[1]]], ecolor="#333333", capsize=2)
            bar.patches[0].set_gid(r["params"]["label"])
            text = f"{med:,.0f}" if med >= 100 else f"{med:.3g}"
            ax.annotate(text, (med + (err[1] if err else 0.0), y), textcoords="offset points", xytext=(4, 0),
                        fontsize=7, va="center")
        ax.set_title(f"{title}: tokens/s (higher is better)", fontsize=11)
        ax.set_xlabel("tokens/s")
        ax.grid(True, axis="x", alpha=0.3)
        ax.margins(x=0.15)
    axes[0].set_yticks(ys, [r["params"]["label"] for r in recs], fontsize=8)
    handles = [Line2D([], [], color=c, linewidth=8, label=b) for b, c in BACKEND_COLORS.items()
               if any(r["params"].get("backend") == b for r in recs)]
    axes[1].legend(handles=handles, fontsize=8, loc="best")
    return _finish(fig, "Backends on the same weights", recs, path)


def plot_compare_speedup(records: list[dict], path=None, *, run_id: str | None = None) -> Figure | None:
    """celerinfer's speed relative to llama.cpp's best setup of the same weight format, to
    PyTorch eager fp32 and to PyTorch in the same format (bf16; ratios stored in the compare
    records), for prefill and decode."""
    recs = [r for r in _compare_records(records, run_id) if r["params"].get("backend") == "celerinfer"]
    refs = (("vs_llama_cpp", "vs llama.cpp (best, same format)"), ("vs_torch", "vs PyTorch eager fp32"),
            ("vs_torch_same_format", "vs PyTorch eager bf16"))
    refs = [(key, title) for key, title in refs if any(isinstance(r["metrics"].get(key), dict) for r in recs)]
    if not refs:
        return None
    fig, axes = _figure(len(refs), width=max(9, 6 * len(refs)), height=max(3.5, 1.4 + 0.5 * len(recs)), sharey=True)
    ys = np.arange(len(recs))[::-1]
    colors = {"pp": "#9467bd", "tg": "#1f77b4"}
    for ax, (key, title) in zip(axes, refs):
        for offset, (phase, label) in ((0.2, ("pp", "prefill (pp)")), (-0.2, ("tg", "decode (tg)"))):
            vals = [_num(_get(r, "metrics", key, phase)) for r in recs]
            pts = [(y + offset, v) for y, v in zip(ys, vals) if v is not None]
            if pts:
                ax.barh([p[0] for p in pts], [p[1] for p in pts], height=0.38, color=colors[phase], label=label)
                for y, v in pts:
                    ax.annotate(f"{v:.2f}×", (v, y), textcoords="offset points", xytext=(4, 0), fontsize=7,
                                va="center")
        ax.axvline(1.0, color="#333333", linestyle="--", linewidth=1)
        ax.set_title(f"celerinfer {title}", fontsize=11)
        ax.set_xlabel("speed ratio (× tokens/s; > 1: celerinfer faster)")
        ax.grid(True, axis="x", alpha=0.3)
        ax.margins(x=0.15)
        _legend(ax, loc="best")
    axes[0].set_yticks(ys, [r["params"]["label"].removeprefix("celerinfer ") for r in recs], fontsize=8)
    return _finish(fig, "celerinfer relative to llama.cpp and PyTorch", recs, path)


PLOTS: dict[str, Callable[..., Figure | None]] = {
    "latency_vs_T": plot_latency,
    "memory_vs_T": plot_memory,
    "phase_breakdown": plot_phase_breakdown,
    "quality": plot_quality,
    "roofline": plot_roofline,
    "speedup": plot_speedup,
    "latency_distribution": plot_latency_distribution,
    "memory_throughput": plot_memory_throughput,
    "tradeoff": plot_tradeoff,
    "compare_backends": plot_compare_backends,
    "compare_speedup": plot_compare_speedup,
}


def make_plots(records: list[dict], out_dir, formats=("png",), run_id: str | None = None) -> dict[str, Path]:
    """Writes every plot the records have data for into out_dir, once per format (png, svg, pdf,
    ...), and returns {plot name: path of its file in the first format}. Plots without data are
    skipped (no file); a plot that fails is reported with a warning and skipped. run_id: see
    :func:`select_records` (default: each benchmark's latest run; ValueError for an unknown id)."""
    if isinstance(formats, str):
        formats = (formats,)
    formats = [str(f).lower().lstrip(".") for f in formats] or ["png"]
    selected = select_records(records, run_id)
    out_dir = Path(out_dir)
    written: dict[str, Path] = {}
    for name, func in PLOTS.items():
        try:
            fig = func(selected, None, run_id="all")
        except Exception as exc:  # one broken plot must not cost the others
            warnings.warn(f"plot {name} failed: {type(exc).__name__}: {exc}", RuntimeWarning, stacklevel=2)
            continue
        if fig is None:
            continue
        out_dir.mkdir(parents=True, exist_ok=True)
        for fmt in formats:
            target = out_dir / f"{name}.{fmt}"
            fig.savefig(target, dpi=DPI, format=fmt)
            written.setdefault(name, target)
    return written


__all__ = [
    "PLOTS",
    "VERSION_COLORS",
    "decode_bytes_per_step",
    "footnote_text",
    "make_plots",
    "plot_compare_backends",
    "plot_compare_speedup",
    "plot_latency",
    "plot_latency_distribution",
    "plot_memory",
    "plot_memory_throughput",
    "plot_phase_breakdown",
    "plot_quality",
    "plot_roofline",
    "plot_speedup",
    "plot_tradeoff",
    "select_records",
    "version_color",
    "version_label",
    "versions_order",
]
