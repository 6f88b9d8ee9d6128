"""Speed, memory and quality in one picture."""

from __future__ import annotations

import math

import numpy as np

try:
    from matplotlib.colors import Normalize, SymLogNorm
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("celerinfer.plots needs matplotlib (pip install matplotlib)") from exc

from ..results.fields import finite_number, get
from .figure import MiB, finish, new_figure
from .selection import by_version_and_T, compatible, decode_tokens_per_s, newest_by, records_of, select_records
from .style import version_color, version_label, versions_order


def plot_tradeoff(records: list[dict], path=None, *, run_id: str | None = None,
                registry=None) -> Figure | None:
    """Speed / memory / quality in one picture: x = KV cache bytes at the largest T that every
    version has in both the latency and memory records (else each version's largest such T),
    y = decode tokens/s there, color = KL divergence from the quality baseline."""
    recs = select_records(records, run_id)
    lat, mem = by_version_and_T(recs, "latency"), by_version_and_T(recs, "memory")
    quality = newest_by(records_of(recs, "perplexity"), lambda r: r["version"])
    if not (lat and mem and quality):
        return None
    pairs = {}
    for v in versions_order(list(lat) + list(mem)):
        Ts = [T for T in lat.get(v, {}) if T in mem.get(v, {}) and compatible(lat[v][T], mem[v][T])]
        Ts = [T for T in Ts if decode_tokens_per_s(lat[v][T])
              and finite_number(mem[v][T]["metrics"].get("kv_cache_bytes"))
              is not None]
        if Ts:
            pairs[v] = set(Ts)
    if not pairs:
        return None
    common = set.intersection(*pairs.values())
    T_used = {v: (max(common) if common else max(Ts)) for v, Ts in pairs.items()}
    versions = list(pairs)
    xs = [mem[v][T_used[v]]["metrics"]["kv_cache_bytes"] / MiB for v in versions]
    ys = [decode_tokens_per_s(lat[v][T_used[v]]) for v in versions]
    kls = [finite_number(quality[v]["metrics"].get("kl_vs_baseline")) if v in quality else None for v in versions]
    baseline = next((get(r, "params", "baseline_version") for r in quality.values()
                     if get(r, "params", "baseline_version")), None)
    kls = [0.0 if (k is None and v == baseline and v in quality) else k for v, k in zip(versions, kls)]
    used = [lat[v][T_used[v]] for v in versions] + [mem[v][T_used[v]] for v in versions] + list(quality.values())
    fig, (ax,) = new_figure(1, width=9, height=6)
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
        ax.annotate(v, (x, y), textcoords="offset points", xytext=(8, 6), fontsize=9, color=version_color(v, registry),
                    fontweight="bold")
        ktxt = "KL n/a" if k is None else ("KL 0" if k <= 0 else f"KL {k:.2g}")
        handles.append(Line2D([], [], linestyle="", marker="o", markersize=7, markerfacecolor="white",
                              markeredgecolor=version_color(v, registry), markeredgewidth=2,
                              label=f"{version_label(v, recs, registry)}: {x:.3g} MiB, {y:,.0f} tok/s, {ktxt}"))
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
    return finish(fig, "Speed / memory / quality trade-off", used, path)
