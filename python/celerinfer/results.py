"""The results store: benchmark records (``docs/results_schema.md``) in an append-only JSONL log.

Writers only ever append: each batch of records is written as whole lines with one ``write``
under an exclusive ``flock``, so concurrent writers (processes, threads) never interleave or lose
lines, and a writer killed mid-line leaves one damaged line that readers skip with a
:class:`ResultsWarning` (the next writer starts a fresh line after it). Nothing is ever rewritten
or truncated; ``clear_log`` moves the old log aside.
"""

from __future__ import annotations

import csv
import errno
import fcntl
import json
import math
import os
import platform
import socket
import subprocess
import uuid
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

import numpy as np

from .fileio import atomic_file
from .stats import TIME_UNITS, Comparison, compare, format_p

SCHEMA_VERSION = 1

#: the environment fields of a record, in schema order
ENVIRONMENT_FIELDS = ("hostname", "package_version", "git_commit", "python_version", "numpy_version",
                      "torch_version", "cpu_model", "cpu_count", "device", "gpu_name", "dtype")
#: every common field of a record, in schema order
COMMON_FIELDS = ("schema_version", "record_id", "run_id", "timestamp", "hostname", "package_version",
                 "git_commit", "python_version", "numpy_version", "torch_version", "cpu_model", "cpu_count",
                 "threads", "device", "gpu_name", "dtype", "model", "benchmark", "version", "version_flags",
                 "params", "metrics", "status")
STATUSES = ("ok", "interrupted")
# fields make_record's **extra may not replace (environment fields such as device / gpu_name may)
_PROTECTED = frozenset(COMMON_FIELDS) - frozenset(ENVIRONMENT_FIELDS)
# keys holding raw samples, left out of the CSV view
_SAMPLE_KEYS = frozenset({"samples_ns", "samples"})


class ResultsWarning(UserWarning):
    """A results log had damaged lines (skipped)."""


# --------------------------------------------------------------------------------------------
# environment


def _git_commit(source_dir: Path) -> str | None:
    """HEAD of the git checkout holding this package's source files, or None (never raises)."""
    env = dict(os.environ, GIT_OPTIONAL_LOCKS="0", LC_ALL="C")
    for var in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        env.pop(var, None)
    try:
        # the package's own files must be tracked: an installed copy inside some other
        # checkout (a .venv in a repository) is not "a git checkout of the package"
        tracked = subprocess.run(["git", "ls-files", "--error-unmatch", "__init__.py"], cwd=source_dir,
                                 env=env, capture_output=True, text=True, timeout=10)
        if tracked.returncode != 0:
            return None
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=source_dir, env=env, capture_output=True,
                              text=True, timeout=10)
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    commit = head.stdout.strip()
    if head.returncode != 0 or not commit or any(c not in "0123456789abcdef" for c in commit):
        return None
    return commit


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, sep, value = line.partition(":")
                if sep and key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or None


def _metadata_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


@lru_cache(maxsize=1)
def _environment() -> tuple:
    return (
        ("hostname", socket.gethostname()),
        ("package_version", _metadata_version("celerinfer") or "unknown"),
        ("git_commit", _git_commit(Path(__file__).resolve().parent)),
        ("python_version", platform.python_version()),
        ("numpy_version", np.__version__),
        ("torch_version", _metadata_version("torch")),  # never imports torch
        ("cpu_model", _cpu_model()),
        ("cpu_count", os.cpu_count()),
        ("device", "cpu"),
        ("gpu_name", None),
        ("dtype", "float32"),
    )


def environment() -> dict:
    """The environment fields of a record (computed once per process; a fresh dict each call)."""
    return dict(_environment())


# --------------------------------------------------------------------------------------------
# records


def new_run_id() -> str:
    return uuid.uuid4().hex


