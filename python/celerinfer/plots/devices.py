"""The device comparison (seed 004's ``device_comparison.png``): every setting's decode speed
and time to first token on each machine (host and CPU, or GPU) that measured it, side by
side: a sweep's grid across a cluster in one figure."""

from __future__ import annotations

import numpy as np

try:
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("celerinfer.plots needs matplotlib (pip install matplotlib)") from exc

from ..results.fields import finite_number, get, host_label, median_of, sweep_cell_text
from .figure import finish, new_figure
from .selection import T_of, decode_tokens_per_s, error_bars, newest_by, records_of, select_records

#: one colour per machine, in order of appearance
MACHINE_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")


def setting_of(record: dict) -> str:
    """What a latency record measured, in words: a sweep cell's settings (else the model and
    weight format), with the version and T unless the cell's settings name them."""
    cell = get(record, "sweep", "cell")
    cell = cell if isinstance(cell, dict) else {}
    parts = [sweep_cell_text(record)] if cell else [str(get(record, "model", "name") or "?"),
                                                    str(get(record, "model", "weight_dtype") or "")]
    if "versions" not in cell:
        parts.append(str(record.get("version")))
    if "T_values" not in cell:
        parts.append(f"T={T_of(record)}")
    return " ".join(p for p in parts if p)


def _decode_speed(record: dict):
    """(decode tokens/s, (below, above) from the per-token latency's interval, or None)."""
    tps = decode_tokens_per_s(record)
    stat = record["metrics"].get("per_token_ms")
    med = median_of(stat)
    err = error_bars(stat, med) if tps and med else None
    if err is None:
        return tps, None
    batch = finite_number(get(record, "params", "batch_size")) or 1
    fast = med - err[0]
    high = batch * 1e3 / fast if fast > 0 else tps
    low = batch * 1e3 / (med + err[1])
    return tps, (max(tps - low, 0.0), max(high - tps, 0.0))


def _ttft(record: dict):
    stat = record["metrics"].get("ttft_ms")
    med = median_of(stat)
    return med, (error_bars(stat, med) if med is not None else None)


def plot_device_comparison(records: list[dict], path=None, *, run_id: str | None = None,
                           registry=None) -> Figure | None:
    """Decode tokens/s and TTFT per setting (rows), one bar per machine (colour), 95% CI
    whiskers; drawn when the latency records come from two machines or more, or from a sweep
    of two settings or more."""
    recs = records_of(select_records(records, run_id), "latency")
    newest = newest_by(recs, lambda r: (setting_of(r), host_label(r)) if decode_tokens_per_s(r) else None)
    machines = list(dict.fromkeys(h for _, h in newest))
    settings = list(dict.fromkeys(s for s, _ in newest))
    swept = any(isinstance(r.get("sweep"), dict) for r in newest.values())
    if not newest or (len(machines) < 2 and not (swept and len(settings) >= 2)):
        return None
    fig, axes = new_figure(2, width=13, height=max(3.5, 1.6 + 0.28 * len(settings) * len(machines)), sharey=True)
    ys = np.arange(len(settings))[::-1].astype(float)
    height = 0.8 / len(machines)
    panels = (("decode: tokens/s (higher is better)", _decode_speed),
              ("time to first token: ms (lower is better)", _ttft))
    for ax, (title, value) in zip(axes, panels):
        for j, machine in enumerate(machines):
            color = MACHINE_COLORS[j % len(MACHINE_COLORS)]
            for y, setting in zip(ys, settings):
                r = newest.get((setting, machine))
                v, err = value(r) if r is not None else (None, None)
                if v is None:
                    continue
                bar = ax.barh(y + 0.4 - height * (j + 0.5), v, height=0.9 * height, color=color,
                              xerr=None if err is None else [[err[0]], [err[1]]], ecolor="#333333", capsize=2)
                bar.patches[0].set_gid(f"{machine}|{setting}")
                ax.annotate(f"{v:,.0f}" if v >= 100 else f"{v:.3g}", (v + (err[1] if err else 0.0),
                            y + 0.4 - height * (j + 0.5)), textcoords="offset points", xytext=(3, 0), fontsize=7,
                            va="center")
        ax.set_title(title, fontsize=11)
        ax.grid(True, axis="x", alpha=0.3)
        ax.margins(x=0.15)
    axes[0].set_yticks(ys, settings, fontsize=8)
    handles = [Line2D([], [], color=MACHINE_COLORS[j % len(MACHINE_COLORS)], linewidth=8, label=str(m))
               for j, m in enumerate(machines)]
    axes[1].legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="machine",
                   title_fontsize=8)
    return finish(fig, "Device comparison: each setting on each machine", list(newest.values()), path)
