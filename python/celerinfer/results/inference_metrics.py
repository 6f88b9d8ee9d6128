"""The run mode's benchmark folder (``celerinfer run --benchmark``, seed 001).

Its runs are records in the package's one results store, ``results.jsonl`` in the folder
(benchmark ``"run"``, schema ``docs/results_schema.md``); each record carries the seed's run
object whole in its ``run`` field. The seed's files are views of that store, rewritten from it
after every change:

* ``inference_metrics.json``: ``{"runs": [run objects]}``, the seed's JSON shape;
* ``inference_metrics.csv``: the runs as CSV, the seed's columns first (:data:`SEED_CSV_COLUMNS`),
  then every other field (nested objects as ``key.subkey``, lists as JSON);
* ``inference_steps.csv``: seed 004's per-step CSV, one row per generated token
  (:mod:`.step_csv`);
* ``optimization_comparison.png`` and ``performance_over_time.png``, drawn by
  :mod:`celerinfer.plots.inference_metrics` from the same runs (see :meth:`MetricsStore.regenerate`).

Records go into the store as one locked append (:mod:`.store`), so concurrent invocations never
lose runs; the views are written atomically under the folder's lock
(``inference_metrics.json.lock``), so the last writer writes them from every record. A view is
never the only copy of anything: a damaged ``inference_metrics.json`` (not JSON, or not
``{"runs": [...]}``) cannot stop a run being recorded. It is moved aside (kept, never
overwritten) and the folder starts a new series, the seed's rule for a damaged metrics file:
the store's earlier records move to ``results.jsonl.<time>.bak`` (kept, as ``clear_log`` does).
A folder from before the store (``inference_metrics.json`` alone) has its runs imported first.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
import warnings
from pathlib import Path
from typing import Callable

from ..io.atomic import atomic_file
from ..text import printable
from . import bounded_json
from .csv_export import columns_of, csv_text, flatten
from .step_csv import steps_csv_text
from .schema import make_record, new_run_id
from .store import ResultsWarning, append_records, clear_log, probe_writable, read_records, why_unwritable

try:  # POSIX; elsewhere the views are still replaced atomically, only not locked
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

BENCHMARK = "run"
#: the version the seed's comparison measures against: no KV cache
BASELINE_VERSION = "v0"
DEFAULT_BENCHMARK_DIR = "./inference_benchmarks"
STORE = "results.jsonl"
METRICS_JSON = "inference_metrics.json"
METRICS_CSV = "inference_metrics.csv"
STEPS_CSV = "inference_steps.csv"
COMPARISON_PNG = "optimization_comparison.png"
OVER_TIME_PNG = "performance_over_time.png"
#: The seed's CSV columns, always first and in this order; every other field follows.
SEED_CSV_COLUMNS = ("run_name", "timestamp", "optimized", "prompt_length", "generated_length", "total_time",
                    "tokens_per_second", "time_per_token", "memory_used_mb", "device")
#: the seed's measured numbers, also a record's ``metrics`` (what tools reading records look at)
SEED_METRICS = ("total_time", "tokens_per_second", "time_per_token", "memory_used_mb")


# --------------------------------------------------------------------------------------------
# records <-> runs


def run_record(run: dict, version_flags: dict | None = None, model_info: dict | None = None,
               threads: int | None = None, packed_weight_bytes: int | None = None) -> dict:
    """The store's record of one run object: the run whole in ``run``; its version, the pair
    of a benchmark as the record's run_id (the two runs of one comparison share it), whether it
    is the optimized run as ``params``, the seed's numbers (and the engine's packed weight
    bytes, when an engine ran) as ``metrics``."""
    if not isinstance(run, dict):
        raise TypeError(f"a run must be a dict, got {type(run).__name__}")
    version = run.get("version") if isinstance(run.get("version"), str) else None
    metrics = {k: run[k] for k in SEED_METRICS if k in run}
    if packed_weight_bytes is not None:
        metrics["packed_weight_bytes"] = int(packed_weight_bytes)
    return make_record(BENCHMARK, version, version_flags, model_info, {"optimized": run.get("optimized")}, metrics,
                       str(run.get("pair_id") or new_run_id()), threads, run=run)


def runs_of(records: list[dict]) -> list[dict]:
    """The run objects of the run records, in the store's order."""
    return [r["run"] for r in records if r.get("benchmark") == BENCHMARK and isinstance(r.get("run"), dict)]


