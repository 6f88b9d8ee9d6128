"""The run mode's two plots (seed 001), views of the runs in its benchmark folder
(:mod:`celerinfer.results.inference_metrics`): ``optimization_comparison.png`` (non-optimized
vs optimized tokens/s, time per token, total time and memory) and ``performance_over_time.png``
(tokens/s of every run in recording order). Figure objects on the Agg canvas, no pyplot
state; each file is replaced atomically."""

from __future__ import annotations

import os

import numpy as np

try:
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("celerinfer.plots needs matplotlib (pip install matplotlib)") from exc

from ..io.atomic import atomic_file
from ..results.fields import finite_number
from ..results.inference_metrics import BASELINE_VERSION
from ..results.speedup import speedup as ratio_of_medians

BASELINE_COLOR = "#d62728"  # red
OPTIMIZED_COLOR = "#2ca02c"  # green


def _save(figure, path: str | os.PathLike) -> None:
    with atomic_file(path, "wb") as fh:
        figure.savefig(fh, format="png", dpi=100)


def _usable(run: dict) -> bool:
    return isinstance(run.get("optimized"), bool) and finite_number(run.get("tokens_per_second")) is not None


def _latest_pair(runs: list[dict]) -> tuple[list[dict], list[dict]]:
    """The last optimized run and the baseline of its pair (or the last of each kind)."""
    optimized = [r for r in runs if r["optimized"]]
    baseline = [r for r in runs if not r["optimized"]]
    if optimized:
        last = optimized[-1]
        partner = [r for r in baseline if last.get("pair_id") is not None and r.get("pair_id") == last.get("pair_id")]
        return (partner[-1:] or baseline[-1:]), [last]
    return baseline[-1:], []


