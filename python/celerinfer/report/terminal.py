"""A run in the terminal (``celerinfer show``, seed 004's ASCII view): the report's tables and,
for the speeds, memory and quality, horizontal bars scaled to the terminal's width."""

from __future__ import annotations

import shutil

from ..plots.selection import by_version_and_T, decode_tokens_per_s
from ..results.fields import finite_number, get, median_of
from .content import ReportContent, Table

_EIGHTHS = " ▏▎▍▌▋▊▉█"


def bar(value: float, largest: float, width: int, ascii_only: bool = False) -> str:
    """A horizontal bar of `width` cells at most, value / largest of it (eighths of a cell)."""
    if not largest or value is None or value <= 0:
        return ""
    cells = max(0.0, min(1.0, value / largest)) * width
    if ascii_only:
        return "#" * max(1, round(cells))
    full, part = int(cells), int(round((cells - int(cells)) * 8))
    if part == 8:
        full, part = full + 1, 0
    return "█" * full + (_EIGHTHS[part] if part else "") or "▏"


def bar_chart(title: str, items: list[tuple[str, float | None, str]], width: int, ascii_only: bool) -> list[str]:
    """Lines: the title, then 'label | bar value text' per item."""
    items = [(label, v, text) for label, v, text in items if finite_number(v) is not None]
    if not items:
        return []
    label_w = max(len(label) for label, _, _ in items)
    text_w = max(len(text) for _, _, text in items)
    room = max(10, width - label_w - text_w - 6)
    largest = max(v for _, v, _ in items)
    lines = [title]
    for label, v, text in items:
        lines.append(f"  {label.ljust(label_w)} │{bar(v, largest, room, ascii_only).ljust(room)} {text.rjust(text_w)}")
    return lines + [""]


def _table_lines(t: Table) -> list[str]:
    widths = [max(len(str(x)) for x in col) for col in zip(t.columns, *t.rows)]
    out = [t.title]
    for i, row in enumerate([t.columns, *t.rows]):
        out.append("  " + "  ".join(str(x).rjust(w) if j else str(x).ljust(w) for j, (x, w) in enumerate(zip(row, widths))))
        if i == 0:
            out.append("  " + "  ".join("-" * w for w in widths))
    return out + [""]


def show_text(content: ReportContent, width: int | None = None, ascii_only: bool = False) -> str:
    width = width or shutil.get_terminal_size((100, 40)).columns
    recs = content.records
    lines = [content.title, "=" * min(width, len(content.title)), ""]
    for m in content.machines:
        ceiling = f", bandwidth ceiling {m['ceiling_gbps']:.1f} GB/s" if m["ceiling_gbps"] else ""
        lines.append(f"machine: {m['label']}, threads {', '.join(map(str, m['threads'])) or '-'}{ceiling}")
    lines += [f"  {c}" for c in content.compared] + [""]
    latency = by_version_and_T(recs, "latency")
    items = []
    for version, by_T in latency.items():
        T = max(by_T)
        r = by_T[T]
        flag = "  (noisy)" if get(r, "noise", "verdict") == "untrustworthy" else ""
        tps = decode_tokens_per_s(r)
        items.append((f"{version} T={T}", tps, f"{tps:.1f} tok/s{flag}" if tps else "-"))
    lines += bar_chart("decode speed (median tokens/s, the largest T)", items, width, ascii_only)
    memory = by_version_and_T(recs, "memory")
    items = [(version, finite_number(by_T[max(by_T)]["metrics"].get("kv_bytes_per_token")),
              f"{finite_number(by_T[max(by_T)]['metrics'].get('kv_bytes_per_token')) or 0:.0f} B/token")
             for version, by_T in memory.items()]
    lines += bar_chart("KV cache bytes per token", items, width, ascii_only)
    quality = [r for r in recs if r.get("benchmark") == "perplexity" and isinstance(r.get("metrics"), dict)]
    items = [(f"{r.get('version')} {get(r, 'params', 'weight_dtype') or ''}".strip(),
              finite_number(r["metrics"].get("perplexity")), f"ppl {finite_number(r['metrics'].get('perplexity')) or 0:.3f}")
             for r in quality]
    lines += bar_chart("perplexity (lower is better)", items, width, ascii_only)
    compare = [r for r in recs if r.get("benchmark") == "compare" and isinstance(r.get("metrics"), dict)]
    items = [(str(get(r, "params", "label")), median_of(r["metrics"].get("tg_tokens_per_s")),
              f"{median_of(r['metrics'].get('tg_tokens_per_s')) or 0:.2f} tok/s") for r in compare]
    lines += bar_chart("decode speed by backend (bench compare)", items, width, ascii_only)
    for t in content.tables:
        lines += _table_lines(t)
    if content.warnings:
        lines.append(f"noise guard: {len(content.warnings)} figure(s) not trustworthy:")
        lines += [f"  {w}" for w in content.warnings]
    return "\n".join(lines).rstrip() + "\n"
