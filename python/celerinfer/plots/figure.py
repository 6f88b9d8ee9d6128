"""The figure helpers every plot shares: a Figure on its own Agg canvas (pyplot is never
used), the footnote naming model, threads, CPU and run, axes in the units of T, log axes with
plain labels, stacked labels beside clustered points, version lines in their style."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

try:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.layout_engine import ConstrainedLayoutEngine
    from matplotlib.ticker import LogFormatter, NullFormatter, ScalarFormatter
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("celerinfer.plots needs matplotlib (pip install matplotlib)") from exc

from ..results.fields import finite_number, get, weight_format
from .selection import timestamp_of
from .style import version_color, version_label, version_marker

MiB = float(2**20)
DPI = 120


def version_line(ax, version: str, xs, ys, records, registry=None):
    """One version's line in its fixed color and marker, findable by gid = the version name."""
    line, = ax.plot(xs, ys, marker=version_marker(version, registry), color=version_color(version, registry),
                    label=version_label(version, records, registry), linewidth=1.8)
    line.set_gid(version)
    return line


def new_figure(ncols: int = 1, width: float = 7.0, height: float = 5.0, **subplot_kw):
    """A Figure on an Agg canvas with constrained layout and room for the footnote."""
    fig = Figure(figsize=(width, height), dpi=DPI,
                 layout=ConstrainedLayoutEngine(rect=(0.0, 0.06, 1.0, 0.94)))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols, squeeze=False, **subplot_kw)[0]
    return fig, list(axes)


def short_run(rid) -> str:
    return str(rid)[:8] if rid is not None else "?"


def footnote_text(records: list[dict]) -> str:
    """'model: ... | weights: ... | matmul: ... | threads: ... | CPU: ... | run: ... (date)' of the
    records a plot shows."""
    def distinct(values):
        seen = []
        for v in values:
            if v is not None and v not in seen:
                seen.append(v)
        return seen

    parts = []
    models = distinct(get(r, "model", "name") for r in records)
    if models:
        nparams = distinct(get(r, "model", "num_parameters") for r in records)
        text = ", ".join(str(m) for m in models[:3]) + (" ..." if len(models) > 3 else "")
        if len(models) == 1 and len(nparams) == 1 and finite_number(nparams[0]):
            n = finite_number(nparams[0])
            text += f" ({n / 1e6:.3g}M params)" if n >= 1e5 else f" ({int(n):,} params)"
        parts.append(f"model: {text}")
    formats = distinct(weight_format(r) for r in records)
    if formats:
        parts.append("weights: " + ", ".join(map(str, formats[:4])) + (" ..." if len(formats) > 4 else ""))
    precisions = distinct(get(r, "model", "matmul_precision") for r in records)
    if precisions:
        parts.append("matmul: " + ", ".join(map(str, precisions)))
    for label, path in (("batch", ("params", "batch_size")), ("prompt", ("params", "prompt_length"))):
        vals = distinct(get(r, *path) for r in records)
        if len(vals) == 1:
            parts.append(f"{label}: {vals[0]}")
    threads = distinct(r.get("threads") for r in records)
    if threads:
        parts.append("threads: " + ", ".join(str(t) for t in threads))
    hosts = distinct(r.get("hostname") for r in records)
    if len(hosts) > 1:
        parts.append(f"{len(hosts)} machines")
    cpus = distinct(r.get("cpu_model") for r in records)
    if cpus:
        parts.append("CPU: " + "; ".join(str(c) for c in cpus[:2]) + (" ..." if len(cpus) > 2 else ""))
    gpus = distinct(r.get("gpu_name") for r in records)
    if gpus:
        parts.append("GPU: " + "; ".join(str(g) for g in gpus[:2]))
    runs: dict = {}
    for r in records:
        runs[r.get("run_id")] = max(runs.get(r.get("run_id"), float("-inf")), timestamp_of(r))
    if runs:
        ordered = sorted(runs, key=runs.get)
        shown = [short_run(rid) for rid in ordered[-3:]]
        when = runs[ordered[-1]]
        date = (datetime.fromtimestamp(when, tz=timezone.utc).strftime(" (%Y-%m-%d %H:%M UTC)")
                if math.isfinite(when) else "")
        more = f" +{len(ordered) - 3} more" if len(ordered) > 3 else ""
        parts.append(("runs: " if len(ordered) > 1 else "run: ") + ", ".join(shown) + more + date)
    if any(r.get("status") not in (None, "ok") for r in records):
        parts.append("some measurements interrupted")
    return " | ".join(parts)


def finish(fig, title: str, records: list[dict], path) -> Figure:
    fig.suptitle(title, fontsize=13, fontweight="bold")
    note = footnote_text(records)
    if len(note) > 150:  # two lines, cut between parts
        cut = note.rfind(" | ", 0, 150)
        note = note[:cut] + "\n" + note[cut + 3:] if cut > 0 else note
    if len(note) > 320:
        note = note[:319] + "…"
    fig.text(0.01, 0.004, note, fontsize=6.5, color="#555555", ha="left", va="bottom")
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=DPI)
    return fig


def span_of(values) -> float:
    """max / min of the positive values (1 when fewer than two)."""
    pos = [v for v in values if v is not None and v > 0]
    return max(pos) / min(pos) if len(pos) >= 2 else 1.0


def T_axis(ax, Ts) -> None:
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


def log_y(ax) -> None:
    """Log y axis with plain-number tick labels instead of 2x10^1."""
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(_PlainLogFormatter(labelOnlyBase=False))
    ax.yaxis.set_minor_formatter(_PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(1.2, 0.6)))


def log_y_if_wide(ax, values, decades: float = 1.0) -> bool:
    if span_of(values) >= 10**decades and all(v > 0 for v in values if v is not None):
        log_y(ax)
        return True
    return False


def clusters(points, dx: float, dy: float) -> list[list[int]]:
    """Indices of points grouped so that points within (dx, dy) of a group member share a group
    (single linkage): their labels are stacked next to the group instead of overlapping."""
    groups: list[list[int]] = []
    for i, (x, y) in enumerate(points):
        hits = [g for g in groups if any(abs(x - points[j][0]) < dx and abs(y - points[j][1]) < dy for j in g)]
        merged = [i] + [j for g in hits for j in g]
        groups = [g for g in groups if g not in hits] + [sorted(merged)]
    return groups


def stacked_labels(ax, anchors, labels, colors, groups, *, log: bool, step: float = 10.5, fontsize=7,
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


def legend(ax, **kw):
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(fontsize=8, **kw)
