"""The Ray executor: the cells across the machines of a Ray cluster.

One worker per node: an actor pinned to the node (``NodeAffinitySchedulingStrategy``, not
soft) that reserves all of the node's CPUs and GPUs, so nothing else Ray schedules runs beside
it, and that is given one cell at a time, so two timing runs never share a machine. Each cell
is one call of its actor (a Ray task): its records are built on the worker, naming the
worker's host and CPU, and returned to the driver, the only writer of the store.

A cell goes to an idle node that matches it: ``device: cuda`` needs a node with a GPU;
``node_label`` (a grid key, or ``--node-label``) is the node's hostname, a part of its CPU model
(``EPYC``, ``Xeon Platinum 8480``) or a custom resource the node was started with
(``ray start --resources '{"fast": 1}'``). A cell no node matches is recorded as failed.

A lost worker (its process killed, its node gone) fails the cell it ran: the cell is recorded
as failed with the error, the sweep goes on (Ray restarts the actor on a live node; a node that
loses three cells in a row, or leaves the cluster, gets no more cells), and the next
invocation runs the cell again. Nodes that join while the sweep runs get cells too.

``ray`` is an optional dependency (``pip install 'celerinfer[ray]'``), imported here only when
this executor runs.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field

from .cell_run import failed_record, label_matches, run_cell

INSTALL_HINT = "pip install 'celerinfer[ray]'"
#: consecutive lost cells after which a node gets no more cells
MAX_LOSSES = 3


def import_ray():
    try:
        import ray
    except ImportError as exc:
        raise ImportError(f"the ray executor needs Ray, which is not installed: {INSTALL_HINT}") from exc
    return ray


class CellWorker:
    """The actor of one node (made remote when the executor starts)."""

    def info(self) -> dict:
        from ..results.schema import environment

        env = environment()
        return {k: env[k] for k in ("hostname", "cpu_model", "cpu_count", "git_commit", "package_version")} | {
            "pid": os.getpid()}

    def run(self, job: dict) -> list[dict]:
        return run_cell(job)


@dataclass
class Node:
    """A node of the cluster and its worker."""

    node_id: str
    resources: dict
    actor: object
    info_ref: object = None
    info: dict | None = None
    busy: bool = False
    losses: int = 0
    dropped: bool = False

    @property
    def hostname(self) -> str:
        return str((self.info or {}).get("hostname") or self.node_id[:8])

    def where(self) -> dict:
        """The environment fields naming this node (for a record the driver writes for it)."""
        return {k: (self.info or {}).get(k) for k in ("hostname", "cpu_model", "cpu_count")}

    def matches(self, cell) -> bool:
        if cell.config.get("device") == "cuda" and not self.resources.get("GPU"):
            return False
        info = self.info or {}
        return label_matches(cell.node_label, info.get("hostname"), info.get("cpu_model"),
                             [k for k, v in self.resources.items() if v])


@dataclass
class RayExecutor:
    """address: the cluster's (``HEAD:6379``, ``auto``); None: ``$RAY_ADDRESS``, else the
    cluster ``ray start`` started on this machine, else a Ray started for the sweep (and shut
    down after it); a Ray already initialized in this process is used as it is. on_dispatch(cell, node info): called after each
    cell is sent (tests kill a worker from it)."""

    address: str | None = None
    refresh_s: float = 5.0
    start_timeout_s: float = 300.0
    on_dispatch: object = None
    name: str = "ray"
    nodes: dict = field(default_factory=dict)

    def _connect(self):
        ray = import_ray()
        self._started = False
        if not ray.is_initialized():
            ray.init(address=self.address, include_dashboard=False, logging_level="warning")
            self._started = True
        return ray

    def _refresh(self, ray, code) -> None:
        """Workers for new nodes; nodes that left are dropped; a worker whose code differs from
        the driver's is dropped with a message (its records could never resume this sweep)."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        alive = {n["NodeID"]: n for n in ray.nodes() if n.get("Alive")}
        for node_id, node in self.nodes.items():
            if node_id not in alive and not node.dropped:
                node.dropped = True
                print(f"node {node.hostname} left the cluster", file=sys.stderr)
        if getattr(self, "_remote", None) is None:
            self._remote = ray.remote(max_restarts=MAX_LOSSES, max_task_retries=0)(CellWorker)
        remote = self._remote
        for node_id, n in alive.items():
            res = n.get("Resources") or {}
            if node_id in self.nodes or not res.get("CPU"):  # a node without CPUs (a bare head) runs nothing
                continue
            strategy = NodeAffinitySchedulingStrategy(node_id, soft=False)
            actor = remote.options(num_cpus=res["CPU"], num_gpus=res.get("GPU", 0),
                                   scheduling_strategy=strategy).remote()
            self.nodes[node_id] = Node(node_id, dict(res), actor, info_ref=actor.info.remote())
        starting = [n for n in self.nodes.values() if n.info is None and not n.dropped]
        deadline = time.monotonic() + self.start_timeout_s
        while starting:
            ready, _ = ray.wait([n.info_ref for n in starting], num_returns=len(starting),
                                timeout=max(deadline - time.monotonic(), 0.0))
            for n in starting:
                if n.info_ref in ready:
                    try:
                        n.info = ray.get(n.info_ref)
                    except ray.exceptions.RayError as exc:  # e.g. celerinfer is not installed there
                        n.info, n.dropped = {}, True
                        print(f"the worker on node {n.node_id[:8]} failed to start ({type(exc).__name__}: "
                              f"{_first_line(exc)}): it gets no cells", file=sys.stderr)
                        continue
                    if (n.info.get("git_commit"), n.info.get("package_version")) != code:
                        n.dropped = True
                        print(f"node {n.hostname} runs other code (commit {n.info.get('git_commit')}, celerinfer "
                              f"{n.info.get('package_version')}) than this driver: it gets no cells", file=sys.stderr)
                        ray.kill(n.actor)
            starting = [n for n in starting if n.info is None]
            if time.monotonic() >= deadline:
                for n in starting:
                    n.dropped = True
                    ray.kill(n.actor)
                    print(f"the worker on node {n.node_id[:8]} did not start in {self.start_timeout_s:g} s: it gets "
                          f"no cells", file=sys.stderr)
                break

    def _usable(self):
        return [n for n in self.nodes.values() if n.info is not None and not n.dropped]

    def run(self, jobs, on_start):
        """Yields (cell, records, where) as cells finish, in any order."""
        from .driver import code_version

        ray = self._connect()
        code = code_version()
        pending, running = list(jobs), {}
        try:
            self._refresh(ray, code)
            refreshed = time.monotonic()
            print(f"ray: {len(self._usable())} node(s): " + "; ".join(
                f"{n.hostname} ({n.info.get('cpu_model')}, {n.resources.get('CPU'):g} CPUs"
                + (f", {n.resources['GPU']:g} GPUs" if n.resources.get("GPU") else "") + ")"
                for n in self._usable()), file=sys.stderr)
            while pending or running:
                if time.monotonic() - refreshed > self.refresh_s:
                    self._refresh(ray, code)
                    refreshed = time.monotonic()
                for cell, job in list(pending):
                    candidates = [n for n in self._usable() if n.matches(cell)]
                    if not candidates:
                        pending.remove((cell, job))
                        yield cell, [failed_record(job, self._no_node_message(cell))], ""
                        continue
                    idle = [n for n in candidates if not n.busy]
                    if idle:
                        node = idle[0]
                        node.busy = True
                        pending.remove((cell, job))
                        running[node.actor.run.remote(dict(job, cwd=os.getcwd()))] = (cell, job, node)
                        on_start(cell, f" on {node.hostname}")
                        if self.on_dispatch is not None:
                            self.on_dispatch(cell, dict(node.info))
                if not running:
                    continue
                ready, _ = ray.wait(list(running), num_returns=1, timeout=self.refresh_s)
                for ref in ready:
                    cell, job, node = running.pop(ref)
                    node.busy = False
                    try:
                        records = ray.get(ref)
                        node.losses = 0
                    except ray.exceptions.RayError as exc:
                        records = [failed_record(job, _lost_message(exc, node), **node.where())]
                        self._lost(ray, node)
                    yield cell, records, f" on {node.hostname}"
        finally:
            for node in self.nodes.values():
                try:
                    ray.kill(node.actor)
                except Exception:  # noqa: BLE001 - already gone
                    pass
            self.nodes.clear()
            if self._started:
                ray.shutdown()

    def _lost(self, ray, node: Node) -> None:
        node.losses += 1
        alive = any(n["NodeID"] == node.node_id and n.get("Alive") for n in ray.nodes())
        if not alive or node.losses >= MAX_LOSSES:
            node.dropped = True
            why = "left the cluster" if not alive else f"lost {node.losses} cells in a row"
            print(f"node {node.hostname} {why}: it gets no more cells", file=sys.stderr)

    def _no_node_message(self, cell) -> str:
        nodes = "; ".join(f"{n.hostname} ({n.info.get('cpu_model')}"
                          + (", GPU" if n.resources.get("GPU") else "") + ")" for n in self._usable()) or "none"
        need = [f"node_label {cell.node_label!r}"] if cell.node_label else []
        if cell.config.get("device") == "cuda":
            need.append("a GPU")
        return f"no node of the cluster has {' and '.join(need) or 'room for it'} (nodes: {nodes})"


def _first_line(exc) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else ""


def _lost_message(exc, node: Node) -> str:
    return f"worker lost on {node.hostname}: {type(exc).__name__}: {_first_line(exc)}"
