"""`celerinfer sweep`: a grid file expanded to cells, validated before anything runs, the plan
(`--dry-run`), the local executor, resuming from the store (done cells skipped, an interrupted
cell run again, failed cells recorded and retried), and sweeps' records in compare-runs and
the plots (one machine per series). The Ray executor: tests/test_sweep_ray.py."""

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from celerinfer import plots
from celerinfer.cli import main
from celerinfer.results.run_comparison import compare_runs, format_comparison_report
from celerinfer.results.schema import environment, make_record
from celerinfer.results.stats import summarize
from celerinfer.results.store import append_records, read_records
from celerinfer.sweep import cell_run, local
from celerinfer.sweep.driver import format_plan, make_plan, run_plan, sweep_run_id
from celerinfer.sweep.grid import expand, load_grid
from celerinfer.sweep.local import LocalExecutor

#: a tiny cell: one latency record per version, in a fraction of a second
TINY = {"preset": "tiny", "benchmarks": ["latency"], "T_values": [4], "num_warmup_runs": 1, "num_measure_runs": 1,
        "prompt_length": 4, "threads": 1}
GRID = {**TINY, "grid": {"versions": ["v1", "v2"], "weight_dtype": ["f32", "int8"]}}
NO_T = {k: v for k, v in TINY.items() if k != "T_values"}


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """The machine's timing lock in the test's own folder."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def write_grid(folder: Path, spec: dict, name: str = "grid.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def sweep_cli(*args, cwd, check=True):
    env = {**os.environ, "XDG_CACHE_HOME": str(Path(cwd) / "cache")}
    proc = subprocess.run([sys.executable, "-m", "celerinfer", "sweep", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def ok_records(log):
    return [r for r in read_records(log) if r.get("status") == "ok"]


def per_cell(records) -> Counter:
    """How many records each (cell, benchmark, version, T) has."""
    return Counter((r["sweep"]["id"], r["benchmark"], r["version"], r["params"].get("T")) for r in records)


# ---- the grid ----------------------------------------------------------------------------------

def test_the_grid_is_the_product_and_each_value_of_a_list_key_is_one_cell():
    sweep = expand(GRID, name="quant")
    assert [c.settings for c in sweep.cells] == [
        {"versions": ["v1"], "weight_dtype": "f32"}, {"versions": ["v1"], "weight_dtype": "int8"},
        {"versions": ["v2"], "weight_dtype": "f32"}, {"versions": ["v2"], "weight_dtype": "int8"}]
    for cell in sweep.cells:
        assert cell.config["versions"] == cell.settings["versions"]
        assert cell.config["weight_dtype"] == cell.settings["weight_dtype"]
        assert cell.config["preset"] == "tiny" and cell.config["model"] is None and cell.config["T_values"] == [4]
        assert cell.benchmarks == ("latency",)
    assert sweep.cells[1].label == "versions=v1 weight_dtype=int8"
    assert len({c.id for c in sweep.cells}) == 4
    # a list value is one cell's list; nested keys are dotted; no grid: one cell
    spec = {**TINY, "grid": {"versions": [["v1", "v2"], "v5"], "perplexity.sequence_length": [16, 24]}}
    cells = expand(spec).cells
    assert [c.config["versions"] for c in cells] == [["v1", "v2"], ["v1", "v2"], ["v5"], ["v5"]]
    assert [c.config["perplexity"]["sequence_length"] for c in cells] == [16, 24, 16, 24]
    assert cells[0].config["perplexity"]["data"] == "licenses"  # the rest of the section stays
    assert len(expand(TINY).cells) == 1


def test_a_cell_id_is_what_it_measures_and_the_same_in_another_process():
    ids = [c.id for c in expand(GRID).cells]
    assert ids == [c.id for c in expand(dict(GRID, log_file="elsewhere.jsonl")).cells]  # not a measured setting
    assert ids != [c.id for c in expand(dict(GRID, num_measure_runs=2)).cells]
    pinned = expand(GRID, node_label="EPYC").cells
    assert all(c.node_label == "EPYC" for c in pinned) and ids != [c.id for c in pinned]
    code = ("import json, sys; from celerinfer.sweep.grid import expand; "
            "print(json.dumps([c.id for c in expand(json.loads(sys.argv[1])).cells]))")
    other = subprocess.run([sys.executable, "-c", code, json.dumps(GRID)], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": "123"})
    assert json.loads(other.stdout) == ids


@pytest.mark.parametrize("spec, message", [
    ({**TINY, "T_valuez": [4]}, r"unknown key\(s\) \['T_valuez'\]"),
    ({**TINY, "grid": {"weight_dtypes": ["f32"]}}, "grid: unknown key 'weight_dtypes'"),
    ({**TINY, "grid": {"weight_dtype": "int8"}}, "grid: weight_dtype must be a non-empty list"),
    ({**TINY, "grid": {"weight_dtype": []}}, "grid: weight_dtype must be a non-empty list"),
    ({**TINY, "grid": {"versions": ["v1", "v99"]}}, r"cell 1 \(versions=v99\): config: unknown version"),
    ({**TINY, "grid": {"weight_dtype": ["f32", "int3"]}}, r"cell 1 \(weight_dtype=int3\): config: weight_dtype 'int3'"),
    ({**NO_T, "grid": {"T_values": [4, "many"]}}, r"cell 1 \(T_values=many\): config: T_values\[\] must be"),
    ({**TINY, "grid": {"perplexity.context": [4]}}, "grid: unknown key 'perplexity.context'"),
    ({**TINY, "grid": {"perplexity": [{"data": "random"}]}}, "grid: perplexity is a section"),
    ({**TINY, "grid": {"T_values": [4, 8]}}, "grid: T_values is also set outside the grid"),
    ({**TINY, "grid": {"versions": ["v1", "v1"]}}, "grid: versions lists a value twice"),
    ({**TINY, "grid": ["versions"]}, "grid: must be a mapping"),
    ({**TINY, "benchmarks": ["latency", "speed"]}, r"unknown benchmark\(s\) \['speed'\]"),
    ({**TINY, "grid": {"node_label": [3]}}, "node_label values must be strings"),
    ({**TINY, "grid": {"device": ["cpu", "tpu"]}}, r"cell 1 \(device=tpu\): config: device 'tpu'"),
])
def test_a_bad_grid_is_refused_with_the_key_named(spec, message):
    with pytest.raises(ValueError, match=message):
        expand(spec)


def test_a_bad_grid_file_is_an_error_message_before_anything_runs(tmp_path):
    path = write_grid(tmp_path, {**TINY, "grid": {"versions": ["v1", "v99"]}})
    proc = sweep_cli(path, "--log-file", tmp_path / "log.jsonl", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "cell 1 (versions=v99): config: unknown version" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "log.jsonl").exists()
    missing = sweep_cli(tmp_path / "nope.yaml", cwd=tmp_path, check=False)
    assert missing.returncode == 2 and "no such grid file" in missing.stderr


def test_the_shipped_grid_is_valid():
    sweep = load_grid(Path(__file__).resolve().parents[1] / "benchmarks" / "grids" / "quantization.yaml")
    assert sweep.name == "quantization" and len(sweep.cells) >= 4
    assert {c.config["weight_dtype"] for c in sweep.cells} >= {"f32", "int8", "q4_0"}


# ---- the local executor and resuming -----------------------------------------------------------

def test_dry_run_prints_the_plan_and_runs_nothing(tmp_path):
    path = write_grid(tmp_path, dict(GRID, name="quant"))
    proc = sweep_cli(path, "--dry-run", "--log-file", tmp_path / "log.jsonl", cwd=tmp_path)
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("sweep quant: 4 cells, 0 in the store, 4 to run (local executor)")
    ids = [c.id for c in expand(GRID).cells]
    for cell_id, line in zip(ids, lines[1:]):
        assert cell_id in line and " run " in line
    assert "versions=v2 weight_dtype=int8" in lines[4]
    assert not (tmp_path / "log.jsonl").exists()


def test_a_local_sweep_stores_one_record_set_per_cell_and_a_resume_skips_them(tmp_path):
    path = write_grid(tmp_path, dict(GRID, name="quant"))
    log = tmp_path / "results" / "sweep.jsonl"
    first = sweep_cli(path, "--log-file", log, "--no-progress", cwd=tmp_path)
    assert "4 cells run (0 failed), 0 skipped" in first.stdout
    assert first.stderr.count("ok     versions=") == 4 and "[4/4]" in first.stderr and "ETA" in first.stderr
    records = read_records(log)
    assert len(records) == 4 and all(r["status"] == "ok" and r["benchmark"] == "latency" for r in records)
    assert set(per_cell(records).values()) == {1}
    env = environment()
    cells = {c.id: c for c in expand(GRID).cells}
    assert set(cells) == {r["sweep"]["id"] for r in records}
    for r in records:
        cell = cells[r["sweep"]["id"]]
        assert r["sweep"]["name"] == "quant" and r["sweep"]["cell"] == cell.settings
        assert [r["version"]] == cell.settings["versions"] and r["model"]["weight_dtype"] == cell.settings["weight_dtype"]
        assert r["hostname"] == env["hostname"] and r["cpu_model"] == env["cpu_model"]
        assert r["git_commit"] == env["git_commit"] and r["sweep"]["seconds"] > 0
        assert r["metrics"]["total_ms"]["n"] == 1 and r["params"]["T"] == 4
    assert {r["run_id"] for r in records} == {sweep_run_id("quant")}
    # again: everything is in the store
    again = sweep_cli(path, "--log-file", log, "--no-progress", cwd=tmp_path)
    assert "0 cells run (0 failed), 4 skipped" in again.stdout and len(read_records(log)) == 4
    # a grown grid runs only its new cells, into the same run
    grown = write_grid(tmp_path, dict(GRID, name="quant", grid={**GRID["grid"], "weight_dtype": ["f32", "int8", "q4_0"]}))
    third = sweep_cli(grown, "--log-file", log, "--no-progress", cwd=tmp_path)
    assert "2 cells run (0 failed), 4 skipped" in third.stdout
    records = read_records(log)
    assert len(records) == 6 and set(per_cell(records).values()) == {1}
    assert {r["run_id"] for r in records} == {sweep_run_id("quant")}
    # another code version is not "the same": its cells would run again
    plan = make_plan(load_grid(grown), log)
    assert not plan.to_run
    from celerinfer.sweep import driver

    states = driver.cell_states(load_grid(grown), records, code=("0" * 40, "9.9"))
    assert not any(s.done for s in states.values())


def test_ctrl_c_keeps_the_finished_cells_and_the_resume_runs_the_rest(tmp_path, monkeypatch):
    sweep = expand(GRID, name="quant")
    log = tmp_path / "log.jsonl"
    real = cell_run.run_cell
    calls = []

    def interrupted_second(job, lock=True):
        calls.append(job["sweep"]["id"])
        if len(calls) == 2:  # Ctrl-C in the middle of the second cell: a measurement was made
            real(job)
            raise KeyboardInterrupt
        return real(job)

    monkeypatch.setattr(local, "run_cell", interrupted_second)
    result = run_plan(make_plan(sweep, log), LocalExecutor(), progress=False)
    assert result.interrupted and result.ran == 1
    assert [r["sweep"]["id"] for r in read_records(log)] == [sweep.cells[0].id]  # nothing of the second cell
    monkeypatch.setattr(local, "run_cell", real)
    plan = make_plan(sweep, log)
    assert [c.id for c in plan.to_run] == [c.id for c in sweep.cells[1:]]
    assert "done" in format_plan(plan, "local").splitlines()[1]
    result = run_plan(plan, LocalExecutor(), progress=False)
    assert not result.interrupted and result.ran == 3
    records = read_records(log)
    assert set(per_cell(records).values()) == {1} and {r["sweep"]["id"] for r in records} == {c.id for c in sweep.cells}


def test_a_failed_cell_is_recorded_the_sweep_goes_on_and_a_resume_retries_it(tmp_path):
    spec = {**TINY, "name": "mixed", "grid": {"model": [None, "missing.safetensors"], "versions": ["v1", "v2"]}}
    path = write_grid(tmp_path, spec)
    log = tmp_path / "log.jsonl"
    proc = sweep_cli(path, "--log-file", log, "--no-progress", cwd=tmp_path, check=False)
    assert proc.returncode == 1, proc.stderr
    assert "4 cells run (2 failed)" in proc.stdout
    assert proc.stderr.count("failed: cell") == 2 and "missing.safetensors" in proc.stderr
    records = read_records(log)
    failed = [r for r in records if r["status"] == "failed"]
    assert len(failed) == 2 and len(ok_records(log)) == 2
    for r in failed:
        assert r["benchmark"] == "sweep" and r["sweep"]["cell"]["model"] == "missing.safetensors"
        assert "missing.safetensors" in r["error"] and r["hostname"] == environment()["hostname"]
        assert r["benchmarks"] == ["latency"] and r["metrics"] == {}
    assert {r["sweep"]["cell"]["model"] for r in ok_records(log)} == {None}
    # the resume retries the failed cells (only them), --skip-failed does not
    dry = sweep_cli(path, "--log-file", log, "--dry-run", cwd=tmp_path).stdout
    assert dry.count("run (failed 1x before)") == 2 and dry.count("done") == 2
    again = sweep_cli(path, "--log-file", log, "--no-progress", cwd=tmp_path, check=False)
    assert again.returncode == 1 and "2 cells run (2 failed), 2 skipped" in again.stdout
    skip = sweep_cli(path, "--log-file", log, "--no-progress", "--skip-failed", cwd=tmp_path)
    assert "0 cells run (0 failed), 4 skipped" in skip.stdout
    assert len(read_records(log)) == 6


def test_the_ray_executor_without_ray_names_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    path = write_grid(tmp_path, GRID)
    assert main(["sweep", str(path), "--executor", "ray", "--log-file", str(tmp_path / "log.jsonl")]) == 2
    assert "pip install 'celerinfer[ray]'" in capsys.readouterr().err
    assert not (tmp_path / "log.jsonl").exists()
    assert main(["sweep", str(path), "--address", "head:6379"]) == 2  # --address is for ray
    assert "--address is for --executor ray" in capsys.readouterr().err


def test_a_cell_pinned_to_another_machine_is_not_measured_here(tmp_path):
    env = environment()
    log = tmp_path / "log.jsonl"
    elsewhere = expand(TINY, name="pinned", node_label="no-such-cpu-model")
    result = run_plan(make_plan(elsewhere, log), LocalExecutor(), progress=False)
    assert len(result.failed) == 1 and "does not match node_label 'no-such-cpu-model'" in result.failed[0][1]
    assert [r["status"] for r in read_records(log)] == ["failed"]
    # a part of this machine's CPU model, in any case, or its hostname: measured
    cpu = env["cpu_model"]
    for label in [env["hostname"]] + ([cpu.split()[-1].lower()] if cpu else []):
        here = expand(TINY, name="pinned", node_label=label)
        result = run_plan(make_plan(here, log), LocalExecutor(), progress=False)
        assert not result.failed and result.records == len(here.cells[0].config["versions"]), label


def test_which_ray_node_may_run_a_cell():
    from celerinfer.sweep.ray_executor import Node

    epyc = Node("n1", {"CPU": 16.0, "big": 1.0}, None, info={"hostname": "box1", "cpu_model": "AMD EPYC 7B13"})
    gpu = Node("n2", {"CPU": 8.0, "GPU": 1.0}, None, info={"hostname": "gpu1", "cpu_model": "Intel Xeon 8480"})

    def cell(**spec):
        return expand({**TINY, **spec}).cells[0]

    assert epyc.matches(cell()) and gpu.matches(cell())
    assert epyc.matches(cell(node_label="epyc")) and not gpu.matches(cell(node_label="epyc"))  # CPU model
    assert gpu.matches(cell(node_label="gpu1")) and not epyc.matches(cell(node_label="gpu"))  # hostname, whole
    assert epyc.matches(cell(node_label="big")) and not gpu.matches(cell(node_label="big"))  # a custom resource
    assert gpu.matches(cell(device="cuda")) and not epyc.matches(cell(device="cuda"))  # a GPU


# ---- a sweep's records in compare-runs and the plots -------------------------------------------

def latency_record(run_id, host, cpu, cell, version, ms, stamp):
    samples = [int(ms * 1e6 * (1 + 0.01 * i)) for i in range(-5, 6)]
    r = make_record("latency", version, None, {"name": "tiny", "weight_dtype": cell["weight_dtype"]},
                    {"T": 4, "prompt_length": 4, "batch_size": 1, "seed": 42}, {
                        "total_ms": summarize(samples), "per_token_ms": summarize([s // 4 for s in samples]),
                        "ttft_ms": summarize([s // 2 for s in samples])}, run_id, 2,
                    hostname=host, cpu_model=cpu,
                    sweep={"name": "quant", "id": f"{cell['weight_dtype']}-{version}", "cell": cell,
                           "label": f"weight_dtype={cell['weight_dtype']}"})
    r["timestamp"] = stamp
    return r


def two_machine_sweep():
    """Two runs of a 2-cell sweep on two machines; in the second run the int8 cell of host-a is slower."""
    out = []
    for run, stamp in (("a" * 32, "2026-01-01T00:00:00+00:00"), ("b" * 32, "2026-01-02T00:00:00+00:00")):
        for host, cpu, speed in (("host-a", "AMD EPYC 7B13", 1.0), ("host-b", "Intel Xeon 8480", 2.0)):
            for dtype in ("f32", "int8"):
                slow = 1.5 if (run[0], host, dtype) == ("b", "host-a", "int8") else 1.0
                out.append(latency_record(run, host, cpu, {"weight_dtype": dtype}, "v1", 10 * speed * slow, stamp))
    return out


def test_compare_runs_pairs_a_sweep_by_machine_and_cell(tmp_path):
    log = tmp_path / "log.jsonl"
    append_records(log, two_machine_sweep())
    report = compare_runs(log)
    keys = {(k.host, k.cell): c for k, c in report.rows}
    assert set(keys) == {(f"{h} ({cpu})", f"weight_dtype={d}") for h, cpu in (("host-a", "AMD EPYC 7B13"),
                                                                             ("host-b", "Intel Xeon 8480"))
                         for d in ("f32", "int8")}
    for (host, cell), c in keys.items():  # neither machines nor cells pooled: only the slowed one changed
        assert c.significant == (host.startswith("host-a") and cell == "weight_dtype=int8"), (host, cell)
        assert c.ratio == pytest.approx(1.5 if c.significant else 1.0, rel=1e-6)
    text = format_comparison_report(report)
    assert "host" in text.splitlines()[1] and "host-b (Intel Xeon 8480)" in text
    # runs of different machines are not compared, and the report says why
    only = tmp_path / "two.jsonl"
    append_records(only, [r for r in two_machine_sweep() if (r["run_id"][0], r["hostname"]) in
                          {("a", "host-a"), ("b", "host-b")}])
    report = compare_runs(only)
    assert not report.rows and len(report.only_a) == len(report.only_b) == 2
    assert "measured on different machines" in format_comparison_report(report)


def test_plots_of_several_machines_are_faceted_and_the_device_comparison_compares_them(tmp_path):
    records = two_machine_sweep()
    out = plots.make_plots(records, tmp_path, run_id="b" * 32)
    folders = {"host-a_AMD_EPYC_7B13", "host-b_Intel_Xeon_8480"}
    assert out["device_comparison"] == tmp_path / "device_comparison.png"
    for folder in folders:  # one facet per machine and cell: no plot mixes machines or cells
        for setting in ("weight_dtype=f32", "weight_dtype=int8"):
            path = tmp_path / folder / setting / "latency_vs_T.png"
            assert out[f"{folder}/{setting}/latency_vs_T"] == path and path.is_file()
    assert "latency_vs_T" not in out
    assert {p.name for p in tmp_path.iterdir()} == folders | {"device_comparison.png"}
    one = plots.make_plots([r for r in records if r["hostname"] == "host-b"], tmp_path / "b", run_id="b" * 32)
    assert {k for k in out if k.endswith("/latency_vs_T")} == {
        f"{f}/{s}/latency_vs_T" for f in folders for s in ("weight_dtype=f32", "weight_dtype=int8")}
    assert {k for k in one if k.endswith("latency_vs_T")} == {"weight_dtype=f32/latency_vs_T",
                                                              "weight_dtype=int8/latency_vs_T"}
    fig = plots.plot_device_comparison(records, run_id="b" * 32)
    speed = {p.get_gid(): p.get_width() for p in fig.axes[0].patches if p.get_gid()}
    ttft = {p.get_gid(): p.get_width() for p in fig.axes[1].patches if p.get_gid()}
    a, b = "host-a (AMD EPYC 7B13)", "host-b (Intel Xeon 8480)"
    assert set(speed) == set(ttft) == {f"{m}|weight_dtype={d} v1 T=4" for m in (a, b) for d in ("f32", "int8")}
    # decode tokens/s = 1000 / per-token ms: host-a's f32 (2.5 ms) 400 tok/s, host-b's twice as slow
    assert speed[f"{a}|weight_dtype=f32 v1 T=4"] == pytest.approx(400, rel=1e-6)
    assert speed[f"{b}|weight_dtype=f32 v1 T=4"] == pytest.approx(200, rel=1e-6)
    assert speed[f"{a}|weight_dtype=int8 v1 T=4"] == pytest.approx(400 / 1.5, rel=1e-6)
    assert ttft[f"{b}|weight_dtype=int8 v1 T=4"] == pytest.approx(10.0, rel=1e-6)  # 20 ms total / 2
    # one machine outside a sweep: nothing to compare
    single = [dict(r, sweep=None) for r in records if r["hostname"] == "host-a"]
    assert plots.plot_device_comparison(single) is None
