"""`celerinfer sweep GRID.yaml`: a grid of benchmark runs, here or on a Ray cluster, resumable,
every record in one results store."""

from __future__ import annotations

import sys
from pathlib import Path

from .bench_commands import DEFAULT_LOG, cmd_plot

EXECUTORS = ("local", "ray")


def cmd_sweep(args) -> int:
    from ..sweep.driver import format_plan, make_plan, run_plan
    from ..sweep.grid import load_grid

    sweep = load_grid(args.grid, node_label=args.node_label)
    log_file = Path(args.log_file or sweep.log_file or DEFAULT_LOG)
    args.log_file = str(log_file)  # for --plot
    plan = make_plan(sweep, log_file, skip_failed=args.skip_failed)
    if args.executor == "local" and args.address:
        raise ValueError("--address is for --executor ray")
    if args.dry_run:
        print(format_plan(plan, args.executor))
        return 0
    if args.executor == "ray" and plan.to_run:  # nothing to run: no cluster needed
        from ..sweep.ray_executor import RayExecutor, import_ray

        try:
            import_ray()
        except ImportError as exc:  # the ray extra is not installed
            print(f"celerinfer sweep: error: {exc}", file=sys.stderr)
            return 2
        executor = RayExecutor(address=args.address)
    else:
        from ..sweep.local import LocalExecutor

        executor = LocalExecutor()
    print(f"celerinfer sweep {sweep.name}: {len(sweep.cells)} cells, {len(plan.skipped)} in the store, "
          f"{len(plan.to_run)} to run ({args.executor} executor), log {log_file}", file=sys.stderr)
    result = run_plan(plan, executor, progress=False if args.no_progress else None)
    for cell, error in result.failed:
        print(f"failed: cell {cell.index} ({cell.label}): {error}", file=sys.stderr)
    print(f"{result.ran} cells run ({len(result.failed)} failed), {len(plan.skipped)} skipped (in the store); "
          f"{result.records} records appended to {log_file} (run {plan.run_id[:12]})")
    if result.interrupted:
        print(f"interrupted: the {result.ran} finished cells are stored; the same command resumes "
              f"(the cells in progress run again)", file=sys.stderr)
        return 130
    if args.plot:
        args.run_id = plan.run_id  # the whole sweep, every invocation of it at this code
        cmd_plot(args)
    return 1 if result.failed else 0


def add_parser(sub) -> None:
    p = sub.add_parser("sweep", help="run a grid of benchmarks (here or on a Ray cluster), resumable")
    p.add_argument("grid", metavar="GRID.yaml", help="a bench config with benchmarks: and grid: (see the guide)")
    p.add_argument("--dry-run", action="store_true", help="print the cells and which of them would run, and exit")
    p.add_argument("--executor", choices=EXECUTORS, default="local",
                   help="local: one cell at a time in this process (default); ray: across a Ray cluster")
    p.add_argument("--address", help="with --executor ray: the cluster (HEAD:6379; default $RAY_ADDRESS, else the "
                                     "cluster `ray start` started here, else a Ray started for the sweep)")
    p.add_argument("--node-label", help="run every cell on nodes of this hostname, CPU model (a part of it) or "
                                        "custom resource (over the grid's node_label)")
    p.add_argument("--skip-failed", action="store_true", help="do not retry the cells that failed before")
    p.add_argument("--log-file", help=f"results JSONL (default: the grid's log_file, {DEFAULT_LOG})")
    p.add_argument("--no-progress", action="store_true", help="no progress bar: a line per finished cell")
    p.add_argument("--plot", action="store_true", help="make the plots afterwards")
    p.add_argument("--out-dir", help="with --plot: where the plots go (default: <log dir>/plots)")
    p.set_defaults(func=cmd_sweep)
