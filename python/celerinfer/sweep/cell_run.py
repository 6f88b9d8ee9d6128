"""Running one cell where it is sent (this process, or a Ray worker): its benchmarks, under
this machine's timing lock, the records returned to the sweep's driver (which alone writes
the store); a cell that fails returns one ``failed`` record naming the error instead."""

from __future__ import annotations

import fcntl
import os
import sys
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

from ..results.schema import make_record
from .grid import Cell

#: the benchmark name of a failed cell's record
FAILED_BENCHMARK = "sweep"


def payload(cell: Cell, sweep_name: str, run_id: str) -> dict:
    """What a worker needs to run a cell: plain data (it is pickled to Ray workers)."""
    return {"config": cell.config, "benchmarks": list(cell.benchmarks), "run_id": run_id,
            "sweep": sweep_field(cell, sweep_name)}


def sweep_field(cell: Cell, sweep_name: str) -> dict:
    """The ``sweep`` field of a cell's records: which sweep, which cell."""
    return {"name": sweep_name, "id": cell.id, "index": cell.index, "cell": cell.settings, "label": cell.label,
            "node_label": cell.node_label}


def label_matches(label: str | None, hostname: str | None, cpu_model: str | None, resources=()) -> bool:
    """Whether a machine carries a node label: its hostname, a part of its CPU model (any
    case), or the name of a custom resource it has (Ray nodes). No label: every machine."""
    if not label:
        return True
    return label == hostname or label.lower() in str(cpu_model or "").lower() or label in resources


def timing_lock_path() -> Path:
    """``$XDG_CACHE_HOME/celerinfer/timing.lock``, beside the calibration cache."""
    from ..bench.calibration import default_calibration_path

    return default_calibration_path().with_name("timing.lock")


@contextmanager
def machine_lock(path: Path | None = None):
    """This machine's timing lock (an exclusive flock): two sweeps, local or on Ray, never time
    at once on one machine; the second waits, saying so on stderr. Released when the process
    dies, so a killed worker leaves no stale lock."""
    path = path or timing_lock_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another timing run on this machine ({path})", file=sys.stderr)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def failed_record(job: dict, error: str, **where) -> dict:
    """A failed cell's record: benchmark ``sweep``, status ``failed``, the error; ``where``
    overrides the environment fields (a lost worker's hostname and CPU, named by the driver)."""
    config = job["config"]
    return make_record(FAILED_BENCHMARK, None, None, None, dict(job["sweep"]["cell"]), {}, job["run_id"],
                       config.get("threads"), status="failed", sweep=job["sweep"], error=error,
                       benchmarks=list(job["benchmarks"]), **where)


def run_cell(job: dict, lock: bool = True) -> list[dict]:
    """Runs a cell's benchmarks (under the machine's timing lock unless lock=False); returns its
    records (not stored), or one failed record when it raised. Ctrl-C propagates
    (KeyboardInterrupt): the cell is not done."""
    from ..bench.runner import BenchRun, Interrupted
    from ..runtime import get_num_threads, set_num_threads

    start = time.monotonic()
    threads = get_num_threads()  # a cell's `threads` must not leak into the next cell
    cwd = job.get("cwd")  # the driver's folder (relative paths of the config), where it exists here
    if cwd and os.path.isdir(cwd) and os.path.abspath(cwd) != os.getcwd():
        os.chdir(cwd)
    with machine_lock() if lock else nullcontext():
        try:
            bench = BenchRun(job["config"], progress=False, run_id=job["run_id"], write=False,
                             extra={"sweep": job["sweep"]})
            records = bench.run(job["benchmarks"])
        except Interrupted:
            raise KeyboardInterrupt from None
        except Exception as exc:  # the cell failed: recorded, and the sweep goes on
            return [failed_record(job, f"{type(exc).__name__}: {exc}")]
        finally:
            set_num_threads(threads)
    seconds = time.monotonic() - start
    for r in records:
        r["sweep"] = {**r["sweep"], "seconds": round(seconds, 3)}
    return records