# --------------------------------------------------------------------------------------------
# the JSON and CSV views


def json_text(value, indent: int = 2, _level: int = 0) -> str:
    """JSON like ``json.dumps(value, indent=indent)``, except that lists of plain values (token
    ids) stay on one line. Non-finite floats are refused (write them as null)."""
    if isinstance(value, dict) and value:
        pad, inner = " " * (indent * _level), " " * (indent * (_level + 1))
        items = [f"{inner}{json.dumps(str(k))}: {json_text(v, indent, _level + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(value, (list, tuple)) and value and any(isinstance(v, (dict, list, tuple)) for v in value):
        pad, inner = " " * (indent * _level), " " * (indent * (_level + 1))
        return "[\n" + ",\n".join(inner + json_text(v, indent, _level + 1) for v in value) + "\n" + pad + "]"
    return json.dumps(value, allow_nan=False, separators=(", ", ": "))


def _runs_problem(data) -> str | None:
    """Why `data` is not a metrics document ({"runs": [run objects]}), or None when it is."""
    if not isinstance(data, dict):
        return f"the top level is a JSON {type(data).__name__}, not an object"
    if not isinstance(data.get("runs"), list):
        return 'there is no "runs" list'
    if not all(isinstance(run, dict) for run in data["runs"]):
        return 'an entry of "runs" is not an object'
    return None


def csv_cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, str):
        return printable(value)  # one spreadsheet row per run: control characters escaped
    return str(value)


def runs_csv_text(runs: list[dict]) -> str:
    """All runs as CSV: the seed's columns first, then every other field (nested objects as
    `key.subkey`, lists as JSON), in first-seen order; booleans as true/false, null as empty."""
    # (each run's step table has a view of its own: inference_steps.csv)
    rows = [flatten({k: v for k, v in run.items() if k != "steps"}, depth=1, drop_samples=False) for run in runs]
    return csv_text(rows, columns_of(rows, first=SEED_CSV_COLUMNS), csv_cell, lineterminator="\n")


# --------------------------------------------------------------------------------------------
# the folder


