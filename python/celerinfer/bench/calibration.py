"""Machine calibration: the memory bandwidth and matmul throughput the roofline model compares
the engine against, measured on this machine with the engine's own threads.

* ``bandwidth_gbps``: a STREAM-style triad ``a = b + 3 c`` over three float32 arrays, counting
  ``3 * 4 * n`` bytes per repetition as STREAM does (two reads, one write; the write-allocate
  read of ``a`` is not counted, so the figure is comparable with STREAM's "Triad" column and
  somewhat below what the memory system really moves).
* ``read_bandwidth_gbps``: a read-only stream over one array of the same working set (what a
  decode step does with its weights: it reads them and writes almost nothing), and
  ``bandwidth_ceiling_gbps``, the best repetition of either: the upper bound a decode's weight
  traffic can be judged against (a figure above it means the calibration is wrong).
* ``matmul_gflops``: the engine's GEMM (``cpu::matmul_nt``, the one prefill runs) on a
  ``matmul_size`` cube of random float32 data, ``2 * n^3`` flops per repetition: the peak this
  engine reaches here, not the CPU's theoretical FMA peak.

Both are statistics objects (``celerinfer.results.stats.summarize``, unit GB/s or GFLOP/s, raw values
in ``samples``). A calibration is cached per host and thread count (:func:`save_calibration`,
:func:`load_calibration`, default file :func:`default_calibration_path`) so benchmarks can
reuse it.
"""

from __future__ import annotations

import json
import math
import os
import socket
import warnings
from datetime import datetime, timezone
from pathlib import Path

from .. import _core
from ..io.atomic import atomic_file
from ..results import bounded_json
from ..results.stats import summarize

MIB = 1 << 20
#: the smallest default triad working set (three arrays of 64 MiB)
MIN_TRIAD_MIB = 64 * 3
CACHE_FORMAT = "celerinfer-calibration"
CACHE_FORMAT_VERSION = 1


def last_level_cache_bytes() -> int | None:
    """The largest CPU cache of this machine in bytes (Linux sysfs), or None when unknown."""
    best = None
    root = Path("/sys/devices/system/cpu/cpu0/cache")
    try:
        entries = sorted(root.glob("index*"))
    except OSError:
        return None
    for entry in entries:
        try:
            text = (entry / "size").read_text().strip().upper()
        except OSError:
            continue
        scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
        digits = text[:-1] if text[-1:] in "KMG" else text
        if digits.isdigit():
            size = int(digits) * scale
            best = size if best is None else max(best, size)
    return best


