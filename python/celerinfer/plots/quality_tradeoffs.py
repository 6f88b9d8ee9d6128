"""What each KV method and weight format costs in quality, against what it saves: quality vs KV
memory per token, quality vs the position in the window, and the weight formats' perplexity
and speed (seed 004's quantization-impact plot)."""

from __future__ import annotations

import numpy as np

try:
    from matplotlib.figure import Figure
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("celerinfer.plots needs matplotlib (pip install matplotlib)") from exc

from ..results.fields import finite_number, get
from .figure import finish, log_y, new_figure
from .selection import newest_by, records_of, select_records
from .style import version_color, version_label, version_marker, versions_order


def _perplexity_records(records, run_id):
    return records_of(select_records(records, run_id), "perplexity")


def version_quality(records) -> dict[str, dict]:
    """The newest perplexity record per version at the run's reference weight format."""
    same = [r for r in records if get(r, "params", "weight_dtype") in (None, get(r, "params", "baseline_weight_dtype"))]
    return newest_by(same, lambda r: r["version"])


def plot_quality_vs_memory(records: list[dict], path=None, *, run_id: str | None = None,
                           registry=None) -> Figure | None:
    """Per version: KL from the baseline (log y) and the perplexity change, against the KV
    cache's bytes per cached token at the window's length: the trade-off a reader decides from."""
    data = version_quality(_perplexity_records(records, run_id))
    versions = [v for v in versions_order(data)
                if finite_number(data[v]["metrics"].get("kv_cache_bytes_per_token")) is not None]
    if not versions:
        return None
    fig, axes = new_figure(2, width=13.0, height=5.4)
    recs = [data[v] for v in versions]
    base = next((get(r, "params", "baseline_version") for r in recs if get(r, "params", "baseline_version")), None)
    base_ppl = finite_number(data[base]["metrics"].get("perplexity")) if base in data else None
    kls = [max(finite_number(data[v]["metrics"].get("kl_vs_baseline")) or 0.0, 0.0) for v in versions]
    floor = min([k for k in kls if k > 0], default=1e-6) / 10
    for ax, what in zip(axes, ("kl", "ppl")):
        for v, kl in zip(versions, kls):
            m = data[v]["metrics"]
            x = m["kv_cache_bytes_per_token"] / 1024
            y = max(kl, floor) if what == "kl" else (100 * (m["perplexity"] / base_ppl - 1) if base_ppl else None)
            if y is None:
                continue
            ax.scatter([x], [y], color=version_color(v, registry), marker=version_marker(v, registry), s=60,
                       edgecolor="black", linewidth=0.5, zorder=3, label=version_label(v, recs, registry))
            ax.annotate(v, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
        ax.set_xlabel("KV cache per cached token (KiB, scales and windows included)")
        ax.grid(True, alpha=0.3)
    log_y(axes[0])
    axes[0].set_ylabel(f"KL(p_baseline ‖ p_version), nats/token (0 drawn at {floor:.0e})")
    axes[0].set_title("Divergence from the fp32 cache against memory", fontsize=10)
    axes[1].axhline(0, color="black", linewidth=0.8)
    axes[1].set_yscale("symlog", linthresh=0.1)  # a broken method (+1e6 %) next to +0.1 % ones
    axes[1].set_ylabel("perplexity change vs the baseline (%, symlog: linear within ±0.1)")
    axes[1].set_title("Perplexity against memory", fontsize=10)
    axes[1].legend(fontsize=7, loc="best")
    return finish(fig, "Quality against KV memory per method", recs, path)


def plot_quality_vs_position(records: list[dict], path=None, *, run_id: str | None = None,
                             registry=None) -> Figure | None:
    """Per version: KL from the baseline and the NLL, per bucket of positions in the window:
    where quantization and eviction errors grow with the context."""
    data = version_quality(_perplexity_records(records, run_id))
    versions = [v for v in versions_order(data) if get(data[v], "metrics", "by_position", "kl")]
    if not versions:
        return None
    fig, axes = new_figure(2, width=13.0, height=5.4)
    recs = [data[v] for v in versions]
    for v in versions:
        bp = data[v]["metrics"]["by_position"]
        centers = (np.asarray(bp["start"]) + np.asarray(bp["end"])) / 2
        style = dict(color=version_color(v, registry), marker=version_marker(v, registry), markersize=4,
                     label=version_label(v, recs, registry))
        axes[0].plot(centers, np.maximum(bp["kl"], 1e-12), **style)
        axes[1].plot(centers, bp["nll"], **style)
    log_y(axes[0])
    axes[0].set_ylabel("KL from the baseline (nats/token, log)")
    axes[1].set_ylabel("NLL (nats/token)")
    for ax in axes:
        ax.set_xlabel("position in the window (tokens of context)")
        ax.grid(True, alpha=0.3)
    axes[1].legend(fontsize=7, loc="best")
    axes[0].set_title("Divergence by position", fontsize=10)
    axes[1].set_title("Next-token loss by position", fontsize=10)
    return finish(fig, "Quality against context position", recs, path)


def plot_quantization_impact(records: list[dict], path=None, *, run_id: str | None = None,
                             registry=None) -> Figure | None:
    """Per weight format (one version, the baseline's): perplexity with its bootstrap interval,
    KL from the reference format, and the teacher-forced decode speed of the scoring run."""
    recs = _perplexity_records(records, run_id)
    base = [r for r in recs if r["version"] == get(r, "params", "baseline_version") and get(r, "params", "weight_dtype")]
    # one run's formats (their KL shares that run's reference): the newest run that scored several
    runs: dict[str, dict] = {}
    for r in base:
        runs.setdefault(r.get("run_id"), {})[r["params"]["weight_dtype"]] = r
    several = [formats for formats in runs.values() if len(formats) >= 2]
    if not several:
        return None
    data = max(several, key=lambda formats: max(str(r.get("timestamp")) for r in formats.values()))
    formats = list(data)
    fig, axes = new_figure(3, width=15.0, height=5.0)
    xs = np.arange(len(formats))
    ppl = [data[f]["metrics"]["perplexity"] for f in formats]
    ci = [data[f]["metrics"].get("perplexity_ci95") or [p, p] for f, p in zip(formats, ppl)]
    err = np.array([[p - lo for p, (lo, _) in zip(ppl, ci)], [hi - p for p, (_, hi) in zip(ppl, ci)]])
    axes[0].bar(xs, ppl, yerr=err, capsize=4, color="#1f77b4", edgecolor="black", linewidth=0.6)
    axes[0].set_ylabel("perplexity (95% bootstrap interval over windows)")
    axes[0].set_ylim(min(lo for lo, _ in ci) * 0.95, max(hi for _, hi in ci) * 1.03)
    kl = [max(data[f]["metrics"].get("kl_vs_baseline") or 0.0, 1e-12) for f in formats]
    axes[1].bar(xs, kl, color="#ff7f0e", edgecolor="black", linewidth=0.6)
    log_y(axes[1])
    axes[1].set_ylabel("KL from the reference format (nats/token, log)")
    speed = [finite_number(data[f]["metrics"].get("score_tokens_per_s")) or 0.0 for f in formats]
    axes[2].bar(xs, speed, color="#2ca02c", edgecolor="black", linewidth=0.6)
    axes[2].set_ylabel("teacher-forced decode (tokens/s)")
    for ax in axes:
        ax.set_xticks(xs, formats)
        ax.set_xlabel("weight format")
        ax.grid(True, axis="y", alpha=0.3)
    version = data[formats[0]]["version"]
    axes[0].set_title(f"Perplexity ({version} cache)", fontsize=10)
    axes[1].set_title(f"Divergence from {data[formats[0]]['params'].get('baseline_weight_dtype')}", fontsize=10)
    axes[2].set_title("Speed", fontsize=10)
    return finish(fig, "Quantization impact: weight formats", [data[f] for f in formats], path)
