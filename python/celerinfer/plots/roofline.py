"""The roofline: each version's prefill and decode against the measured ceilings."""

from __future__ import annotations

import math

try:
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("celerinfer.plots needs matplotlib (pip install matplotlib)") from exc

from ..results.fields import finite_number, get, median_of
from .figure import clusters, finish, new_figure, stacked_labels
from .selection import measured_peaks, newest_by, records_of, select_records
from .style import ROOFLINE_PHASE_MARKERS, version_color, version_key, version_label, versions_order


def plot_roofline(records: list[dict], path=None, *, run_id: str | None = None,
                registry=None) -> Figure | None:
    """Log-log roofline: the measured memory-bandwidth slope (peak_gbps * intensity) and compute
    ceiling (peak_gflops) of the records (or the calibrate record), each (version, phase) a point
    at (arithmetic intensity, achieved GFLOP/s), annotated with its fraction of the ceiling that
    limits it at that intensity."""
    recs = select_records(records, run_id)
    data = newest_by(records_of(recs, "roofline"), lambda r: (r["version"], str(get(r, "params", "phase"))))
    points = []
    for (v, phase), r in data.items():
        m = r["metrics"]
        ai = finite_number(m.get("arithmetic_intensity"))
        if ai is None and finite_number(m.get("flops")) and finite_number(m.get("bytes")):
            ai = m["flops"] / m["bytes"]
        gf = finite_number(m.get("achieved_gflops"))
        t = median_of(m.get("time_ms"))
        if gf is None and finite_number(m.get("flops")) and t:
            gf = m["flops"] / (t / 1e3) / 1e9
        if ai and gf and ai > 0 and gf > 0:
            points.append((v, phase, ai, gf, r))
    if not points:
        return None
    points.sort(key=lambda p: (version_key(p[0]), p[1]))
    bw, fl, source = measured_peaks(recs)
    used = [p[4] for p in points]
    fig, (ax,) = new_figure(1, width=9.5, height=6.2)
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
        col = ax.scatter([ai], [gf], color=version_color(v, registry), marker=ROOFLINE_PHASE_MARKERS.get(phase, "D"),
                         s=60, edgecolors="black", linewidths=0.6, zorder=4)
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
    stacked_labels(ax, [(p[2], p[3]) for p in points], labels, [version_color(p[0], registry) for p in points],
                    clusters(logs, 0.35, 0.35), log=True)
    y_all = gfs + ([fl] if fl else []) + ([bw * x_lo] if bw else [])
    ax.set_ylim(min(y_all) / 4, max(y_all) * 4)
    ax.set_xlim(x_lo, x_hi)
    ax.set_xlabel("arithmetic intensity (flop/byte)")
    ax.set_ylabel("achieved performance (GFLOP/s)")
    ax.set_title("Roofline: prefill vs decode per version (ceilings measured on this machine)", fontsize=10)
    ax.grid(True, which="both", alpha=0.25)
    handles, _ = ax.get_legend_handles_labels()
    for v in versions_order([p[0] for p in points]):
        handles.append(Line2D([], [], linestyle="", marker="o", color=version_color(v, registry),
                              label=version_label(v, recs, registry)))
    for phase in sorted({p[1] for p in points}):
        handles.append(Line2D([], [], linestyle="", marker=ROOFLINE_PHASE_MARKERS.get(phase, "D"), color="white",
                              markeredgecolor="black", label=phase))
    ax.legend(handles=handles, fontsize=8, loc="upper left")
    if not (bw or fl):
        ax.text(0.99, 0.01, "no measured peaks in the records: ceilings not drawn", transform=ax.transAxes,
                ha="right", va="bottom", fontsize=8, color="#8b0000")
    used += [r for r in recs if r.get("benchmark") == "calibrate"]
    return finish(fig, "Roofline (measured ceilings)", used, path)
