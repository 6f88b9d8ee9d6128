"""The record schema (``docs/results_schema.md``): the common fields every benchmark record
carries, the environment they describe, and how a record becomes one JSON line."""

from __future__ import annotations

import json
import math
import os
import platform
import socket
import subprocess
import uuid
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..package_info import distribution_version, package_version

SCHEMA_VERSION = 1

#: the environment fields of a record, in schema order
ENVIRONMENT_FIELDS = ("hostname", "package_version", "git_commit", "python_version", "numpy_version",
                      "torch_version", "cpu_model", "cpu_count", "device", "gpu_name", "dtype")
#: every common field of a record, in schema order
COMMON_FIELDS = ("schema_version", "record_id", "run_id", "timestamp", "hostname", "package_version",
                 "git_commit", "python_version", "numpy_version", "torch_version", "cpu_model", "cpu_count",
                 "threads", "device", "gpu_name", "dtype", "model", "benchmark", "version", "version_flags",
                 "params", "metrics", "status")
STATUSES = ("ok", "interrupted", "failed")
# fields make_record's **extra may not replace (environment fields such as device / gpu_name may)
_PROTECTED = frozenset(COMMON_FIELDS) - frozenset(ENVIRONMENT_FIELDS)


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


@lru_cache(maxsize=1)
def _environment() -> tuple:
    return (
        ("hostname", socket.gethostname()),
        ("package_version", package_version()),
        ("git_commit", _git_commit(Path(__file__).resolve().parent)),
        ("python_version", platform.python_version()),
        ("numpy_version", np.__version__),
        ("torch_version", distribution_version("torch")),  # never imports torch
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