class MetricsStore:
    """The benchmark folder: the run records (``results.jsonl``) and the views of them.

    warn(message) reports a damaged view moved aside or a view that could not be written
    (default: a :class:`ResultsWarning`); the records are safe either way.
    """

    def __init__(self, directory: str | os.PathLike, warn: Callable[[str], None] | None = None):
        self.directory = Path(directory)
        self.store_path = self.directory / STORE
        self.json_path = self.directory / METRICS_JSON
        self.csv_path = self.directory / METRICS_CSV
        self.lock_path = self.directory / (METRICS_JSON + ".lock")
        self.comparison_path = self.directory / COMPARISON_PNG
        self.over_time_path = self.directory / OVER_TIME_PNG
        self._warn = warn or (lambda message: warnings.warn(message, ResultsWarning, stacklevel=4))

    def check_writable(self) -> None:
        """Raises OSError naming the folder unless its records can be written: called before
        the first measurement (creating nothing in it but the folder itself)."""
        try:
            probe_writable(self.store_path)
        except OSError as exc:
            raise OSError(f"cannot write the benchmark folder {self.directory}: "
                          f"{why_unwritable(self.store_path, exc)}") from None

    @contextlib.contextmanager
    def locked(self):
        """The folder's lock, held while the views are checked, the store grows and the views
        are rewritten (one writer at a time; the store itself needs no lock of ours)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a+b") as fh:
            if fcntl is not None:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                if fcntl is not None:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    # ---- what is there -------------------------------------------------------------------

    def _read_view(self) -> tuple[list | None, str | None]:
        """(the runs of inference_metrics.json, None), or (None, why it is damaged); (None,
        None) when there is none."""
        if not os.path.lexists(self.json_path):
            return None, None
        try:
            data = bounded_json.loads(self.json_path.read_text(encoding="utf-8"))
        except UnicodeDecodeError as exc:
            return None, f"not UTF-8: {exc.reason}"
        except ValueError as exc:
            return None, f"not valid JSON: {exc}"
        except OSError as exc:
            return None, f"unreadable: {exc}"
        problem = _runs_problem(data)
        return (None, problem) if problem else (data["runs"], None)

    def _move_aside(self, reason: str) -> None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        aside = self.directory / f"{METRICS_JSON}.corrupt-{stamp}"
        n = 1
        while aside.exists():
            n += 1
            aside = self.directory / f"{METRICS_JSON}.corrupt-{stamp}-{n}"
        os.replace(self.json_path, aside)
        backup = clear_log(self.store_path)
        kept = f"; the earlier runs are kept in {backup}" if backup else ""
        self._warn(f"{self.json_path} is damaged ({reason}); moved it to {aside} and started a new metrics file{kept}")

    def _prepare_locked(self) -> bool:
        """Before the store changes (lock held): a damaged view is moved aside (a new series
        starts), a folder from before the store has its runs imported. False when a damaged
        view could not be moved aside: it must not be overwritten, so the views are skipped."""
        legacy, problem = self._read_view()
        if problem is not None:
            try:
                self._move_aside(problem)
            except OSError as exc:
                self._warn(f"{self.json_path} is damaged ({problem}) and could not be moved aside ({exc}): "
                           f"the runs are recorded in {self.store_path}, the views are not rewritten")
                return False
        elif legacy and not self.store_path.exists():
            append_records(self.store_path, [run_record(run) for run in legacy])
        return True

    def _rewrite_locked(self, views: bool) -> list[dict]:
        """Every run of the store; the JSON and CSV views rewritten from them unless `views`
        is False. A view that cannot be written costs a warning, never the records."""
        records = read_records(self.store_path, benchmark=BENCHMARK)
        runs = runs_of(records)
        if views:
            try:
                text = json_text({"runs": runs}) + "\n"
                with atomic_file(self.json_path, newline="") as fh:
                    fh.write(text)
                csv = runs_csv_text(runs)
                with atomic_file(self.csv_path, newline="") as fh:
                    fh.write(csv)
                steps = steps_csv_text(records, csv_cell)
                with atomic_file(self.directory / STEPS_CSV, newline="") as fh:
                    fh.write(steps)
            except OSError as exc:
                self._warn(f"could not write the views in {self.directory} ({exc}); "
                           f"the runs are recorded in {self.store_path}")
        return runs

    # ---- changes -------------------------------------------------------------------------

    def append_records(self, records: list[dict]) -> list[dict]:
        """Append run records (:func:`run_record`) to the store, then rewrite the JSON and CSV
        views from it; returns every run. The records are stored even when a view is damaged
        or cannot be written (a warning says so)."""
        with self.locked():
            views = self._prepare_locked()
            append_records(self.store_path, records)
            return self._rewrite_locked(views)

    def append(self, runs: list[dict]) -> list[dict]:
        """Append plain run objects (no version flags or model: e.g. from a script of your own)."""
        return self.append_records([run_record(run) for run in runs])

    def regenerate(self, draw: Callable[[list[dict]], object] | None = None):
        """Rewrite the JSON and CSV views from the store and give every run to `draw` (which
        draws the plots), all under the lock; returns what `draw` returns (None without one)."""
        with self.locked():
            runs = self._rewrite_locked(self._prepare_locked())
            return draw(runs) if draw is not None else None

    def read_runs(self) -> list[dict]:
        """Every recorded run (a damaged view is moved aside first, as before any change)."""
        with self.locked():
            self._prepare_locked()
            return self._runs()

    def _runs(self) -> list[dict]:
        return runs_of(read_records(self.store_path, benchmark=BENCHMARK))
