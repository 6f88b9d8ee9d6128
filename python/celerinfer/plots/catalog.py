"""Every plot by name (the file stem) and :func:`make_plots`, which writes those the records
have data for."""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Callable

try:
    from matplotlib.figure import Figure
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("celerinfer.plots needs matplotlib (pip install matplotlib)") from exc

from .backends import plot_compare_backends, plot_compare_speedup
from .devices import plot_device_comparison
from .figure import DPI
from .latency import plot_latency, plot_latency_distribution, plot_speedup
from .memory import plot_memory, plot_memory_throughput, plot_param_throughput
from .phases import plot_phase_breakdown
from .quality import plot_quality
from .quality_tradeoffs import plot_quality_vs_memory, plot_quality_vs_position, plot_quantization_impact
from .roofline import plot_roofline
from .selection import facets, select_records
from .summary import plot_summary_stats
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
    "param_throughput": plot_param_throughput,
    "summary_stats": plot_summary_stats,
    "tradeoff": plot_tradeoff,
    "backend_comparison": plot_compare_backends,
    "speedup_comparison": plot_compare_speedup,
    "device_comparison": plot_device_comparison,
}
#: plots that compare machines: drawn over every machine's records, never one per machine
ACROSS_MACHINES = ("device_comparison",)


def facet_folder(machine: str | None, setting: str, machines: bool, settings: bool) -> str:
    """The folder of one facet's plots, 'host_CPU/weight_dtype=int8' (only the parts that vary),
    anything but letters, digits and '.', '_', '-', '=', ',' replaced by '_'."""
    def slug(text):
        return re.sub(r"[^A-Za-z0-9._=,-]+", "_", text).strip("_")[:80] or "_"

    parts = ([slug(machine or "unknown machine")] if machines else []) + ([slug(setting or "other")] if settings else [])
    return "/".join(parts)


def make_plots(records: list[dict], out_dir, formats=("png",), run_id: str | None = None,
               registry=None) -> dict[str, Path]:
    """Writes every plot the records have data for into out_dir, once per format (png, svg, pdf,
    ...), and returns {plot name: path of its file in the first format}. Plots without data are
    skipped (no file); a plot that fails is reported with a warning and skipped. run_id: see
    :func:`select_records` (default: each benchmark's latest run; ValueError for an unknown id).
    registry: ``celerinfer.versions()``, which gives each version its style (see
    :mod:`celerinfer.plots.style`).

    Records of several machines (hostname and CPU; a sweep across a cluster), or of a sweep's
    cells that differ in more than the versions and T, are faceted (:func:`.selection.facets`):
    each facet's plots go to a folder of their own, ``out_dir/<machine>/<setting>/`` (only the
    parts that vary; named ``"<folder>/<plot>"`` in the result), so that no series mixes
    machines or cells; the plots that compare them (``device_comparison``) are drawn once, over
    all of them, in ``out_dir``."""
    if isinstance(formats, str):
        formats = (formats,)
    formats = [str(f).lower().lstrip(".") for f in formats] or ["png"]
    selected = select_records(records, run_id)
    groups = facets(selected)
    several_machines = len({machine for machine, _ in groups}) > 1
    several_settings = len({setting for _, setting in groups}) > 1
    drawn = [("", selected)] if len(groups) <= 1 else [
        (facet_folder(machine, setting, several_machines, several_settings), recs)
        for (machine, setting), recs in groups.items()]
    out_dir = Path(out_dir)
    written: dict[str, Path] = {}
    for name, func in PLOTS.items():
        for folder, recs in [("", selected)] if name in ACROSS_MACHINES else drawn:
            key = f"{folder}/{name}" if folder else name
            try:
                fig = func(recs, None, run_id="all", registry=registry)
            except Exception as exc:  # one broken plot must not cost the others
                warnings.warn(f"plot {key} failed: {type(exc).__name__}: {exc}", RuntimeWarning, stacklevel=2)
                continue
            if fig is None:
                continue
            target_dir = out_dir / folder if folder else out_dir
            target_dir.mkdir(parents=True, exist_ok=True)
            for fmt in formats:
                target = target_dir / f"{name}.{fmt}"
                fig.savefig(target, dpi=DPI, format=fmt)
                written.setdefault(key, target)
    return written
