"""The Ray executor on a real local Ray cluster (2 CPUs, started by the test): a small grid gives
every cell exactly one valid record, none twice, none lost, the same cells as the local
executor; a worker process killed in the middle of a sweep fails its cell, the sweep goes on,
and the resume gives exactly one record per cell; the command line on the cluster by its
address. Skipped without Ray."""

import os
import signal
import subprocess
import sys
from collections import Counter

import pytest
import yaml

ray = pytest.importorskip("ray", reason="the Ray executor's tests need Ray: pip install 'celerinfer[ray]'")

from celerinfer.results.schema import environment  # noqa: E402
from celerinfer.results.store import read_records  # noqa: E402
from celerinfer.sweep.driver import make_plan, run_plan, sweep_run_id  # noqa: E402
from celerinfer.sweep.grid import expand  # noqa: E402
from celerinfer.sweep.local import LocalExecutor  # noqa: E402
from celerinfer.sweep.ray_executor import RayExecutor  # noqa: E402

pytestmark = pytest.mark.slow

TINY = {"preset": "tiny", "benchmarks": ["latency"], "T_values": [4], "num_warmup_runs": 1, "num_measure_runs": 1,
        "prompt_length": 4, "threads": 1}
GRID = {**TINY, "grid": {"versions": ["v1", "v2"], "weight_dtype": ["f32", "int8"]}}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A Ray cluster of this machine with 2 CPUs (its workers: this Python, this celerinfer);
    the workers' timing lock in the test's folder."""
    saved = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("ray-cache"))
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="warning", log_to_driver=False)
    yield ray
    ray.shutdown()
    if saved is None:
        os.environ.pop("XDG_CACHE_HOME")
    else:
        os.environ["XDG_CACHE_HOME"] = saved


def cells_of(records) -> Counter:
    """How many ok records each (cell, benchmark, version, T) has."""
    return Counter((r["sweep"]["id"], r["benchmark"], r["version"], r["params"]["T"]) for r in records
                   if r["status"] == "ok")


def test_a_ray_sweep_stores_every_cell_once_and_the_same_cells_as_local(cluster, tmp_path):
    sweep = expand(GRID, name="quant")
    ray_log = tmp_path / "ray.jsonl"
    result = run_plan(make_plan(sweep, ray_log), RayExecutor(), progress=False)
    assert result.ran == 4 and not result.failed and not result.interrupted
    records = read_records(ray_log)
    assert len(records) == 4 and set(cells_of(records).values()) == {1}
    assert {r["sweep"]["id"] for r in records} == {c.id for c in sweep.cells}
    env = environment()
    for r in records:  # built on the worker: its host and CPU, this code
        assert r["status"] == "ok" and r["benchmark"] == "latency" and r["metrics"]["total_ms"]["n"] == 1
        assert r["hostname"] == env["hostname"] and r["cpu_model"] == env["cpu_model"]
        assert r["git_commit"] == env["git_commit"] and r["run_id"] == sweep_run_id("quant")
    assert not make_plan(sweep, ray_log).to_run  # a resume has nothing to do
    local_log = tmp_path / "local.jsonl"
    run_plan(make_plan(sweep, local_log), LocalExecutor(), progress=False)
    assert cells_of(read_records(local_log)) == cells_of(records)


def test_a_killed_worker_fails_its_cell_and_the_resume_gives_one_record_per_cell(cluster, tmp_path):
    sweep = expand(GRID, name="quant")
    log = tmp_path / "log.jsonl"
    dispatched = []

    def kill_the_second(cell, info):
        dispatched.append(cell.id)
        if len(dispatched) == 2:  # the worker process running the second cell dies
            os.kill(info["pid"], signal.SIGKILL)

    result = run_plan(make_plan(sweep, log), RayExecutor(on_dispatch=kill_the_second), progress=False)
    assert result.ran == 4 and not result.interrupted
    assert [cell.id for cell, _ in result.failed] == [dispatched[1]]
    assert "worker lost" in result.failed[0][1]
    records = read_records(log)
    failed = [r for r in records if r["status"] == "failed"]
    assert [r["sweep"]["id"] for r in failed] == [dispatched[1]]
    assert failed[0]["hostname"] == environment()["hostname"]  # the lost worker's machine
    assert set(cells_of(records)) == {k for k in cells_of(records) if k[0] != dispatched[1]}
    assert len(cells_of(records)) == 3  # the three other cells, once each
    plan = make_plan(sweep, log)
    assert [c.id for c in plan.to_run] == [dispatched[1]]
    again = run_plan(plan, RayExecutor(), progress=False)
    assert again.ran == 1 and not again.failed
    records = read_records(log)
    assert set(cells_of(records).values()) == {1} and {k[0] for k in cells_of(records)} == {c.id for c in sweep.cells}
    assert not make_plan(sweep, log).to_run


def test_the_command_line_runs_a_sweep_on_a_cluster_given_by_its_address(cluster, tmp_path):
    """`celerinfer sweep --executor ray --address HOST:PORT`: a second driver on the same cluster."""
    address = ray.get_runtime_context().gcs_address
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({**TINY, "name": "cli", "grid": {"versions": ["v1", "v2"]}}))
    log = tmp_path / "log.jsonl"
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "celerinfer", "sweep", str(grid), "--executor", "ray", "--address",
                           address, "--log-file", str(log), "--no-progress"], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "2 cells run (0 failed), 0 skipped" in proc.stdout and "ray: 1 node(s)" in proc.stderr
    records = read_records(log)
    assert len(records) == 2 and set(cells_of(records).values()) == {1}
    assert {tuple(r["sweep"]["cell"]["versions"]) for r in records} == {("v1",), ("v2",)}
