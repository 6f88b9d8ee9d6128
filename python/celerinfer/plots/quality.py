"""The quality cost of each version: perplexity and the KL divergence from the baseline."""

from __future__ import annotations

import numpy as np

try:
    from matplotlib.figure import Figure
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("celerinfer.plots needs matplotlib (pip install matplotlib)") from exc

from ..results.fields import finite_number, get
from .figure import finish, log_y, new_figure
from .quality_tradeoffs import version_quality
from .selection import records_of, select_records
from .style import version_color, version_label, versions_order


def plot_quality(records: list[dict], path=None, *, run_id: str | None = None,
                registry=None) -> Figure | None:
    """Perplexity per version (bars; the baseline hatched and drawn as a dashed line) and the KL
    divergence from the baseline's next-token distribution (bars, log scale when the values span
    more than two decades; 0 for the baseline), top-1 agreement written above the bars."""
    recs = select_records(records, run_id)
    data = version_quality(records_of(recs, "perplexity"))
    versions = versions_order(data)
    if not versions:
        return None
    baselines = [get(data[v], "params", "baseline_version") for v in versions]
    baseline = next((b for b in baselines if b), None)
    ppl = {v: finite_number(data[v]["metrics"].get("perplexity")) for v in versions}
    kl = {}
    for v in versions:
        k = finite_number(data[v]["metrics"].get("kl_vs_baseline"))
        kl[v] = 0.0 if (k is None and v == baseline) else k
    top1 = {v: finite_number(data[v]["metrics"].get("top1_agreement")) for v in versions}
    if all(p is None for p in ppl.values()) and all(k is None for k in kl.values()):
        return None
    used = [data[v] for v in versions]
    fig, axes = new_figure(2, width=max(11.0, 1.5 * len(versions) + 6), height=5.4)
    xs = np.arange(len(versions))
    labels = [version_label(v, recs, registry) for v in versions]
    colors = [version_color(v, registry) for v in versions]

    ax = axes[0]
    heights = [ppl[v] if ppl[v] is not None else 0.0 for v in versions]
    bars = ax.bar(xs, heights, color=colors, width=0.6, edgecolor="black", linewidth=0.6, label="_perplexity")
    base_ppl = ppl.get(baseline) if baseline else None
    for bar, v in zip(bars, versions):
        if v == baseline:
            bar.set_hatch("//")
        if ppl[v] is None:
            ax.text(bar.get_x() + bar.get_width() / 2, 0, "n/a", ha="center", va="bottom", fontsize=8)
            continue
        text = f"{ppl[v]:.4g}"
        if base_ppl and v != baseline:
            text += f"\n({(ppl[v] / base_ppl - 1) * 100:+.2f}%)"
        ax.annotate(text, (bar.get_x() + bar.get_width() / 2, ppl[v]), textcoords="offset points",
                    xytext=(0, 3), ha="center", fontsize=7)
    if base_ppl:
        ref = ax.axhline(base_ppl, color="black", linestyle="--", linewidth=1,
                         label=f"baseline {version_label(baseline, recs, registry)}: {base_ppl:.4g}")
        ref.set_gid("baseline")
        ax.legend(fontsize=8, loc="upper right")
    ax.set_ylim(0, max(max(heights), 1e-12) * 1.32)
    ax.set_xticks(xs, labels, fontsize=8, rotation=20 if len(versions) > 4 else 0)
    ax.set_xlabel("version")
    ax.set_ylabel("perplexity (exp of mean NLL per token; lower is better)")
    nt = {finite_number(data[v]["metrics"].get("num_tokens")) for v in versions} - {None}
    ax.set_title("Perplexity" + (f" over {int(max(nt)):,} tokens" if nt else ""), fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)

    ax = axes[1]
    kl_h = [kl[v] if kl[v] is not None else 0.0 for v in versions]
    positive = [k for k in kl_h if k > 0]
    log = len(positive) >= 2 and max(positive) / min(positive) >= 100
    if log:
        log_y(ax)
    bars = ax.bar(xs, kl_h, color=colors, width=0.6, edgecolor="black", linewidth=0.6, label="_kl")
    if log:
        ax.set_ylim(min(positive) / 5, max(positive) * 8)
    elif positive:
        ax.set_ylim(0, max(positive) * 1.25)
    else:
        ax.set_ylim(0, 1)
    bottom = ax.get_ylim()[0]
    for bar, v in zip(bars, versions):
        x = bar.get_x() + bar.get_width() / 2
        if v == baseline:
            bar.set_hatch("//")
        k = kl[v]
        if k is None:
            txt, y = "KL n/a", bottom
        elif k <= 0:
            txt, y = "KL 0" + (" (baseline)" if v == baseline else ""), bottom
        else:
            txt, y = f"{k:.2e}", k
        if top1[v] is not None:
            txt += f"\ntop-1 {top1[v] * 100:.1f}%"
        ax.annotate(txt, (x, y), textcoords="offset points", xytext=(0, 3), ha="center", fontsize=7)
    ax.set_xticks(xs, labels, fontsize=8, rotation=20 if len(versions) > 4 else 0)
    ax.set_xlabel("version")
    ax.set_ylabel("KL(p_baseline ‖ p_version) (nats/token)" + (", log scale" if log else ""))
    ax.set_title(f"Divergence from the baseline {baseline or '?'} (top-1 agreement annotated)", fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
    return finish(fig, "Quality cost of each KV-cache version", used, path)
