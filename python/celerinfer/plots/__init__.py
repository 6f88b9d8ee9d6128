"""Plots of benchmark result records (``docs/results_schema.md``).

``make_plots(records, out_dir)`` writes every plot for which the records hold data and returns
``{plot name: path}``. Each plot is also a function of its own, ``plot_<name>(records, path=None)``,
returning the :class:`matplotlib.figure.Figure` (or ``None`` when the records hold nothing for
it), so notebooks can call them one by one:

=======================  ===========================  ==============================================
name                     function                     records used
=======================  ===========================  ==============================================
``latency_vs_T``         :func:`plot_latency`         latency
``memory_vs_T``          :func:`plot_memory`          memory
``phase_breakdown``      :func:`plot_phase_breakdown` phase
``quality``              :func:`plot_quality`         perplexity
``quality_vs_memory``    :func:`plot_quality_vs_memory`   perplexity (KV bytes per token)
``quality_vs_position``  :func:`plot_quality_vs_position` perplexity (by_position)
``quantization_impact``  :func:`plot_quantization_impact` perplexity of several weight formats
``roofline``             :func:`plot_roofline`        roofline (+ calibrate for missing peaks)
``speedup``              :func:`plot_speedup`         latency (needs v0)
``latency_distribution`` :func:`plot_latency_distribution` latency (per-token samples)
``memory_throughput``    :func:`plot_memory_throughput`   latency + memory, or roofline; calibrate
``param_throughput``     :func:`plot_param_throughput`    latency + memory (packed weight bytes); calibrate
``summary_stats``        :func:`plot_summary_stats`   latency (the largest T of each version)
``tradeoff``             :func:`plot_tradeoff`        latency + memory + perplexity
``backend_comparison``   :func:`plot_compare_backends` compare (bench compare)
``speedup_comparison``   :func:`plot_compare_speedup` compare (celerinfer's ratios)
``device_comparison``    :func:`plot_device_comparison` latency of several machines, or of a sweep
=======================  ===========================  ==============================================

Run selection: by default each benchmark's records come from its latest run (the run whose
newest record has the latest timestamp), so a log holding many runs plots the newest
measurements. ``run_id="all"`` keeps every run (per version and setting the newest record wins)
and ``run_id=<id or unique prefix>`` picks one run. Records of several machines (a sweep across
a cluster), or of a sweep's cells, are faceted: ``make_plots`` writes each machine's and
setting's plots into a folder of their own, and ``device_comparison`` compares them.

Figures are plain :class:`~matplotlib.figure.Figure` objects on an Agg canvas: pyplot and its
global state are never used, so nothing leaks between plots and no display is needed. Every
plot takes ``registry=celerinfer.versions()``, which gives each version its colour and marker
(:mod:`.style`); the plots never import the engine.

The package: :mod:`.style` (version colours, markers, labels), :mod:`.selection` (which
records, and the values read from them), :mod:`.figure` (shared figure helpers), one module per
kind of plot (:mod:`.latency`, :mod:`.memory`, :mod:`.phases`, :mod:`.quality`,
:mod:`.roofline`, :mod:`.tradeoff`, :mod:`.backends`, :mod:`.devices`), :mod:`.catalog` (``PLOTS``,
``make_plots``) and :mod:`.inference_metrics` (the run mode's two plots).
"""

from .backends import plot_compare_backends, plot_compare_speedup
from .catalog import PLOTS, make_plots
from .devices import plot_device_comparison
from .figure import footnote_text
from .latency import plot_latency, plot_latency_distribution, plot_speedup
from .memory import decode_bytes_per_step, plot_memory, plot_memory_throughput, plot_param_throughput
from .phases import PHASES, plot_phase_breakdown
from .quality import plot_quality
from .quality_tradeoffs import plot_quality_vs_memory, plot_quality_vs_position, plot_quantization_impact
from .roofline import plot_roofline
from .selection import select_records
from .summary import plot_summary_stats
from .style import MARKERS, PALETTE, version_color, version_label, version_marker, versions_order
from .tradeoff import plot_tradeoff

__all__ = [
    "MARKERS",
    "PALETTE",
    "PHASES",
    "PLOTS",
    "decode_bytes_per_step",
    "footnote_text",
    "make_plots",
    "plot_compare_backends",
    "plot_compare_speedup",
    "plot_device_comparison",
    "plot_latency",
    "plot_latency_distribution",
    "plot_memory",
    "plot_memory_throughput",
    "plot_param_throughput",
    "plot_phase_breakdown",
    "plot_quality",
    "plot_quality_vs_memory",
    "plot_quality_vs_position",
    "plot_quantization_impact",
    "plot_roofline",
    "plot_speedup",
    "plot_summary_stats",
    "plot_tradeoff",
    "select_records",
    "version_color",
    "version_label",
    "version_marker",
    "versions_order",
]
