"""`celerinfer bench` end to end on the tiny preset: the records' fields and values, plots from
the stored log, concurrent writers, Ctrl-C, and configuration errors."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import celerinfer
import celerinfer.bench
from celerinfer import results

VERSIONS = ["v0", "v1", "v2", "v3", "v4"]


def bench(*args, log, env_extra=None, check=True, **kwargs):
    env = {**os.environ, "XDG_CACHE_HOME": str(Path(log).parent / "cache"), **(env_extra or {})}
    proc = subprocess.run([sys.executable, "-m", "celerinfer", "bench", *map(str, args), "--log-file", str(log),
                           "--no-progress"], capture_output=True, text=True, env=env, timeout=600, **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    log = tmp_path_factory.mktemp("bench") / "results.jsonl"
    proc = bench("all", "--preset", "tiny", "--version", *VERSIONS, "--threads", 2, log=log)
    return log, results.read_records(log), proc.stdout


def by(records, benchmark):
    return [r for r in records if r["benchmark"] == benchmark]


def test_every_record_carries_the_design_fields(tiny_run):
    _, records, _ = tiny_run
    assert len({r["run_id"] for r in records}) == 1
    for r in records:
        for key in ("schema_version", "run_id", "record_id", "timestamp", "hostname", "package_version", "git_commit",
                    "python_version", "numpy_version", "torch_version", "cpu_model", "threads", "device", "gpu_name",
                    "dtype", "model", "benchmark", "version", "version_flags", "params", "metrics", "status"):
            assert key in r, key
        assert r["threads"] == 2 and r["device"] == "cpu" and r["status"] == "ok"
        assert r["model"]["config"]["hidden_size"] == 64 and r["model"]["name"] == "tiny"


def test_latency_records(tiny_run):
    _, records, _ = tiny_run
    latency = by(records, "latency")
    assert {(r["version"], r["params"]["T"]) for r in latency} == {(v, t) for v in VERSIONS for t in (8, 16, 32)}
    for r in latency:
        m, T = r["metrics"], r["params"]["T"]
        total = m["total_ms"]
        assert total["n"] == 3 and len(total["samples_ns"]) == 3
        assert total["min"] <= total["median"] <= total["max"]
        assert total["ci95_low"] <= total["median"] <= total["ci95_high"]
        assert m["tokens_per_s"] == pytest.approx(T / (total["median"] / 1e3))
        assert m["per_token_ms"]["n"] == 3 * (T - 1)
        assert m["per_token_ms"]["p90"] <= m["per_token_ms"]["p99"] <= m["per_token_ms"]["max"]
        assert m["ttft_ms"]["median"] < total["median"]
        assert r["version_flags"]["name"] == r["version"]


def test_memory_records_follow_the_cache_formats(tiny_run):
    _, records, _ = tiny_run
    mem = {(r["version"], r["params"]["T"]): r["metrics"] for r in by(records, "memory")}
    # tiny: 2 layers, 2 KV heads, head_dim 16, prompt 8: after T new tokens, 8 + T - 1 cached
    for T in (8, 16, 32):
        cached = 8 + T - 1
        assert mem[("v0", T)]["kv_cache_bytes"] == 0
        assert mem[("v1", T)]["kv_cache_bytes"] == 2 * 2 * 2 * cached * 16 * 4
        assert mem[("v2", T)]["kv_cache_bytes"] == 2 * 2 * 2 * cached * (16 + 4)
        assert mem[("v3", T)]["kv_cache_bytes"] * 2 == mem[("v1", T)]["kv_cache_bytes"]
        assert mem[("v4", T)]["kv_cache_bytes"] * 2 == mem[("v2", T)]["kv_cache_bytes"]
        for m in mem.values():
            assert m["f32_weight_bytes"] == 4 * celerinfer.ModelConfig(**celerinfer.bench.PRESETS["tiny"]["model"]).num_parameters
            assert m["engine_bytes"] >= m["kv_cache_capacity_bytes"] >= m["kv_cache_bytes"]
    assert mem[("v1", 32)]["kv_cache_bytes"] > mem[("v1", 8)]["kv_cache_bytes"]


def test_phase_records(tiny_run):
    _, records, _ = tiny_run
    phase = by(records, "phase")
    assert sorted(r["version"] for r in phase) == VERSIONS
    for r in phase:
        m = r["metrics"]
        assert r["params"]["T"] == 16
        assert set(m["phases_ms"]) == {"embedding", "attention", "mlp", "head", "other"}
        assert all(p["median"] >= 0 for p in m["phases_ms"].values())
        assert 0.5 < sum(m["phase_share"].values()) <= 1.0 + 1e-9


def test_perplexity_records_see_each_versions_cache(tiny_run):
    _, records, _ = tiny_run
    ppl = {r["version"]: r["metrics"] for r in by(records, "perplexity")}
    assert set(ppl) == set(VERSIONS)
    assert ppl["v1"]["kl_vs_baseline"] == 0 and ppl["v1"]["top1_agreement"] == 1
    assert ppl["v0"]["kl_vs_baseline"] < 1e-9  # no cache: the same function as v1
    for v in ("v2", "v3", "v4"):  # INT8 and sharing change what the model computes
        assert ppl[v]["kl_vs_baseline"] > 1e-9
    assert ppl["v3"]["kl_vs_baseline"] > ppl["v2"]["kl_vs_baseline"]  # sharing costs more than INT8 here
    for m in ppl.values():
        assert m["perplexity"] == pytest.approx(2.718281828459045 ** m["loss"])
        assert m["num_tokens"] == 2 * 47


def test_roofline_records_use_the_measured_ceilings(tiny_run):
    _, records, _ = tiny_run
    (cal,) = by(records, "calibrate")
    # the memory roof is the ceiling (the best triad or read-only stream), not the triad's median
    bw, peak = cal["metrics"]["bandwidth_ceiling_gbps"], cal["metrics"]["matmul_gflops"]["median"]
    assert bw >= cal["metrics"]["bandwidth_gbps"]["median"] > 0 and peak > 0
    roof = by(records, "roofline")
    assert {(r["version"], r["params"]["phase"]) for r in roof} == {(v, p) for v in VERSIONS for p in ("prefill", "decode")}
    for r in roof:
        m = r["metrics"]
        assert m["peak_gbps"] == bw and m["peak_gflops"] == peak
        assert m["arithmetic_intensity"] == pytest.approx(m["flops"] / m["bytes"])
        assert m["achieved_gflops"] == pytest.approx(m["flops"] / (m["time_ms"]["median"] / 1e3) / 1e9)
        assert m["fraction_of_bandwidth"] == pytest.approx(m["achieved_gbps"] / bw)
        assert m["fraction_of_peak_flops"] == pytest.approx(m["achieved_gflops"] / peak)
    decode_v1 = next(r for r in roof if r["version"] == "v1" and r["params"]["phase"] == "decode")["metrics"]
    assert decode_v1["bound"] == "memory"


def test_summary_and_plots_from_the_stored_log(tiny_run, tmp_path):
    log, _, stdout = tiny_run
    assert "latency (median)" in stdout and "quality" in stdout and "roofline" in stdout
    out = subprocess.run([sys.executable, "-m", "celerinfer", "plot", "--log-file", str(log), "--out-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    for name in ("latency_vs_T", "memory_vs_T", "phase_breakdown", "quality", "roofline", "speedup",
                 "latency_distribution", "tradeoff"):
        png = tmp_path / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def test_export_csv(tiny_run, tmp_path):
    log, records, _ = tiny_run
    out = tmp_path / "r.csv"
    subprocess.run([sys.executable, "-m", "celerinfer", "export-csv", "--log-file", str(log), "--output", str(out)],
                   check=True, capture_output=True)
    import csv

    with out.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(records)
    assert "metrics.total_ms.median" in rows[0]


def test_two_bench_processes_on_one_log_lose_nothing(tmp_path):
    log = tmp_path / "shared.jsonl"
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "celerinfer", "bench", "latency", "memory", "--preset", "tiny", "--version", "v1", "v2",
           "--log-file", str(log), "--no-progress", "--num-measure-runs", "2", "--num-warmup-runs", "0"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    lines = log.read_text().splitlines()
    parsed = [json.loads(line) for line in lines]  # every line parses
    assert len(parsed) == 2 * 2 * 3 * 2  # processes x versions x T values x (latency, memory)
    assert len({r["record_id"] for r in parsed}) == len(parsed) and len({r["run_id"] for r in parsed}) == 2


def test_ctrl_c_stops_cleanly_and_keeps_the_records(tmp_path):
    log = tmp_path / "interrupted.jsonl"
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    proc = subprocess.Popen([sys.executable, "-m", "celerinfer", "bench", "latency", "--preset", "tiny", "--T-values",
                             *map(str, range(8, 200, 8)), "--num-measure-runs", "50", "--log-file", str(log),
                             "--no-progress"],  # ~20 s of work: SIGINT always lands mid-run
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            # a shell that started pytest in the background (`cmd &`) left SIGINT
                            # ignored, and children inherit that: give the child Ctrl-C back
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while time.time() < deadline and (not log.exists() or not log.read_text().strip()):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "kept" in err and "Traceback" not in err
    kept = results.read_records(log)  # the file is valid
    assert 1 <= len(kept) < 5 * 24


@pytest.mark.parametrize(
    "args, message",
    [
        (["--version", "v99"], "unknown version"),
        (["--preset", "huge"], "unknown preset"),
        (["--T-values", "0"], "T_values"),
        (["--num-measure-runs", "0"], "num_measure_runs"),
        (["--dtype", "int4"], "dtype"),
    ],
)
def test_bad_configuration_is_a_message(tmp_path, args, message):
    proc = bench("latency", "--preset", "tiny", *args, log=tmp_path / "x.jsonl", check=False)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x.jsonl").exists()


def test_config_file_and_clear_log(tmp_path):
    config = tmp_path / "study.yaml"
    config.write_text("preset: tiny\nversions: [v1]\nT_values: [4]\nT_star: 4\nnum_measure_runs: 1\n"
                      "num_warmup_runs: 0\nprompt_length: 4\n")
    log = tmp_path / "r.jsonl"
    bench("latency", "--config", config, log=log)
    bench("latency", "--config", config, "--clear-log", log=log)
    assert len(results.read_records(log)) == 1
    backups = list(tmp_path.glob("r.jsonl.*.bak"))
    assert len(backups) == 1 and len(results.read_records(backups[0])) == 1
    bad = tmp_path / "bad.yaml"
    bad.write_text("preset: tiny\nT_valuez: [4]\n")
    proc = bench("latency", "--config", bad, log=log, check=False)
    assert proc.returncode == 2 and "T_valuez" in proc.stderr


def test_compare_runs_reports_on_two_runs(tmp_path):
    log = tmp_path / "two.jsonl"
    for _ in range(2):
        bench("latency", "--preset", "tiny", "--version", "v1", "--T-values", "8", "--num-measure-runs", "5", log=log)
    out = subprocess.run([sys.executable, "-m", "celerinfer", "compare-runs", "--log-file", str(log)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    runs = {r["run_id"] for r in results.read_records(log)}
    assert len(runs) == 2 and all(run[:8] in out.stdout for run in runs)
    assert "noise" in out.stdout and "v1" in out.stdout
