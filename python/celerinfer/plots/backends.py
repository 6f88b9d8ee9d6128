"""Plots of `bench compare`: every backend's speed on the same weights, and celerinfer's
speed relative to llama.cpp and PyTorch."""

from __future__ import annotations

from typing import Iterable

import numpy as np

try:
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("celerinfer.plots needs matplotlib (pip install matplotlib)") from exc

from ..results.fields import finite_number, get, median_of
from .figure import finish, legend, new_figure
from .selection import error_bars, newest_by, select_records, timestamp_of


BACKEND_COLORS = {"celerinfer": "#1f77b4", "torch": "#ff7f0e", "llama.cpp": "#2ca02c"}
_COMPARE_SPEEDS = (("pp_tokens_per_s", "prefill (pp)"), ("tg_tokens_per_s", "decode (tg)"))


def _compare_records(records: Iterable[dict], run_id: str | None) -> list[dict]:
    """The compare records to plot (one per setup label, the newest), in measurement order."""
    recs = [r for r in select_records(records, run_id) if r.get("benchmark") == "compare"
            and isinstance(r.get("metrics"), dict) and isinstance(get(r, "params", "label"), str)]
    newest = newest_by(recs, lambda r: r["params"]["label"])
    return sorted(newest.values(), key=timestamp_of)


def plot_compare_backends(records: list[dict], path=None, *, run_id: str | None = None,
                registry=None) -> Figure | None:
    """Tokens/s of every setup of `bench compare` (celerinfer, torch, llama.cpp x weight format x
    KV cache): prefill and decode side by side, bars colored by backend, 95% CI whiskers."""
    recs = _compare_records(records, run_id)
    if not recs:
        return None
    fig, axes = new_figure(2, width=12, height=max(3.5, 1.2 + 0.42 * len(recs)), sharey=True)
    ys = np.arange(len(recs))[::-1]
    for ax, (metric, title) in zip(axes, _COMPARE_SPEEDS):
        for y, r in zip(ys, recs):
            stat = r["metrics"].get(metric)
            med = median_of(stat)
            if med is None:
                continue
            backend = r["params"].get("backend")
            err = error_bars(stat, med)
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
    return finish(fig, "Backends on the same weights", recs, path)


def plot_compare_speedup(records: list[dict], path=None, *, run_id: str | None = None,
                registry=None) -> Figure | None:
    """celerinfer's speed relative to llama.cpp's best setup of the same weight format, to
    PyTorch eager fp32 and to PyTorch in the same format (bf16; ratios stored in the compare
    records), for prefill and decode."""
    recs = [r for r in _compare_records(records, run_id) if r["params"].get("backend") == "celerinfer"]
    refs = (("vs_llama_cpp", "vs llama.cpp (best, same format)"), ("vs_torch", "vs PyTorch eager fp32"),
            ("vs_torch_same_format", "vs PyTorch eager bf16"))
    refs = [(key, title) for key, title in refs if any(isinstance(r["metrics"].get(key), dict) for r in recs)]
    if not refs:
        return None
    fig, axes = new_figure(len(refs), width=max(9, 6 * len(refs)), height=max(3.5, 1.4 + 0.5 * len(recs)), sharey=True)
    ys = np.arange(len(recs))[::-1]
    colors = {"pp": "#9467bd", "tg": "#1f77b4"}
    for ax, (key, title) in zip(axes, refs):
        for offset, (phase, label) in ((0.2, ("pp", "prefill (pp)")), (-0.2, ("tg", "decode (tg)"))):
            vals = [finite_number(get(r, "metrics", key, phase)) for r in recs]
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
        legend(ax, loc="best")
    axes[0].set_yticks(ys, [r["params"]["label"].removeprefix("celerinfer ") for r in recs], fontsize=8)
    return finish(fig, "celerinfer relative to llama.cpp and PyTorch", recs, path)