def utc_timestamp() -> str:
    """Now as ISO 8601 UTC with microseconds, e.g. 2026-11-23T15:20:48.123456+00:00."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def make_record(benchmark: str, version: str | None, version_flags: dict | None, model_info: dict | None,
                params: dict, metrics: dict, run_id: str, threads: int | None, status: str = "ok",
                **extra) -> dict:
    """One result record with every common field of the schema, in schema order.

    ``extra`` adds fields (after the common ones) and may override the environment fields
    (e.g. ``device="cuda", gpu_name=...``), but not the other common fields.
    """
    if not isinstance(benchmark, str) or not benchmark:
        raise ValueError(f"benchmark must be a non-empty string, got {benchmark!r}")
    if version is not None and not isinstance(version, str):
        raise ValueError(f"version must be a string or None, got {version!r}")
    if not isinstance(run_id, str) or not run_id:
        raise ValueError(f"run_id must be a non-empty string, got {run_id!r}")
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
    for name, value in (("params", params), ("metrics", metrics)):
        if not isinstance(value, dict):
            raise ValueError(f"{name} must be a dict, got {type(value).__name__}")
    for name, value in (("version_flags", version_flags), ("model_info", model_info)):
        if value is not None and not isinstance(value, dict):
            raise ValueError(f"{name} must be a dict or None, got {type(value).__name__}")
    clash = sorted(_PROTECTED & extra.keys())
    if clash:
        raise ValueError(f"extra fields may not replace the common fields {clash}")
    env = environment()
    env.update({k: extra.pop(k) for k in list(extra) if k in env})
    record = {
        "schema_version": SCHEMA_VERSION,
        "record_id": uuid.uuid4().hex,
        "run_id": run_id,
        "timestamp": utc_timestamp(),
        **{k: env[k] for k in ENVIRONMENT_FIELDS[:8]},  # hostname .. cpu_count
        "threads": None if threads is None else int(threads),
        **{k: env[k] for k in ENVIRONMENT_FIELDS[8:]},  # device, gpu_name, dtype
        "model": model_info,
        "benchmark": benchmark,
        "version": version,
        "version_flags": version_flags,
        "params": params,
        "metrics": metrics,
        "status": status,
    }
    record.update(extra)
    return record


def to_jsonable(obj):
    """A copy of ``obj`` made of plain JSON types: numpy scalars and arrays become Python values,
    NaN and +-Inf (anywhere, also nested) become None, tuples become lists, paths strings."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, dict):
        return {(k if isinstance(k, str) else str(to_jsonable(k))): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"cannot store a {type(obj).__name__} in a result record: {obj!r}")


def record_line(record: dict) -> bytes:
    """The record as one JSON line (ASCII, ends with a newline, no NaN)."""
    if not isinstance(record, dict):
        raise TypeError(f"a record must be a dict, got {type(record).__name__}")
    return (json.dumps(to_jsonable(record), allow_nan=False, separators=(",", ":")) + "\n").encode("ascii")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:  # pragma: no cover - os.write raises instead
            raise OSError(errno.EIO, "write returned 0")
        view = view[written:]


def append_records(path, records) -> None:
    """Append records to a JSONL log, one line each, as one locked write (see the module doc).

    Every record is serialized before the file is touched, so a record that cannot be stored
    raises without writing anything.
    """
    data = b"".join(record_line(r) for r in records)
    if not data:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                st = os.fstat(fd)
                try:
                    current = os.stat(path)
                except FileNotFoundError:
                    current = None
                if current is None or (current.st_dev, current.st_ino) != (st.st_dev, st.st_ino):
                    continue  # clear_log moved the file aside while we waited: open the new one
                prefix = b""
                if st.st_size > 0 and os.pread(fd, 1, st.st_size - 1) != b"\n":
                    prefix = b"\n"  # a writer died mid-line: keep its fragment on a line of its own
                _write_all(fd, prefix + data)
                os.fsync(fd)
                return
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
    raise OSError(f"{path}: the file kept being replaced while appending")  # pragma: no cover


def append_record(path, record: dict) -> None:
    """Append one record (see :func:`append_records`)."""
    append_records(path, [record])


def read_records(path, benchmark: str | None = None, run_id: str | None = None) -> list[dict]:
    """The records of a JSONL log (a missing file: []), optionally of one benchmark / run.

    Lines that are not JSON objects with a ``schema_version`` are skipped with one
    :class:`ResultsWarning` per call; blank lines are ignored.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_SH)  # a consistent snapshot: no half-written batch
            except OSError:  # a file system without locks: read anyway
                pass
            data = f.read()  # closing the file releases the lock
    except FileNotFoundError:
        return []
    records = []
    damaged, first_damaged = 0, None
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            record = None
        if not isinstance(record, dict) or "schema_version" not in record:
            damaged += 1
            first_damaged = first_damaged or number
            continue
        if benchmark is not None and record.get("benchmark") != benchmark:
            continue
        if run_id is not None and record.get("run_id") != run_id:
            continue
        records.append(record)
    if damaged:
        warnings.warn(f"{path}: skipped {damaged} damaged line{'s' if damaged > 1 else ''} "
                      f"(first at line {first_damaged})", ResultsWarning, stacklevel=2)
    return records


def clear_log(path) -> Path | None:
    """Start a fresh log: move the old one aside to ``<name>.<UTC timestamp>.bak`` (never
    deleted) and return the backup's path; None when there was no log."""
    path = Path(path)
    if not path.exists():
        return None
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    with open(path, "rb") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)  # let a writer in progress finish first
        try:
            for i in range(1000):
                backup = path.with_name(f"{path.name}.{stamp}{'' if i == 0 else f'-{i}'}.bak")
                try:
                    os.link(path, backup)  # never replaces an existing file
                except FileExistsError:
                    continue
                except OSError:  # no hard links here: rename, having checked the name is free
                    if backup.exists():
                        continue
                    os.rename(path, backup)
                    return backup
                os.unlink(path)
                return backup
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    raise FileExistsError(f"no free backup name for {path}")  # pragma: no cover


