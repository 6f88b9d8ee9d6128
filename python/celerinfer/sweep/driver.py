"""The sweep's driver: which cells the store already holds (resume), the plan, and the loop
that hands cells to an executor and appends each finished cell's records to the store, one
locked batch per cell, so that a cell is in the store whole or not at all."""

from __future__ import annotations

import hashlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..results.fields import get
from ..results.schema import environment
from ..results.store import append_records, read_records
from .cell_run import FAILED_BENCHMARK
from .grid import Cell, Sweep

DEFAULT_LOG = "results/results.jsonl"


def code_version(env: dict | None = None) -> tuple:
    """What "the same code" means for resuming: (git commit, package version) of a record or
    of this process's environment (the commit is null outside a git checkout)."""
    env = env if env is not None else environment()
    return env.get("git_commit"), env.get("package_version")


def sweep_run_id(name: str, code: tuple | None = None) -> str:
    """The run id of every record of a sweep: the same for every invocation (a resume joins
    the run it continues) until the code changes (a new commit starts a new run, which
    ``compare-runs`` then compares with the old one)."""
    text = "\0".join(["celerinfer-sweep", name, *(str(c) for c in (code or code_version()))])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass
class CellState:
    """What the store says of a cell: done (its records are there), failed before (and how
    often: the last error), or new."""

    done: bool = False
    failures: int = 0
    last_error: str | None = None


def cell_states(sweep: Sweep, records, code: tuple | None = None) -> dict[str, CellState]:
    """{cell id: CellState} from the store's records of this sweep measured by this code."""
    code = code or code_version()
    states = {c.id: CellState() for c in sweep.cells}
    for r in records:
        cid = get(r, "sweep", "id")
        if cid not in states or get(r, "sweep", "name") != sweep.name or code_version(r) != code:
            continue
        if r.get("status") == "failed":
            states[cid].failures += 1
            states[cid].last_error = r.get("error")
        else:
            states[cid].done = True
    return states


@dataclass
class Plan:
    """The cells to run now and those skipped (done before, or failed before with --skip-failed)."""

    sweep: Sweep
    log_file: Path
    run_id: str
    states: dict[str, CellState]
    to_run: list[Cell] = field(default_factory=list)
    skipped: list[Cell] = field(default_factory=list)


def make_plan(sweep: Sweep, log_file, skip_failed: bool = False) -> Plan:
    log_file = Path(log_file)
    states = cell_states(sweep, read_records(log_file))
    plan = Plan(sweep, log_file, sweep_run_id(sweep.name), states)
    for cell in sweep.cells:
        state = states[cell.id]
        skip = state.done or (skip_failed and state.failures > 0)
        (plan.skipped if skip else plan.to_run).append(cell)
    return plan


def format_plan(plan: Plan, executor: str) -> str:
    """The table `sweep --dry-run` prints: every cell, its id and whether it runs."""
    cells = plan.sweep.cells
    lines = [f"sweep {plan.sweep.name}: {len(cells)} cells, {len(cells) - len(plan.to_run)} in the store, "
             f"{len(plan.to_run)} to run ({executor} executor); benchmarks "
             f"{' '.join(cells[0].benchmarks) if cells else '-'}; log {plan.log_file}; run {plan.run_id[:12]}"]
    to_run = {c.id for c in plan.to_run}
    for cell in cells:
        state = plan.states[cell.id]
        status = "done" if state.done else ("skip (failed)" if cell.id not in to_run else
                                            f"run (failed {state.failures}x before)" if state.failures else "run")
        where = f"  [node {cell.node_label}]" if cell.node_label else ""
        lines.append(f"  {cell.index:>4}  {cell.id}  {status:<22}{cell.label}{where}")
    return "\n".join(lines)


@dataclass
class SweepResult:
    ran: int = 0
    failed: list = field(default_factory=list)  # (cell, error)
    records: int = 0
    interrupted: bool = False


def _eta(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class _Progress:
    """A bar with the cell in progress and an ETA (tqdm's, from the cells' pace), or one line
    per finished cell when bars are off."""

    def __init__(self, total: int, enabled: bool | None):
        from tqdm import tqdm

        self.total, self.done, self.start = total, 0, time.monotonic()
        if enabled is None:
            enabled = sys.stderr.isatty()
        self.bar = tqdm(total=total, desc="sweep", unit="cell", leave=False, dynamic_ncols=True,
                        file=sys.stderr) if enabled else None

    def started(self, cell: Cell, where: str = "") -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"{cell.label}{where}")

    def finished(self, cell: Cell, status: str, where: str = "") -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
            return
        elapsed = time.monotonic() - self.start
        eta = elapsed / self.done * (self.total - self.done)
        print(f"[{self.done}/{self.total}] {status:<6} {cell.label}{where} (ETA {_eta(eta)})", file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_plan(plan: Plan, executor, progress: bool | None = None) -> SweepResult:
    """Runs the plan's cells through ``executor`` (``.run(jobs, on_start)`` yields ``(cell,
    records, where)`` as cells finish) and appends each cell's records as they come. Ctrl-C
    stops: the finished cells are stored, the ones in progress run again next time."""
    from .cell_run import payload

    result = SweepResult()
    jobs = [(cell, payload(cell, plan.sweep.name, plan.run_id)) for cell in plan.to_run]
    bar = _Progress(len(jobs), progress)
    try:
        for cell, records, where in executor.run(jobs, bar.started):
            append_records(plan.log_file, records)
            result.ran += 1
            result.records += len(records)
            failed = [r for r in records if r.get("benchmark") == FAILED_BENCHMARK and r.get("status") == "failed"]
            if failed:
                result.failed.append((cell, failed[0].get("error")))
            bar.finished(cell, "failed" if failed else "ok", where)
    except KeyboardInterrupt:
        result.interrupted = True
    finally:
        bar.close()
    return result