def default_triad_mib() -> float:
    """The default triad working set: four times the last-level cache (STREAM's rule of thumb,
    so no array can stay cached), at least 3 x 64 MiB, at most a quarter of physical memory."""
    llc = last_level_cache_bytes() or 0
    want = max(MIN_TRIAD_MIB, math.ceil(4 * llc / MIB))
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        want = min(want, max(MIN_TRIAD_MIB, physical // 4 // MIB))
    except (OSError, ValueError, AttributeError):
        pass
    return float(want)


def calibrate(threads: int | None = None, triad_mib: float | None = None, matmul_size: int = 1024,
              reps: int = 10) -> dict:
    """Measure this machine's memory bandwidth and the engine's matmul peak.

    threads: engine threads to measure with (None: the current setting; the previous setting
    is restored afterwards). triad_mib: the triad's working set, all three arrays, in MiB
    (None: :func:`default_triad_mib`). matmul_size: n of the n x n x n GEMM. reps: timed
    repetitions of each (after one warm-up).

    Returns ``{"bandwidth_gbps": stats, "read_bandwidth_gbps": stats, "bandwidth_ceiling_gbps",
    "matmul_gflops": stats, "threads", "triad_bytes", "read_floats",
    "triad_floats", "matmul_size", "reps", "hostname", "timestamp"}``.
    """
    if triad_mib is None:
        triad_mib = default_triad_mib()
    if not (isinstance(triad_mib, (int, float)) and math.isfinite(triad_mib) and triad_mib > 0):
        raise ValueError(f"triad_mib must be a positive number, got {triad_mib!r}")
    if int(matmul_size) < 1:
        raise ValueError(f"matmul_size must be >= 1, got {matmul_size}")
    if int(reps) < 1:
        raise ValueError(f"reps must be >= 1, got {reps}")
    n_floats = max(1, int(triad_mib * MIB) // (3 * 4))
    read_floats = max(1024, 3 * n_floats)  # the read stream: the triad's working set in one array
    size = int(matmul_size)

    previous = _core.get_num_threads()
    if threads is not None:
        if int(threads) < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        _core.set_num_threads(int(threads))
    try:
        used = _core.get_num_threads()
        bandwidth = _core.stream_triad(n_floats=n_floats, reps=int(reps))
        read = _core.stream_read(n_floats=read_floats, reps=int(reps))
        gflops = _core.matmul_gflops(size, size, size, int(reps))
    finally:
        if threads is not None and int(threads) != previous:
            _core.set_num_threads(previous)
    return {
        "bandwidth_gbps": summarize(bandwidth, unit="GB/s", raw_unit=None),
        "read_bandwidth_gbps": summarize(read, unit="GB/s", raw_unit=None),
        "bandwidth_ceiling_gbps": max(max(bandwidth), max(read)),
        "matmul_gflops": summarize(gflops, unit="GFLOP/s", raw_unit=None),
        "threads": used,
        "triad_bytes": 3 * 4 * n_floats,
        "triad_floats": n_floats,
        "read_floats": read_floats,
        "matmul_size": size,
        "reps": int(reps),
        "hostname": socket.gethostname(),
        "timestamp": datetime.now(timezone.utc).isoformat(),
    }


# -- the cache ----------------------------------------------------------------------------------

def default_calibration_path() -> Path:
    """``$XDG_CACHE_HOME/celerinfer/calibration.json`` (XDG_CACHE_HOME: an absolute path, else
    ``~/.cache``)."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".cache"
    return root / "celerinfer" / "calibration.json"


def _read_entries(path: Path) -> list[dict]:
    """The calibrations stored in `path` ([] when there is no file; a warning when it is damaged)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    try:
        data = bounded_json.loads(text)
        if not (isinstance(data, dict) and data.get("format") == CACHE_FORMAT and isinstance(data.get("entries"), list)):
            raise ValueError("not a celerinfer calibration file")
    except ValueError as exc:
        warnings.warn(f"ignoring the damaged calibration cache {path}: {exc}", RuntimeWarning, stacklevel=3)
        return []
    return [e for e in data["entries"] if isinstance(e, dict)]


def save_calibration(result: dict, path: str | os.PathLike | None = None) -> Path:
    """Store `result` (from :func:`calibrate`) in the cache file, replacing an earlier entry of
    the same host and thread count and keeping the others. The file is replaced atomically."""
    path = Path(path) if path is not None else default_calibration_path()
    for key in ("bandwidth_gbps", "matmul_gflops", "threads"):
        if key not in result:
            raise ValueError(f"not a calibration result: no {key!r}")
    entry = dict(result)
    entry.setdefault("hostname", socket.gethostname())
    entry["threads"] = int(entry["threads"])
    entries = [e for e in _read_entries(path)
               if not (e.get("hostname") == entry["hostname"] and e.get("threads") == entry["threads"])]
    entries.append(entry)
    payload = json.dumps({"format": CACHE_FORMAT, "format_version": CACHE_FORMAT_VERSION, "entries": entries},
                         indent=1, allow_nan=False)
    with atomic_file(path) as f:
        f.write(payload)
    return path


def load_calibration(path: str | os.PathLike | None = None, threads: int | None = None,
                     hostname: str | None = None) -> dict | None:
    """The cached calibration of this host (or `hostname`) measured with `threads` threads (None:
    the engine's current count), or None when there is none. A damaged file gives None and a
    RuntimeWarning."""
    path = Path(path) if path is not None else default_calibration_path()
    host = hostname if hostname is not None else socket.gethostname()
    want = int(threads) if threads is not None else _core.get_num_threads()
    for entry in reversed(_read_entries(path)):
        if entry.get("hostname") == host and entry.get("threads") == want:
            if isinstance(entry.get("bandwidth_gbps"), dict) and isinstance(entry.get("matmul_gflops"), dict):
                return entry
    return None


def cached_calibration(threads: int | None = None, path: str | os.PathLike | None = None, refresh: bool = False,
                       **kwargs) -> dict:
    """The cached calibration for this host and thread count; measured and saved when there is
    none (or `refresh`). kwargs go to :func:`calibrate`."""
    if not refresh:
        found = load_calibration(path, threads=threads)
        if found is not None:
            return found
    result = calibrate(threads=threads, **kwargs)
    save_calibration(result, path)
    return result
