"""Memory plots: the KV cache, engine buffers and peak RSS against T, and the achieved
memory throughput of decode against the measured bandwidth."""

from __future__ import annotations

import math

import numpy as np

try:
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("celerinfer.plots needs matplotlib (pip install matplotlib)") from exc

from ..results.fields import f32_weight_bytes, finite_number, get, median_of
from .figure import MiB, T_axis, finish, legend, log_y_if_wide, new_figure, version_line
from .selection import (T_of, by_version_and_T, compatible, measured_peaks, newest_by, records_of, select_records)
from .style import version_color, version_key, version_marker, versions_order


def plot_memory(records: list[dict], path=None, *, run_id: str | None = None,
                registry=None) -> Figure | None:
    """KV cache bytes vs T per version (MiB); second panel: engine buffers (solid) and process peak
    RSS (dotted) per version against the model weights (dashed horizontal line)."""
    recs = select_records(records, run_id)
    data = by_version_and_T(recs, "memory")
    if not data:
        return None

    def series(key):
        out = {}
        for v, byT in data.items():
            pts = [(T, finite_number(r["metrics"].get(key))) for T, r in byT.items()]
            pts = [(T, y / MiB) for T, y in pts if y is not None]
            if pts:
                out[v] = pts
        return out

    kv, engine, rss = series("kv_cache_bytes"), series("engine_bytes"), series("peak_rss_bytes")
    if not (kv or engine or rss):
        return None
    weights = [f32_weight_bytes(r) for byT in data.values() for r in byT.values()]
    weights = [w for w in weights if w]
    used = [r for byT in data.values() for r in byT.values()]
    fig, axes = new_figure(2, width=13, height=5.2)
    ax = axes[0]
    all_T = []
    for v, pts in kv.items():
        Ts, ys = [p[0] for p in pts], [p[1] for p in pts]
        all_T += Ts
        version_line(ax, v, Ts, ys, recs, registry)
    T_axis(ax, all_T or [T for byT in data.values() for T in byT])
    ax.set_ylabel("KV cache size (MiB)")
    ax.set_ylim(bottom=0)
    ax.set_title("KV cache bytes held after generating T tokens (scales included)", fontsize=10)
    ax.grid(True, alpha=0.3)
    legend(ax, loc="upper left", title="version")

    ax = axes[1]
    all_T, all_y = [], []
    for style, dataset, kind in (("-", engine, "engine"), (":", rss, "rss")):
        for v, pts in dataset.items():
            Ts, ys = [p[0] for p in pts], [p[1] for p in pts]
            all_T += Ts
            all_y += ys
            line, = ax.plot(Ts, ys, linestyle=style, marker=version_marker(v, registry),
                            color=version_color(v, registry),
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
    T_axis(ax, all_T or [T for byT in data.values() for T in byT])
    log_y_if_wide(ax, all_y, decades=1.5)
    ax.set_ylabel("memory (MiB)" + (", log scale" if ax.get_yscale() == "log" else ""))
    if ax.get_yscale() != "log":
        ax.set_ylim(bottom=0)
    ax.set_title("Engine buffers and peak RSS vs the weights (colors: versions)", fontsize=10)
    ax.grid(True, alpha=0.3)
    if handles:
        ax.legend(handles=handles, fontsize=8, loc="best")
    return finish(fig, "Memory vs generated tokens T", used, path)


def _kv_read_factor(record) -> float:
    """How many times a decode step reads each stored KV byte: 1, or (with cross-layer sharing)
    layers / stored layers, since both layers of a pair attend over the shared cache."""
    if not get(record, "version_flags", "cross_layer_sharing"):
        return 1.0
    layers = finite_number(get(record, "model", "config", "num_hidden_layers"))
    if not layers:
        return 2.0
    return layers / math.ceil(layers / 2)


def weight_bytes_read(memory: dict) -> float | None:
    """The bytes of weights a decode step reads: the engine's packed weights (bf16, int8 and
    4-bit formats are smaller than fp32), else (older records) the fp32 size."""
    return finite_number(get(memory, "metrics", "packed_weight_bytes")) or f32_weight_bytes(memory)


def _decode_series(lat: dict, mem: dict, bytes_of) -> tuple[dict, list]:
    """{version: [(T, GB/s)]} of bytes_of(latency, memory) / the median per-token time, and
    the records used."""
    series, used = {}, []
    for v in versions_order(list(lat) + list(mem)):
        pts = []
        for T, lr in lat.get(v, {}).items():
            mr = mem.get(v, {}).get(T)
            per = median_of(lr["metrics"].get("per_token_ms"))
            if mr is None or not per or not compatible(lr, mr):
                continue
            nbytes = bytes_of(lr, mr)
            if nbytes is None:
                continue
            pts.append((T, nbytes / (per / 1e3) / 1e9))
            used += [lr, mr]
        if pts:
            series[v] = pts
    return series, used


def _throughput_axes(series: dict, recs: list, used: list, registry, ylabel: str, title: str, name: str, path):
    """The line plot of decode GB/s per version against T, with the bandwidth line."""
    bw, _, bw_source = measured_peaks(recs)
    fig, (ax,) = new_figure(1, width=8.5, height=5.2)
    all_T, all_y = [], []
    for v in versions_order(series):
        pts = series[v]
        Ts, ys = [p[0] for p in pts], [p[1] for p in pts]
        all_T += Ts
        all_y += ys
        version_line(ax, v, Ts, ys, recs, registry)
    if bw:
        ref = ax.axhline(bw, color="black", linestyle="--", linewidth=1.3,
                         label=f"memory bandwidth {bw:.3g} GB/s ({bw_source})")
        ref.set_gid("bandwidth")
        all_y.append(bw)
        used = used + [r for r in recs if r.get("benchmark") == "calibrate"]
        if max(all_y) > bw * 1.05:
            ax.text(0.99, 0.01, "above the bandwidth line: the working set fits in the CPU caches",
                    transform=ax.transAxes, ha="right", va="bottom", fontsize=7, color="#555555")
    T_axis(ax, all_T)
    log_y_if_wide(ax, all_y, decades=1.5)
    if ax.get_yscale() != "log":
        ax.set_ylim(bottom=0)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    legend(ax, loc="best")
    return finish(fig, name, used, path)


def plot_param_throughput(records: list[dict], path=None, *, run_id: str | None = None,
                          registry=None) -> Figure | None:
    """Seed 004's parameter throughput: the weights' bytes (packed: what the engine streams)
    read per decode step / the median per-token time, per version against T, beside the
    measured bandwidth. Latency and memory records at the same T."""
    recs = select_records(records, run_id)
    series, used = _decode_series(by_version_and_T(recs, "latency"), by_version_and_T(recs, "memory"),
                                  lambda lr, mr: weight_bytes_read(mr))
    if not series:
        return None
    return _throughput_axes(series, recs, used, registry, "parameter throughput of decode (GB/s of weights)",
                            "Weight bytes read per decode step / step time", "Decode parameter throughput vs T",
                            path)


def decode_bytes_per_step(latency: dict, memory: dict) -> float | None:
    """Bytes a decode step reads: the weights once, plus the KV cache it attends over, averaged over
    the T decode steps (the cache holds P + i positions at step i, on average P + T/2), counted as
    often as it is read (twice per pair with cross-layer sharing)."""
    m = memory["metrics"]
    weight = weight_bytes_read(memory)
    if weight is None:
        return None
    T = T_of(memory)
    P = finite_number(get(memory, "params", "prompt_length")) or 0.0
    batch = finite_number(get(memory, "params", "batch_size")) or 1.0
    per_tok = finite_number(m.get("kv_bytes_per_token"))
    kv_total = finite_number(m.get("kv_cache_bytes"))
    if per_tok is None and kv_total is not None and T:
        cached = P + T - 1
        per_tok = kv_total / (cached * batch) if cached > 0 else 0.0
    if per_tok is None or not T:
        return None
    return weight + per_tok * batch * (P + T / 2.0) * _kv_read_factor(memory)


def plot_memory_throughput(records: list[dict], path=None, *, run_id: str | None = None,
                registry=None) -> Figure | None:
    """Achieved memory throughput of decode per version vs T: bytes read per decode step
    (:func:`decode_bytes_per_step`, from the memory record at the same T) / the median per-token
    time (latency record), against the measured bandwidth (calibrate or roofline records). Without
    latency+memory pairs the roofline decode records' achieved GB/s are shown instead."""
    recs = select_records(records, run_id)
    series, used = _decode_series(by_version_and_T(recs, "latency"), by_version_and_T(recs, "memory"),
                                  decode_bytes_per_step)
    source = "latency + memory records"
    if not series:
        source = "roofline decode records"
        roof = newest_by([r for r in records_of(recs, "roofline") if get(r, "params", "phase") == "decode"],
                       lambda r: (r["version"], T_of(r)) if T_of(r) is not None else None)
        for (v, T), r in sorted(roof.items(), key=lambda kv: (version_key(kv[0][0]), kv[0][1])):
            g = finite_number(r["metrics"].get("achieved_gbps"))
            if g is not None:
                series.setdefault(v, []).append((T, g))
                used.append(r)
    if not series:
        return None
    return _throughput_axes(series, recs, used, registry, "achieved memory throughput of decode (GB/s)",
                            f"Bytes read per decode step (weights + KV cache) / step time  [{source}]",
                            "Decode memory throughput vs generated tokens T", path)
