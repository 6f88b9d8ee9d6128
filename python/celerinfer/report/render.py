"""A report as one self-contained HTML page (plots embedded as base64 PNG, no file or network
reference) and as a PDF of the same (matplotlib's PDF backend: the text pages, then every
plot), both written atomically."""

from __future__ import annotations

import base64
import html
import io
import tempfile
import warnings
from datetime import datetime, timezone
from pathlib import Path

from ..io.atomic import atomic_file
from ..plots.catalog import make_plots
from ..registry import versions
from .content import ReportContent, Table

_STYLE = """
body { font-family: system-ui, -apple-system, Segoe UI, sans-serif; margin: 2em auto; max-width: 1150px;
       color: #222; line-height: 1.45; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 3px 9px; text-align: right; } th { background: #f3f3f3; }
td:first-child, th:first-child { text-align: left; }
.warn { background: #fff4e5; border-left: 4px solid #e69500; padding: 0.5em 1em; }
.muted { color: #666; font-size: 0.85em; }
figure { margin: 1.2em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #555; }
"""


def _table_html(t: Table) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in t.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in t.rows)
    note = f'<p class="muted">{html.escape(t.note)}</p>' if t.note else ""
    return f"<h2>{html.escape(t.title)}</h2><table><tr>{head}</tr>{body}</table>{note}"


def _machine_rows(content: ReportContent) -> Table:
    def f(x, unit):
        return "-" if x is None else f"{x:.2f} {unit}"

    rows = [[m["label"], str(m["cpu"] or "-"), str(m["cpus"] or "-"), ", ".join(map(str, m["threads"])) or "-",
             ", ".join(m["simd"]) or "-", f(m["bandwidth_gbps"], "GB/s"), f(m["read_gbps"], "GB/s"),
             f(m["ceiling_gbps"], "GB/s"), f(m["matmul_gflops"], "GFLOP/s")] for m in content.machines]
    return Table("Machines", ["machine", "CPU", "CPUs", "threads", "SIMD level", "triad (median)",
                              "read stream (median)", "bandwidth ceiling", "matmul peak"], rows,
                 note="ceilings measured by `celerinfer calibrate` or in the run itself; '-': not measured in "
                      "these records")


def render_plots(content: ReportContent) -> dict[str, bytes]:
    """{plot name: PNG bytes} of every plot the records have data for: the benchmarks' (the
    plot catalog) and, for the run mode's records, its two (seed 001's)."""
    from ..plots.inference_metrics import plot_comparison, plot_over_time
    from ..results.inference_metrics import BENCHMARK as RUN_MODE, COMPARISON_PNG, OVER_TIME_PNG, runs_of

    with tempfile.TemporaryDirectory() as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a plot that fails is left out
            written = make_plots([r for r in content.records if r.get("benchmark") != RUN_MODE], tmp, run_id="all",
                                 registry=versions())
        runs = runs_of(content.records)
        if runs:
            for name, draw in ((COMPARISON_PNG, plot_comparison), (OVER_TIME_PNG, plot_over_time)):
                draw(runs, Path(tmp) / name)
                written[name.removesuffix(".png")] = Path(tmp) / name
        return {name: Path(path).read_bytes() for name, path in written.items()}


def html_text(content: ReportContent, pngs: dict[str, bytes]) -> str:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(content.title)}"
             f"</title><style>{_STYLE}</style></head><body>",
             f"<h1>{html.escape(content.title)}</h1>",
             f'<p class="muted">made {now} from runs {html.escape(", ".join(r[:12] for r in content.runs))}</p>']
    if content.warnings:
        items = "".join(f"<li>{html.escape(w)}</li>" for w in content.warnings)
        parts.append(f'<div class="warn"><b>Noise guard: {len(content.warnings)} figure(s) not trustworthy</b>'
                     f"<ul>{items}</ul></div>")
    parts.append("<h2>What was compared</h2><ul>" + "".join(f"<li>{html.escape(c)}</li>" for c in content.compared)
                 + "</ul>")
    parts.append(_table_html(_machine_rows(content)))
    parts.extend(_table_html(t) for t in content.tables)
    if pngs:
        parts.append("<h2>Plots</h2>")
        for name, data in pngs.items():
            b64 = base64.b64encode(data).decode("ascii")
            parts.append(f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{b64}">'
                         f"<figcaption>{html.escape(name)}</figcaption></figure>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_html(content: ReportContent, path, pngs: dict[str, bytes] | None = None) -> Path:
    text = html_text(content, render_plots(content) if pngs is None else pngs)
    with atomic_file(path, newline="") as f:
        f.write(text)
    return Path(path)


def _text_pages(content: ReportContent) -> list[list[str]]:
    """The report's text as pages of lines (monospace, ~110 columns, ~60 lines a page)."""
    lines = [content.title, ""]
    if content.warnings:
        lines += [f"NOISE GUARD: {len(content.warnings)} figure(s) not trustworthy:"] + [f"  {w}" for w in content.warnings] + [""]
    lines += ["What was compared:"] + [f"  {c}" for c in content.compared] + [""]
    for t in [_machine_rows(content), *content.tables]:
        widths = [max(len(str(x)) for x in col) for col in zip(t.columns, *t.rows)]
        lines.append(t.title)
        for row in [t.columns, *t.rows]:
            lines.append("  " + "  ".join(str(x).ljust(w) for x, w in zip(row, widths)))
        lines.append("")
    return [lines[i:i + 60] for i in range(0, len(lines), 60)]


def write_pdf(content: ReportContent, path, pngs: dict[str, bytes] | None = None) -> Path:
    """The report as a PDF: text pages (tables in monospace), then one page per plot."""
    from matplotlib.backends.backend_pdf import PdfPages
    from matplotlib.figure import Figure
    from matplotlib.image import imread

    pngs = render_plots(content) if pngs is None else pngs
    buffer = io.BytesIO()
    with PdfPages(buffer, metadata={"Title": content.title, "Creator": "celerinfer report"}) as pdf:
        for page in _text_pages(content):
            fig = Figure(figsize=(11.69, 8.27))  # A4 landscape
            fig.text(0.03, 0.97, "\n".join(page), family="monospace", fontsize=6.8, va="top", ha="left")
            pdf.savefig(fig)
        for name, data in pngs.items():
            fig = Figure(figsize=(11.69, 8.27))
            ax = fig.add_axes((0.02, 0.02, 0.96, 0.92))
            ax.imshow(imread(io.BytesIO(data), format="png"))
            ax.axis("off")
            fig.suptitle(name, fontsize=10)
            pdf.savefig(fig)
    with atomic_file(path, mode="wb") as f:
        f.write(buffer.getvalue())
    return Path(path)