def comparison_summary(runs: list[dict], scope: str = "all") -> dict:
    """What the comparison plot shows: per kind (baseline/optimized) the median and standard
    deviation of each metric over the selected runs, their count and versions, the speedup
    (results/speedup.py: median optimized tokens/s / median baseline tokens/s, with its 95%
    CI in ``speedup_ci95``) and the memory reduction in % (of the medians)."""
    if scope not in ("all", "latest"):
        raise ValueError(f"scope must be 'all' or 'latest', got {scope!r}")
    usable = [r for r in runs if _usable(r)]
    if scope == "latest":
        baseline, optimized = _latest_pair(usable)
    else:
        baseline = [r for r in usable if not r["optimized"]]
        optimized = [r for r in usable if r["optimized"]]
    def describe(selected):
        out = {"n": len(selected), "versions": sorted({str(r.get("version")) for r in selected})}
        for key in ("tokens_per_second", "time_per_token", "total_time", "memory_used_mb"):
            values = [v for v in (finite_number(r.get(key)) for r in selected) if v is not None]
            out[key] = float(np.median(values)) if values else None
            out[key + "_samples"] = values
            out[key + "_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0 if values else None
        return out

    base, opt = describe(baseline), describe(optimized)
    speedup, speedup_ci = None, None
    if base["tokens_per_second"] and opt["tokens_per_second"] is not None:
        found = ratio_of_medians(base["tokens_per_second_samples"], opt["tokens_per_second_samples"])
        speedup, speedup_ci = found.ratio, list(found.ci95)
    reduction = None
    if base["memory_used_mb"] and opt["memory_used_mb"] is not None:
        reduction = 100.0 * (1.0 - opt["memory_used_mb"] / base["memory_used_mb"])
    if scope == "latest":
        pair = (optimized or baseline)
        name = pair[0].get("pair_id") or pair[0].get("run_name") if pair else None
        title = f"latest pair ({name})" if name else "latest pair (no runs yet)"
    else:
        title = f"median of {base['n']} non-optimized / {opt['n']} optimized runs"
    return {"scope": scope, "title": title, "baseline": base, "optimized": opt, "speedup": speedup,
            "speedup_ci95": speedup_ci,
            "memory_reduction_pct": reduction}


def plot_comparison(runs: list[dict], path: str | os.PathLike, scope: str = "all") -> dict:
    """optimization_comparison.png: tokens/s, time/token, total time and memory, non-optimized
    vs optimized bars (medians, with the standard deviation when there are several runs), the speedup
    and the memory reduction annotated. Returns :func:`comparison_summary`."""
    summary = comparison_summary(runs, scope)
    base, opt = summary["baseline"], summary["optimized"]
    labels = [f"Non-optimized\n({', '.join(base['versions']) or BASELINE_VERSION})",
              f"Optimized\n({', '.join(opt['versions']) or '-'})"]
    panels = [("tokens_per_second", "Tokens per Second", "tokens/s (higher is better)"),
              ("time_per_token", "Time per Token", "ms (lower is better)"),
              ("total_time", "Total Generation Time", "s (lower is better)"),
              ("memory_used_mb", "Memory Usage", "MB, engine buffers incl. KV cache (lower is better)")]
    figure = Figure(figsize=(12, 9))
    try:
        axes = figure.subplots(2, 2).ravel()
        for ax, (key, name, unit) in zip(axes, panels):
            values = [base[key], opt[key]]
            errors = [base[key + "_std"] or 0.0, opt[key + "_std"] or 0.0]
            heights = [v if v is not None else 0.0 for v in values]
            show_errors = max(base["n"], opt["n"]) > 1
            bars = ax.bar(labels, heights, color=[BASELINE_COLOR, OPTIMIZED_COLOR],
                          yerr=errors if show_errors else None, capsize=6, alpha=0.85)
            tops = [h + (e if show_errors else 0.0) for h, e in zip(heights, errors)]
            for bar, value, top in zip(bars, values, tops):
                ax.annotate("n/a" if value is None else f"{value:.4g}", (bar.get_x() + bar.get_width() / 2, top),
                            ha="center", va="bottom", xytext=(0, 3), textcoords="offset points")
            ax.set_ylim(0, (max(tops) or 1.0) * 1.35)  # room for the labels and the annotation
            ax.set_title(name)
            ax.set_ylabel(unit)
            ax.grid(axis="y", alpha=0.3)
            note = None
            if key == "tokens_per_second" and summary["speedup"] is not None:
                ci = summary["speedup_ci95"]
                note = f"speedup {summary['speedup']:.2f}x" + (
                    f" (95% CI {ci[0]:.2f}-{ci[1]:.2f})" if max(base["n"], opt["n"]) > 1 else "")
                note += "\nratio of median tokens/s"
            elif key == "memory_used_mb" and summary["memory_reduction_pct"] is not None:
                note = f"memory reduction {summary['memory_reduction_pct']:.1f}%"
            if note:
                ax.text(0.5, 0.95, note, transform=ax.transAxes, ha="center", va="top", fontsize=12,
                        fontweight="bold", bbox={"boxstyle": "round", "facecolor": "#fff8dc", "alpha": 0.9})
        bars_note = "; bars: medians, error bars: standard deviation" if max(base["n"], opt["n"]) > 1 else ""
        figure.suptitle(f"Optimized vs non-optimized inference: {summary['title']}{bars_note}", fontsize=14)
        figure.tight_layout(rect=(0, 0, 1, 0.96))
        _save(figure, path)
    finally:
        figure.clear()
    return summary


def plot_over_time(runs: list[dict], path: str | os.PathLike) -> None:
    """performance_over_time.png: tokens/s of every optimized (green) and non-optimized (red)
    run against its position in the recording order."""
    usable = [(n, r) for n, r in enumerate(runs, 1) if _usable(r)]
    figure = Figure(figsize=(11, 5.5))
    try:
        ax = figure.subplots()
        for optimized, color, label, marker in ((True, OPTIMIZED_COLOR, "Optimized", "o"),
                                                (False, BASELINE_COLOR, "Non-optimized", "s")):
            points = [(n, finite_number(r["tokens_per_second"])) for n, r in usable if r["optimized"] is optimized]
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, marker=marker, color=color, label=f"{label} ({len(points)} runs)", linewidth=1.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("run (recording order)")
        ax.set_ylabel("tokens per second")
        ax.set_title(f"Performance over time ({len(usable)} runs)")
        ax.grid(alpha=0.3)
        if usable:
            ax.legend()
            ax.set_ylim(bottom=0)
        figure.tight_layout()
        _save(figure, path)
    finally:
        figure.clear()
