"""Latency plots: total and per-token time against T, the speedup over v0, and the
per-token latency distribution (tail latency)."""

from __future__ import annotations

import numpy as np

try:
    from matplotlib.figure import Figure
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("celerinfer.plots needs matplotlib (pip install matplotlib)") from exc

from ..results.fields import finite_number, median_of
from ..results.speedup import speedup
from .figure import T_axis, finish, legend, log_y_if_wide, new_figure, version_line
from .selection import by_version_and_T, compatible, error_bars, samples_of, select_records, tokens_per_s
from .style import version_color, version_label, version_marker

BASELINE_SPEED_VERSION = "v0"


def plot_latency(records: list[dict], path=None, *, run_id: str | None = None,
                registry=None) -> Figure | None:
    """Median total generation time vs T per version (error bars: ci95 of the median, else std)
    and median per-token (decode step) latency vs T: v0 grows with T (it recomputes the whole
    sequence every step, O(T^2) in total), the cached versions stay nearly flat (O(T))."""
    recs = select_records(records, run_id)
    data = by_version_and_T(recs, "latency")
    panels = (("total_ms", "total generation time (ms)", "Median total time to generate T tokens"),
              ("per_token_ms", "per-token decode latency (ms/token)", "Median per-token latency"))
    series = {key: {} for key, _, _ in panels}
    for v, byT in data.items():
        for key, _, _ in panels:
            pts = [(T, median_of(r["metrics"].get(key)), r["metrics"].get(key)) for T, r in byT.items()]
            pts = [p for p in pts if p[1] is not None]
            if pts:
                series[key][v] = pts
    if not any(series.values()):
        return None
    used = [r for byT in data.values() for r in byT.values()]
    fig, axes = new_figure(2, width=13, height=5.2)
    for ax, (key, ylabel, title) in zip(axes, panels):
        all_y, all_T = [], []
        for v, pts in series[key].items():
            Ts = [p[0] for p in pts]
            ys = [p[1] for p in pts]
            all_y += ys
            all_T += Ts
            color = version_color(v, registry)
            line, = ax.plot(Ts, ys, marker=version_marker(v, registry), color=color,
                            label=version_label(v, recs, registry),
                            linewidth=1.8, markersize=6)
            line.set_gid(v)
            errs = [(T, y, error_bars(st, y)) for T, y, st in pts]
            errs = [e for e in errs if e[2] is not None]
            if errs:
                yerr = np.array([[e[2][0] for e in errs], [e[2][1] for e in errs]])
                ax.errorbar([e[0] for e in errs], [e[1] for e in errs], yerr=yerr, fmt="none",
                            ecolor=color, elinewidth=1.2, capsize=0, alpha=0.8)
        T_axis(ax, all_T)
        log_y_if_wide(ax, all_y)
        ax.set_ylabel(ylabel + (", log scale" if ax.get_yscale() == "log" else ""))
        ax.set_title(title, fontsize=11)
        ax.grid(True, which="major", alpha=0.3)
    legend(axes[0], loc="best", title="version")
    axes[1].text(0.01, 0.99, "error bars: 95% CI of the median (else ±1 std)", transform=axes[1].transAxes,
                 fontsize=7, va="top", color="#555555")
    return finish(fig, "Generation latency vs generated tokens T", used, path)


def _speedup_ci(base: dict, candidate: dict) -> tuple[float, float] | None:
    """The 95% CI of the candidate's speedup over the base from their total-time samples."""
    a, b = samples_of(base["metrics"].get("total_ms")), samples_of(candidate["metrics"].get("total_ms"))
    if a.size < 2 or b.size < 2 or not (a > 0).all() or not (b > 0).all():
        return None
    return speedup(a, b, higher_is_better=False).ci95