# --------------------------------------------------------------------------------------------
# CSV view


def flatten(record: dict, prefix: str = "") -> dict:
    """Nested dicts as dotted keys (``metrics.total_ms.median``); raw sample lists left out;
    other lists as JSON text."""
    flat = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if key in _SAMPLE_KEYS and isinstance(value, list):
            continue
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        elif isinstance(value, (list, tuple)):
            flat[name] = json.dumps(to_jsonable(value), allow_nan=False)
        else:
            flat[name] = value
    return flat


def _column_rank(column: str) -> int:
    head = column.split(".", 1)[0]
    return COMMON_FIELDS.index(head) if head in COMMON_FIELDS else len(COMMON_FIELDS)


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    return str(value)


def export_csv(records, path) -> Path:
    """Write records as CSV, one row per record (see :func:`flatten`); the columns are the union
    over the records, the common fields first in schema order, then the others in order of first
    appearance. Written atomically (temporary file + rename)."""
    rows = [flatten(to_jsonable(r)) for r in records]
    seen = {}
    for row in rows:
        for column in row:
            seen.setdefault(column, len(seen))
    columns = sorted(seen, key=lambda c: (_column_rank(c), seen[c]))
    with atomic_file(path, newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_cell(row.get(c)) for c in columns])
    return path


# --------------------------------------------------------------------------------------------
# comparing runs


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    first_timestamp: str
    num_records: int


def list_runs(records) -> list[RunInfo]:
    """The runs in ``records``, oldest first (by the earliest timestamp of each run)."""
    runs: dict[str, list] = {}
    for r in records:
        rid = r.get("run_id")
        if isinstance(rid, str):
            entry = runs.setdefault(rid, [str(r.get("timestamp") or ""), 0])
            entry[0] = min(entry[0], str(r.get("timestamp") or ""))
            entry[1] += 1
    infos = [RunInfo(rid, ts, n) for rid, (ts, n) in runs.items()]
    return sorted(infos, key=lambda i: (i.first_timestamp, i.run_id))


def resolve_run_id(runs: list[RunInfo], spec: str) -> str:
    """A run id from "latest", "previous", a full id or a unique prefix; ValueError otherwise."""
    if not runs:
        raise ValueError("no runs in the results log")
    if spec == "latest":
        return runs[-1].run_id
    if spec == "previous":
        if len(runs) < 2:
            raise ValueError("'previous' needs at least two runs in the results log")
        return runs[-2].run_id
    ids = [r.run_id for r in runs]
    if spec in ids:
        return spec
    matches = [i for i in ids if spec and i.startswith(spec)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise ValueError(f"no run id starts with {spec!r} (runs: {', '.join(i[:8] for i in ids)})")
    raise ValueError(f"run id prefix {spec!r} is ambiguous: {', '.join(matches)}")


@dataclass(frozen=True)
class PairKey:
    """What pairs the records of two runs: benchmark, version and the params without the seed."""

    benchmark: str
    version: str | None
    params: tuple  # sorted (name, value as JSON text) pairs

    def params_text(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.params)


def _pair_key(record: dict) -> PairKey:
    params = record.get("params") or {}
    items = tuple(sorted((str(k), json.dumps(v, sort_keys=True)) for k, v in params.items() if k != "seed"))
    return PairKey(str(record.get("benchmark")), record.get("version"), items)


def metric_samples(record: dict, metric: str) -> tuple[list, str] | None:
    """The raw samples of a statistics object in the record's metrics, in its own unit, and the
    unit; ``metric`` may be dotted (``phases_ms.attention``). None when absent."""
    obj = record.get("metrics")
    for part in metric.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return None
        obj = obj[part]
    if not isinstance(obj, dict):
        return None
    unit = obj.get("unit") or ""
    if isinstance(obj.get("samples_ns"), list):
        scale = TIME_UNITS.get(unit, 1)
        if unit not in TIME_UNITS:
            unit = "ns"
        return [v / scale for v in obj["samples_ns"] if v is not None], unit
    if isinstance(obj.get("samples"), list):
        return [v for v in obj["samples"] if v is not None], unit
    return None


@dataclass
class RunComparison:
    """The result of :func:`compare_runs`: one (key, Comparison) row per setting in both runs."""

    run_a: str
    run_b: str
    metric: str
    unit: str
    lower_is_better: bool = True  # time-like metric: "slower" / "faster"
    rows: list[tuple[PairKey, Comparison]] = field(default_factory=list)
    only_a: list[PairKey] = field(default_factory=list)  # settings with samples in run a only
    only_b: list[PairKey] = field(default_factory=list)

    def __iter__(self):
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)


