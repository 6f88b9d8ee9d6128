"""Sweeps (``celerinfer sweep GRID.yaml``): a grid of bench configs, each cell one benchmark
run, here or across the machines of a Ray cluster, every record in one store.

The package: :mod:`.grid` (the grid file, its cells and their ids), :mod:`.driver` (resume
from the store, the plan, the loop that stores each finished cell), :mod:`.cell_run` (running
one cell: its records, or a failed record; the machine's timing lock), :mod:`.local` and
:mod:`.ray_executor` (the executors; Ray is imported only by the latter, when it runs).
"""

from .driver import Plan, SweepResult, cell_states, format_plan, make_plan, run_plan, sweep_run_id
from .grid import Cell, Sweep, expand, load_grid
from .local import LocalExecutor

__all__ = ["Cell", "LocalExecutor", "Plan", "Sweep", "SweepResult", "cell_states", "expand", "format_plan",
           "load_grid", "make_plan", "run_plan", "sweep_run_id"]
