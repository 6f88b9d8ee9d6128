"""The local executor: the cells one after another in this process (one timing run at a time
on this machine: the machine's timing lock also keeps other sweeps out). A cell pinned to a
node label this machine does not carry (its hostname, a part of its CPU model) is recorded as
failed, not measured here."""

from __future__ import annotations

from ..results.schema import environment
from .cell_run import failed_record, label_matches, run_cell


class LocalExecutor:
    name = "local"

    def run(self, jobs, on_start):
        """Yields (cell, records, where) per cell, in order; Ctrl-C propagates."""
        env = environment()
        for cell, job in jobs:
            if not label_matches(cell.node_label, env["hostname"], env["cpu_model"]):
                error = (f"this machine ({env['hostname']}, {env['cpu_model']}) does not match node_label "
                         f"{cell.node_label!r}: run the sweep with --executor ray on a cluster that has such a node")
                yield cell, [failed_record(job, error)], ""
                continue
            on_start(cell, "")
            yield cell, run_cell(job), ""
