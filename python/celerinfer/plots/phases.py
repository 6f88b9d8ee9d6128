"""Where the time goes: the per-phase breakdown at T*."""

from __future__ import annotations

from collections import Counter

import numpy as np

try:
    from matplotlib.figure import Figure
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("celerinfer.plots needs matplotlib (pip install matplotlib)") from exc

from ..results.fields import get, median_of
from .figure import finish, new_figure
from .selection import T_of, newest_by, records_of, select_records
from .style import PHASE_COLORS, version_label, versions_order

#: the engine's phases, in its order (records carry them by name; the plots never ask the engine)
PHASES = ("embedding", "attention", "mlp", "head", "other")


def plot_phase_breakdown(records: list[dict], path=None, *, run_id: str | None = None,
                registry=None) -> Figure | None:
    """Stacked bars of the median time per phase (embedding, attention, mlp, head, other) per
    version at T* (the most common T of the phase records; the largest on ties), and the shares."""
    recs = select_records(records, run_id)
    phase = records_of(recs, "phase")
    if not phase:
        return None
    counts = Counter(T_of(r) for r in phase)
    T_star = max(counts, key=lambda t: (counts[t], -1 if t is None else t))
    data = newest_by([r for r in phase if T_of(r) == T_star], lambda r: r["version"])
    versions = versions_order(data)
    heights = {v: {p: median_of(get(data[v], "metrics", "phases_ms", p)) for p in PHASES} for v in versions}
    versions = [v for v in versions if any(h is not None for h in heights[v].values())]
    if not versions:
        return None
    used = [data[v] for v in versions]
    fig, axes = new_figure(2, width=max(10.0, 1.6 * len(versions) + 6), height=5.4)
    xs = np.arange(len(versions))
    labels = [version_label(v, recs, registry) for v in versions]
    totals = np.zeros(len(versions))
    for p in PHASES:
        h = np.array([heights[v][p] or 0.0 for v in versions])
        bars = axes[0].bar(xs, h, bottom=totals, color=PHASE_COLORS[p], edgecolor="white", linewidth=0.6,
                           label=p, width=0.6)
        totals = totals + h
    for x, tot, v in zip(xs, totals, versions):
        measured = median_of(get(data[v], "metrics", "total_ms"))
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
    return finish(fig, f"Where the time goes: per-phase breakdown at T* = {T_star}", used, path)
