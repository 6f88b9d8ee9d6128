"""The benchmark suite (``celerinfer bench``): configuration, presets and the runner."""

from .config import BENCHMARKS, load_config
from .presets import PRESETS
from .runner import BenchRun, Interrupted, run_benchmarks

__all__ = ["BENCHMARKS", "PRESETS", "BenchRun", "Interrupted", "load_config", "run_benchmarks"]
