"""Every plot by name (the file stem) and :func:`make_plots`, which writes those the records
have data for."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable

try:
    from matplotlib.figure import Figure
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("celerinfer.plots needs matplotlib (pip install matplotlib)") from exc

from .backends import plot_compare_backends, plot_compare_speedup
from .figure import DPI
from .latency import plot_latency, plot_latency_distribution, plot_speedup
from .memory import plot_memory, plot_memory_throughput
from .phases import plot_phase_breakdown
from .quality import plot_quality
from .quality_tradeoffs import plot_quality_vs_memory, plot_quality_vs_position, plot_quantization_impact
from .roofline import plot_roofline
from .selection import select_records
from .tradeoff import plot_tradeoff


#: plot name (the file stem) -> plot function
PLOTS: dict[str, Callable[..., Figure | None]] = {
    "latency_vs_T": plot_latency,
    "memory_vs_T": plot_memory,
    "phase_breakdown": plot_phase_breakdown,
    "quality": plot_quality,
    "quality_vs_memory": plot_quality_vs_memory,
    "quality_vs_position": plot_quality_vs_position,
    "quantization_impact": plot_quantization_impact,
    "roofline": plot_roofline,
    "speedup": plot_speedup,
    "latency_distribution": plot_latency_distribution,
    "memory_throughput": plot_memory_throughput,
    "tradeoff": plot_tradeoff,
    "compare_backends": plot_compare_backends,
    "compare_speedup": plot_compare_speedup,
}


def make_plots(records: list[dict], out_dir, formats=("png",), run_id: str | None = None,
               registry=None) -> dict[str, Path]:
    """Writes every plot the records have data for into out_dir, once per format (png, svg, pdf,
    ...), and returns {plot name: path of its file in the first format}. Plots without data are
    skipped (no file); a plot that fails is reported with a warning and skipped. run_id: see
    :func:`select_records` (default: each benchmark's latest run; ValueError for an unknown id).
    registry: ``celerinfer.versions()``, which gives each version its style (see
    :mod:`celerinfer.plots.style`)."""
    if isinstance(formats, str):
        formats = (formats,)
    formats = [str(f).lower().lstrip(".") for f in formats] or ["png"]
    selected = select_records(records, run_id)
    out_dir = Path(out_dir)
    written: dict[str, Path] = {}
    for name, func in PLOTS.items():
        try:
            fig = func(selected, None, run_id="all", registry=registry)
        except Exception as exc:  # one broken plot must not cost the others
            warnings.warn(f"plot {name} failed: {type(exc).__name__}: {exc}", RuntimeWarning, stacklevel=2)
            continue
        if fig is None:
            continue
        out_dir.mkdir(parents=True, exist_ok=True)
        for fmt in formats:
            target = out_dir / f"{name}.{fmt}"
            fig.savefig(target, dpi=DPI, format=fmt)
            written.setdefault(name, target)
    return written
