"""Seed 004's performance summary (``summary_stats.png``): each version's decode speed with its
95% CI as bars, and beneath them the table of statistics a reader quotes (medians, spread,
tails, sample counts, the noise guard's verdict) at the largest T measured."""

from __future__ import annotations

try:
    from matplotlib.figure import Figure
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("celerinfer.plots needs matplotlib (pip install matplotlib)") from exc

from ..results.fields import finite_number, get, median_of
from .figure import finish, new_figure
from ..results.noise import coefficient_of_variation
from .selection import by_version_and_T, decode_tokens_per_s, samples_of, select_records, tokens_per_s
from .style import version_color, version_label


def _cell(x, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def summary_rows(records: list[dict]) -> list[dict]:
    """One row per version at its largest T: the numbers the plot's table shows."""
    rows = []
    for version, by_T in by_version_and_T(records, "latency").items():
        T = max(by_T)
        r = by_T[T]
        m = r["metrics"]
        per = m.get("per_token_ms")
        rows.append({"version": version, "T": T, "record": r, "decode_tokens_per_s": decode_tokens_per_s(r),
                     "tokens_per_s": tokens_per_s(r), "ttft_ms": median_of(m.get("ttft_ms")),
                     "per_token_ms": median_of(per), "per_token_p90_ms": finite_number(get(per, "p90")),
                     "per_token_ci": (finite_number(get(per, "ci95_low")), finite_number(get(per, "ci95_high"))),
                     "cv": coefficient_of_variation(samples_of(m.get("total_ms"))), "n": get(m, "total_ms", "n"),
                     "noise": get(r, "noise", "verdict")})
    return rows


def plot_summary_stats(records: list[dict], path=None, *, run_id: str | None = None,
                       registry=None) -> Figure | None:
    """Decode tokens/s per version (bars, 95% CI whiskers from the per-token latency's interval)
    at the largest T of the latency records, and the table of medians, p90, CV and n."""
    recs = select_records(records, run_id)
    rows = [row for row in summary_rows(recs) if row["decode_tokens_per_s"]]
    if not rows:
        return None
    fig, (first,) = new_figure(1, width=10, height=5.0 + 0.3 * len(rows))
    first.remove()  # the bars above, the table below
    grid = fig.add_gridspec(2, 1, height_ratios=[3.2, 0.5 + 0.3 * len(rows)])
    ax, table_ax = fig.add_subplot(grid[0]), fig.add_subplot(grid[1])
    table_ax.axis("off")
    xs = list(range(len(rows)))
    heights = [row["decode_tokens_per_s"] for row in rows]
    errors = [[], []]
    for row, h in zip(rows, heights):
        low, high = row["per_token_ci"]
        batch = finite_number(get(row["record"], "params", "batch_size")) or 1
        errors[0].append(max(h - batch * 1e3 / high, 0.0) if high else 0.0)
        errors[1].append(max(batch * 1e3 / low - h, 0.0) if low else 0.0)
    bars = ax.bar(xs, heights, yerr=errors, capsize=5,
                  color=[version_color(row["version"], registry) for row in rows], alpha=0.85)
    for bar, row in zip(bars, rows):
        bar.set_gid(row["version"])
    ax.set_xticks(xs, [version_label(row["version"], recs, registry) for row in rows], fontsize=8, rotation=15)
    ax.set_ylabel("decode tokens/s (median; whiskers: 95% CI)")
    ax.set_title(f"Decode speed at the largest T measured (T = {', '.join(sorted({str(r['T']) for r in rows}))})",
                 fontsize=11)
    ax.grid(True, axis="y", alpha=0.3)
    table = [[row["version"], str(row["T"]), _cell(row["decode_tokens_per_s"], ".1f"), _cell(row["tokens_per_s"], ".1f"),
              _cell(row["ttft_ms"], ".2f"), _cell(row["per_token_ms"], ".3f"), _cell(row["per_token_p90_ms"], ".3f"),
              _cell(row["cv"] and 100 * row["cv"], ".1f"), str(row["n"] or "-"), str(row["noise"] or "-")]
             for row in rows]
    columns = ["version", "T", "decode tok/s", "tok/s (all)", "TTFT ms", "ms/token", "p90 ms/token",
               "CV % (total)", "n", "noise guard"]
    t = table_ax.table(cellText=table, colLabels=columns, loc="center", bbox=[0.0, 0.0, 1.0, 1.0])
    t.auto_set_font_size(False)
    t.set_fontsize(7.5)
    return finish(fig, "Performance summary", [row["record"] for row in rows], path)