def compare_runs(path, run_a: str = "previous", run_b: str = "latest", metric: str = "total_ms",
                 benchmark: str | None = None) -> RunComparison:
    """Compare the samples of ``metric`` between two runs of a results log, setting by setting.

    Records are paired by (benchmark, version, params without seed); records of one run sharing
    a key have their samples pooled. Runs are given as ids, unique prefixes, "latest" or
    "previous" (by the runs' first timestamps). b is compared to a (ratio = median_b / median_a).
    """
    records = read_records(path, benchmark=benchmark)
    runs = list_runs(records)
    id_a, id_b = resolve_run_id(runs, run_a), resolve_run_id(runs, run_b)
    pooled: dict[str, dict] = {id_a: {}, id_b: {}}
    unit = ""
    for r in records:
        rid = r.get("run_id")
        if rid not in pooled:
            continue
        found = metric_samples(r, metric)
        if found is None or not found[0]:
            continue
        samples, unit = found[0], unit or found[1]
        pooled[rid].setdefault(_pair_key(r), []).extend(samples)
    a, b = pooled[id_a], pooled[id_b]
    lower = metric.endswith("_ms") or unit in TIME_UNITS
    report = RunComparison(run_a=id_a, run_b=id_b, metric=metric, unit=unit, lower_is_better=lower)
    for key in a:
        if key in b:
            report.rows.append((key, compare(a[key], b[key], label_a="a", label_b="b", lower_is_better=lower)))
        else:
            report.only_a.append(key)
    report.only_b = [k for k in b if k not in a]
    return report


def _direction(ratio: float, lower_is_better: bool) -> str:
    if ratio == 1.0:
        return "same"
    if lower_is_better:
        return "b slower" if ratio > 1.0 else "b faster"
    return "b larger" if ratio > 1.0 else "b smaller"


def format_comparison_report(report: RunComparison) -> str:
    """A readable table of a :class:`RunComparison`."""
    lines = [f"{report.metric}: run a {report.run_a[:12]} vs run b {report.run_b[:12]} "
             f"(ratio = median b / median a; significant: 95% CI excludes 1 and Mann-Whitney p < 0.05)"]
    unit = f" ({report.unit})" if report.unit else ""
    header = ["benchmark", "version", "params", f"median a{unit}", f"median b{unit}", "ratio", "95% CI", "p",
              "verdict"]
    table = [header]
    for key, c in report.rows:
        table.append([key.benchmark, str(key.version), key.params_text() or "-", f"{c.median_a:.4g}",
                      f"{c.median_b:.4g}", f"{c.ratio:.3f}", f"{c.ratio_ci95[0]:.3f}-{c.ratio_ci95[1]:.3f}",
                      format_p(c.p_value).removeprefix("p=").removeprefix("p"),
                      _direction(c.ratio, report.lower_is_better) + ", beyond noise" if c.significant
                      else "within noise"])
    if len(table) == 1:
        lines.append("no setting has samples of this metric in both runs")
    else:
        widths = [max(len(row[i]) for row in table) for i in range(len(header))]
        for j, row in enumerate(table):
            lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
            if j == 0:
                lines.append("  ".join("-" * w for w in widths))
    for name, keys in (("a", report.only_a), ("b", report.only_b)):
        if keys:
            lines.append(f"only in run {name}: " + "; ".join(f"{k.benchmark} {k.version} {k.params_text()}"
                                                          for k in keys))
    return "\n".join(lines)