def plot_speedup(records: list[dict], path=None, *, run_id: str | None = None,
                 baseline: str = BASELINE_SPEED_VERSION, registry=None) -> Figure | None:
    """Speedup of each version over the baseline v0 (no cache) at each T: the ratio of median
    total times (results/speedup.py), whiskers its bootstrap 95% CI."""
    recs = select_records(records, run_id)
    data = by_version_and_T(recs, "latency")
    base = {T: tokens_per_s(r) for T, r in data.get(baseline, {}).items()}
    lines = {}
    for v, byT in data.items():
        if v == baseline:
            continue
        pts = []
        for T, r in byT.items():
            b, t = base.get(T), tokens_per_s(r)
            if b and t and compatible(r, data[baseline][T]):
                pts.append((T, t / b, _speedup_ci(data[baseline][T], r)))
        if pts:
            lines[v] = pts
    if not lines:
        return None
    used = [r for v in [baseline, *lines] for r in data[v].values()]
    fig, (ax,) = new_figure(1, width=8, height=5.2)
    all_T = []
    for v, pts in lines.items():
        Ts, ys = [p[0] for p in pts], [p[1] for p in pts]
        all_T += Ts
        version_line(ax, v, Ts, ys, recs, registry)
        whiskers = [(T, y, ci) for T, y, ci in pts if ci is not None]
        if whiskers:
            ax.errorbar([w[0] for w in whiskers], [w[1] for w in whiskers],
                        yerr=[[max(y - ci[0], 0.0) for _, y, ci in whiskers],
                              [max(ci[1] - y, 0.0) for _, y, ci in whiskers]],
                        fmt="none", ecolor=version_color(v, registry), elinewidth=1, capsize=3)
        ax.annotate(f"{ys[-1]:.2f}×", (Ts[-1], ys[-1]), textcoords="offset points", xytext=(6, 0),
                    fontsize=8, color=version_color(v, registry), va="center")
    ref = ax.axhline(1.0, color=version_color(baseline, registry), linestyle="--", linewidth=1,
                     label=f"{version_label(baseline, recs, registry)} = 1")
    ref.set_gid("baseline")
    T_axis(ax, all_T)
    ax.set_ylabel(f"speedup vs {baseline} (ratio of median times)")
    ax.set_title(f"Throughput relative to {baseline} (higher is better)", fontsize=11)
    ax.grid(True, alpha=0.3)
    ax.margins(x=0.12)
    legend(ax, loc="best")
    return finish(fig, f"Speedup over {baseline} vs generated tokens T", used, path)


def plot_latency_distribution(records: list[dict], path=None, *, run_id: str | None = None,
                registry=None) -> Figure | None:
    """Per-token (decode step) latency distribution per version at the largest T: box plots of the
    samples (box: quartiles, whiskers: 1.5 IQR, line: the record's median), p90 and p99 marked."""
    recs = select_records(records, run_id)
    data = by_version_and_T(recs, "latency")
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
        samples = samples_of(st)
        med = median_of(st)
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
            lo = finite_number(st.get("min")) if finite_number(st.get("min")) is not None else med
            hi = finite_number(st.get("max")) if finite_number(st.get("max")) is not None else med
            fliers = np.zeros(0)
        stats.append({"label": v, "med": med, "q1": min(q1, med), "q3": max(q3, med), "whislo": min(lo, q1, med),
                      "whishi": max(hi, q3, med), "fliers": fliers})
        p90 = finite_number(st.get("p90"))
        p99 = finite_number(st.get("p99"))
        if p90 is None and samples.size:
            p90 = float(np.percentile(samples, 90))
        if p99 is None and samples.size:
            p99 = float(np.percentile(samples, 99))
        p90s.append(p90)
        p99s.append(p99)
        used.append(r)
    if not stats:
        return None
    fig, (ax,) = new_figure(1, width=max(7.0, 1.3 * len(stats) + 3), height=5.2)
    xs = np.arange(1, len(stats) + 1)
    parts = ax.bxp(stats, positions=xs, widths=0.55, patch_artist=True, showfliers=True,
                   flierprops={"marker": ".", "markersize": 2, "alpha": 0.4},
                   medianprops={"color": "black", "linewidth": 1.6})
    for box, st in zip(parts["boxes"], stats):
        box.set_facecolor(version_color(st["label"], registry))
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
    ax.set_xticks(xs, [version_label(st["label"], recs, registry) for st in stats], fontsize=8)
    values = [st["whislo"] for st in stats] + [st["whishi"] for st in stats] + [y for y in p99s if y]
    log_y_if_wide(ax, values, decades=0.5)
    ax.set_ylabel("per-token decode latency (ms/token)" + (", log scale" if ax.get_yscale() == "log" else ""))
    ax.set_xlabel("version")
    n_samples = [int(samples_of(r["metrics"]["per_token_ms"]).size) for r in used]
    counts = f"{min(n_samples)}" if min(n_samples) == max(n_samples) else f"{min(n_samples)}-{max(n_samples)}"
    ax.set_title(f"Per-token latency distribution at T = {T} ({counts} decode steps per version)"
                 if max(n_samples) else f"Per-token latency at T = {T} (no raw samples: min/median/max)",
                 fontsize=11)
    ax.grid(True, axis="y", alpha=0.3)
    legend(ax, loc="best")
    return finish(fig, "Per-token latency distribution (tail latency)", used, path)
