"""`celerinfer run`: the seed's inference benchmark workflow (text prompts, --benchmark, the
accumulating metrics files and plots, batches, Ctrl-C, bad input, concurrent invocations)."""

import argparse
import csv
import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import celerinfer
from celerinfer.cli import run_command
from celerinfer.io.tokenizer import ByteTokenizer, load_tokenizer
from celerinfer.plots import inference_metrics as run_plots
from celerinfer.text import printable

SEED_COLUMNS = ["run_name", "timestamp", "optimized", "prompt_length", "generated_length", "total_time",
                "tokens_per_second", "time_per_token", "memory_used_mb", "device"]
MAX_POS = 256


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("run_model") / "m.safetensors"
    config = celerinfer.ModelConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                    num_key_value_heads=2, vocab_size=300, max_position_embeddings=MAX_POS)
    celerinfer.random_model(config, seed=0).save(path)
    return path


@pytest.fixture(scope="module")
def small_vocab_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("run_small") / "small.safetensors"
    config = celerinfer.ModelConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                    num_key_value_heads=2, vocab_size=100, max_position_embeddings=64)
    celerinfer.random_model(config, seed=1).save(path)
    return path


def run_cli(*argv) -> int:
    """`celerinfer run ARGV` in this process, through a parser built with run_command.add_parser."""
    parser = argparse.ArgumentParser(prog="celerinfer")
    sub = parser.add_subparsers(dest="command", required=True)
    run_command.add_parser(sub)
    args = parser.parse_args(["run", *map(str, argv)])
    assert args.func is run_command.cmd_run
    return args.func(args)


def run_subprocess(*argv, cwd=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "celerinfer", "run", *map(str, argv)], capture_output=True,
                          text=True, cwd=cwd, timeout=timeout, env={**os.environ, "PYTHONIOENCODING": "utf-8"})


def read_json(directory) -> list:
    data = json.loads((Path(directory) / "inference_metrics.json").read_text(encoding="utf-8"))
    assert set(data) == {"runs"}
    return data["runs"]


def read_csv(directory):
    with open(Path(directory) / "inference_metrics.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    return rows[0], [dict(zip(rows[0], row)) for row in rows[1:]]


def png_size(path) -> tuple[int, int]:
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR" and data[-8:-4] == b"IEND"
    return struct.unpack(">II", data[16:24])


def expected_generation(path, version, prompt_ids, max_new, temperature=1.0, top_k=50, top_p=0.95, seed=0):
    model = celerinfer.load(path)  # the engine sized for the prompt plus the new tokens, as `run` does
    engine = celerinfer.Engine(model, version, max_seq_len=len(prompt_ids) + max_new)
    return engine.generate([prompt_ids], max_new, temperature=temperature, top_k=top_k,
                                                      top_p=top_p, seed=seed)


# ------------------------------------------------------------------------------------------
# tokenizer
# ------------------------------------------------------------------------------------------

def test_byte_tokenizer_round_trip_including_non_ascii():
    tok = ByteTokenizer(300)
    text = "The future of AI: naïve café, Ωmega, 日本語, emoji \U0001F642, tab\tnewline\n"
    ids = tok.encode(text)
    assert ids == list(text.encode("utf-8"))
    assert len(ids) > len(text)  # multi-byte characters take several ids
    assert all(0 <= i < 256 for i in ids)
    assert tok.decode(ids) == text
    assert tok.decode(np.array(ids, dtype=np.int64)) == text
    # ids beyond the bytes are shown as <id>; broken UTF-8 is replaced, not fatal
    assert tok.decode([72, 299, 105, 256]) == "H<299>i<256>"
    assert tok.decode([0xC3]) == "\ufffd"
    assert tok.decode([0xC3, 0xA9, 300, 0xE6]) == "é<300>\ufffd"
    assert tok.decode([]) == "" and tok.encode("") == []
    same = load_tokenizer("whatever.safetensors", 300)
    assert isinstance(same, ByteTokenizer) and same.vocab_size == 300 and same.encode("é") == [0xC3, 0xA9]


def test_byte_tokenizer_needs_256_ids_for_text():
    tok = ByteTokenizer(255)
    with pytest.raises(ValueError, match=r"vocab_size is 255.*--prompt-ids.*vocab_size >= 256"):
        tok.encode("hello")
    assert ByteTokenizer(256).encode("\xff") == [0xC3, 0xBF]
    with pytest.raises(TypeError):
        ByteTokenizer(300).encode(b"bytes")


# ------------------------------------------------------------------------------------------
# --benchmark: the metrics files and plots
# ------------------------------------------------------------------------------------------

def check_run_values(run, model_path, prompt, max_new, optimized, version):
    prompt_ids = list(prompt.encode("utf-8"))
    assert run["optimized"] is optimized and run["version"] == version
    assert run["run_name"].startswith("run_") and run["run_name"].split("_")[2] == ("optimized" if optimized
                                                                                      else "baseline")
    assert run["prompt"] == prompt and run["prompt_ids"] == prompt_ids and run["prompt_length"] == len(prompt_ids)
    assert run["generated_length"] == max_new == len(run["generated_ids"])
    assert run["device"] == "cpu" and run["model"] == str(model_path)
    assert run["model_config"]["vocab_size"] == 300 and run["model_config"]["hidden_size"] == 64
    assert run["sampling"] == {"max_length": max_new, "max_new_tokens": max_new, "temperature": 1.0, "top_k": 50,
                               "top_p": 0.95, "seed": 0}
    # the same tokens and memory as the engine itself gives with these settings
    gen = expected_generation(model_path, version, prompt_ids, max_new)
    assert run["generated_ids"] == gen.new_tokens[0].tolist()
    assert run["generated_text"] == ByteTokenizer(300).decode(run["generated_ids"])
    assert run["memory_used_mb"] == pytest.approx(gen.peak_bytes / 2**20, rel=1e-12)
    assert run["kv_cache_mb"] == pytest.approx(gen.kv_cache_bytes / 2**20, rel=1e-12)
    assert run["peak_rss_mb"] > 1 and run["max_seq_len"] == len(prompt_ids) + max_new
    # derived timings are consistent with each other
    assert run["total_time"] > 0
    assert run["tokens_per_second"] == pytest.approx(max_new / run["total_time"], rel=1e-9)
    assert run["time_per_token"] == pytest.approx(1e3 * run["total_time"] / max_new, rel=1e-9)
    assert abs(run["timestamp"] - time.time()) < 600


def check_pair(baseline, optimized):
    assert baseline["pair_id"] == optimized["pair_id"] and baseline["run_name"] != optimized["run_name"]
    assert optimized["baseline_run_name"] == baseline["run_name"]
    assert optimized["speedup"] == pytest.approx(optimized["tokens_per_second"] / baseline["tokens_per_second"],
                                                 rel=1e-12)
    assert optimized["memory_reduction_pct"] == pytest.approx(
        100 * (1 - optimized["memory_used_mb"] / baseline["memory_used_mb"]), rel=1e-12)
    # v1 keeps a KV cache instead of recomputing everything: fewer buffer bytes than v0 here
    assert 0 < optimized["memory_reduction_pct"] < 100
    assert "speedup" not in baseline and "memory_reduction_pct" not in baseline
    assert optimized["same_tokens_as_baseline"] is (baseline["generated_ids"] == optimized["generated_ids"])


def test_benchmark_writes_and_accumulates_metrics_and_plots(model_path, tmp_path, capsys):
    out = tmp_path / "bench"
    prompt = "The future of artificial intelligence"
    assert run_cli("--model", model_path, "--prompt", prompt, "--max-length", 12, "--benchmark",
                   "--benchmark-dir", out) == 0
    text = capsys.readouterr().out
    runs = read_json(out)
    assert len(runs) == 2
    baseline, optimized = runs
    check_run_values(baseline, model_path, prompt, 12, optimized=False, version="v0")
    check_run_values(optimized, model_path, prompt, 12, optimized=True, version="v1")
    check_pair(baseline, optimized)
    assert optimized["same_tokens_as_baseline"] is True  # v1 is exact: same tokens as v0
    for line in ("NON-OPTIMIZED", "OPTIMIZED", "Total Time:", "Tokens/Second:", "Time/Token:", "Memory Used:",
                 "Generated: The future of artificial intelligence", f"BENCHMARK RUN: {optimized['pair_id']}"):
        assert line in text
    assert f"SPEEDUP: {optimized['speedup']:.2f}x" in text
    assert f"MEMORY REDUCTION: {optimized['memory_reduction_pct']:.1f}%" in text
    assert f"Tokens/Second: {optimized['tokens_per_second']:.1f}" in text
    first_pngs = {name: (out / name).read_bytes() for name in ("optimization_comparison.png",
                                                               "performance_over_time.png")}
    assert png_size(out / "optimization_comparison.png") == (1200, 900)
    assert png_size(out / "performance_over_time.png") == (1100, 550)

    # a second invocation appends: 4 runs, the first two unchanged
    assert run_cli("--model", model_path, "--prompt", "Hello", "--max-length", 7, "--benchmark",
                   "--benchmark-dir", out, "--version", "v2") == 0
    runs2 = read_json(out)
    assert len(runs2) == 4 and runs2[:2] == runs
    check_pair(runs2[2], runs2[3])
    assert runs2[3]["version"] == "v2" and runs2[3]["generated_length"] == 7
    assert len({r["run_name"] for r in runs2}) == 4
    header, rows = read_csv(out)
    assert header[:10] == SEED_COLUMNS
    assert {"version", "speedup", "memory_reduction_pct", "peak_rss_mb", "model_config.vocab_size",
            "sampling.top_k"} <= set(header)
    assert len(rows) == 4
    for row, run in zip(rows, runs2):
        assert row["run_name"] == run["run_name"]
        assert row["optimized"] == ("true" if run["optimized"] else "false")
        assert float(row["tokens_per_second"]) == run["tokens_per_second"]
        assert float(row["memory_used_mb"]) == run["memory_used_mb"]
        assert int(row["generated_length"]) == run["generated_length"]
        assert row["speedup"] == ("" if not run["optimized"] else repr(run["speedup"]))
    # the plots were redrawn from all 4 runs
    for name, before in first_pngs.items():
        assert (out / name).read_bytes() != before
    summary = run_plots.comparison_summary(runs2, "all")
    assert summary["title"] == "median of 2 non-optimized / 2 optimized runs"
    # the one speedup: the ratio of the medians (results/speedup.py), not of means nor a mean of ratios
    base_tps = np.median([r["tokens_per_second"] for r in runs2 if not r["optimized"]])
    opt_tps = np.median([r["tokens_per_second"] for r in runs2 if r["optimized"]])
    assert summary["speedup"] == pytest.approx(opt_tps / base_tps)
    low, high = summary["speedup_ci95"]
    assert low <= summary["speedup"] <= high
    latest = run_plots.comparison_summary(runs2, "latest")
    assert latest["baseline"]["n"] == latest["optimized"]["n"] == 1
    assert latest["speedup"] == pytest.approx(runs2[3]["speedup"]) and runs2[3]["pair_id"] in latest["title"]
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))


def test_default_benchmark_dir_and_plain_mode(model_path, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    # without --benchmark: the text, the ids and the timing; nothing written
    assert run_cli("--model", model_path, "--prompt", "Hi", "--max-length", 5, "--temperature", 0) == 0
    text = capsys.readouterr().out
    gen = expected_generation(model_path, "v1", [72, 105], 5, temperature=0.0)
    assert "Generated ids: " + " ".join(map(str, gen.new_tokens[0].tolist())) in text
    assert "tokens/s" in text and "Generated text:" in text
    assert not (tmp_path / "inference_benchmarks").exists()
    # with --benchmark and no --benchmark-dir: ./inference_benchmarks
    assert run_cli("--model", model_path, "--prompt", "Hi", "--max-length", 3, "--benchmark", "--warmup", 0) == 0
    assert len(read_json(tmp_path / "inference_benchmarks")) == 2
    assert (tmp_path / "inference_benchmarks" / "optimization_comparison.png").exists()


def test_max_length_is_capped_by_the_position_limit(model_path, tmp_path, capsys):
    prompt = "x" * 250
    assert run_cli("--model", model_path, "--prompt", prompt, "--max-length", 100, "--benchmark",
                   "--benchmark-dir", tmp_path, "--warmup", 0) == 0
    err = capsys.readouterr().err
    assert "capped to 6 new tokens" in err
    runs = read_json(tmp_path)
    assert [r["generated_length"] for r in runs] == [6, 6]
    assert runs[1]["sampling"]["max_length"] == 100 and runs[1]["sampling"]["max_new_tokens"] == 6


def test_prompts_batch_gives_a_pair_per_prompt(model_path, tmp_path, capsys):
    assert run_cli("--model", model_path, "--prompts", "First prompt", "Second, longer prompt", "--max-length", 5,
                   "--benchmark", "--benchmark-dir", tmp_path, "--delay", 0.01) == 0
    out = capsys.readouterr().out
    runs = read_json(tmp_path)
    assert len(runs) == 4
    assert [r["prompt"] for r in runs] == ["First prompt"] * 2 + ["Second, longer prompt"] * 2
    assert [r["optimized"] for r in runs] == [False, True, False, True]
    assert runs[0]["pair_id"] != runs[2]["pair_id"]
    check_pair(runs[0], runs[1])
    check_pair(runs[2], runs[3])
    assert "SUMMARY over 2 prompts" in out
    # the summary's speedup is the ratio of the median rates, the number the plot shows
    ratio = (np.median([runs[1]["tokens_per_second"], runs[3]["tokens_per_second"]])
             / np.median([runs[0]["tokens_per_second"], runs[2]["tokens_per_second"]]))
    line = next(line for line in out.splitlines() if line.strip().startswith("Speedup:"))
    assert f"{ratio:.2f}x (95% CI" in line and "median optimized tokens/s / median non-optimized" in line


def test_prompt_file_skips_blank_lines(model_path, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Alpha\n\n   \nBeta gamma\n", encoding="utf-8")
    assert run_cli("--model", model_path, "--prompt-file", prompts, "--max-length", 3, "--benchmark",
                   "--benchmark-dir", tmp_path / "b", "--warmup", 0) == 0
    assert [r["prompt"] for r in read_json(tmp_path / "b")] == ["Alpha", "Alpha", "Beta gamma", "Beta gamma"]


def test_damaged_metrics_file_is_moved_aside_not_overwritten(model_path, tmp_path, capsys):
    damaged = '{"runs": [{"run_name": "precious", "tokens_per_second": 1.0}'  # truncated
    (tmp_path / "inference_metrics.json").write_text(damaged, encoding="utf-8")
    assert run_cli("--model", model_path, "--prompt", "Hi", "--max-length", 3, "--benchmark",
                   "--benchmark-dir", tmp_path, "--warmup", 0) == 0
    err = capsys.readouterr().err
    aside = list(tmp_path.glob("inference_metrics.json.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_text(encoding="utf-8") == damaged
    assert "damaged" in err and aside[0].name in err
    assert len(read_json(tmp_path)) == 2

    # valid JSON of the wrong shape is not ours to overwrite either
    (tmp_path / "inference_metrics.json").write_text('{"something": "else"}', encoding="utf-8")
    assert run_cli("--model", model_path, "--prompt", "Hi", "--max-length", 3, "--benchmark",
                   "--benchmark-dir", tmp_path, "--warmup", 0) == 0
    aside = sorted(tmp_path.glob("inference_metrics.json.corrupt-*"))
    assert len(aside) == 2
    assert {p.read_text(encoding="utf-8") for p in aside} == {damaged, '{"something": "else"}'}
    assert len(read_json(tmp_path)) == 2


def test_prompt_ids_with_a_small_vocab_model(small_vocab_path, tmp_path, capsys):
    assert run_cli("--model", small_vocab_path, "--prompt-ids", 1, 2, 3, 99, "--max-length", 6, "--benchmark",
                   "--benchmark-dir", tmp_path) == 0
    runs = read_json(tmp_path)
    assert len(runs) == 2
    gen = expected_generation(small_vocab_path, "v0", [1, 2, 3, 99], 6)
    for run in runs:
        assert run["prompt"] == [1, 2, 3, 99] and run["prompt_length"] == 4 and run["generated_text"] is None
        assert run["generated_ids"] == gen.new_tokens[0].tolist()
        assert all(0 <= t < 100 for t in run["generated_ids"])
    out = capsys.readouterr().out
    assert "Generated: ids " + " ".join(map(str, runs[1]["generated_ids"])) in out

    # text needs vocab >= 256: a clear error, exit code 2
    assert run_cli("--model", small_vocab_path, "--prompt", "hello", "--benchmark", "--benchmark-dir", tmp_path) == 2
    err = capsys.readouterr().err
    assert "--prompt-ids" in err and "256" in err
    assert len(read_json(tmp_path)) == 2
    # ids outside the vocabulary
    assert run_cli("--model", small_vocab_path, "--prompt-ids", 5, 100) == 2
    assert "[0, 100)" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--prompt", "x", "--max-length", "0"], "--max-length: must be >= 1"),
    ([], "one of the arguments --prompt --prompt-ids --prompt-file --prompts is required"),
    (["--prompt", "x", "--prompts", "y"], "not allowed with argument"),
    (["--prompt", "x", "--version", "v99"], "unknown --version 'v99'"),
    (["--prompt", "x", "--top-p", "0"], "--top-p must be in (0, 1]"),
    (["--prompt", "x", "--device", "cuda"], "device 'cuda' is not available"),
    (["--prompt-file", "no_such_prompts.txt"], "no such prompt file"),
    (["--prompt", ""], "the prompt is empty"),
])
def test_bad_arguments_are_messages_not_tracebacks(model_path, tmp_path, argv, message):
    result = run_subprocess("--model", model_path, *argv, "--benchmark", "--benchmark-dir", tmp_path / "b",
                            cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "b" / "inference_metrics.json").exists()


def test_missing_model_is_an_error(tmp_path, capsys):
    assert run_cli("--model", tmp_path / "nope.safetensors", "--prompt", "x") == 2
    assert "no such model file" in capsys.readouterr().err


def test_interrupt_between_prompts_keeps_recorded_runs(model_path, tmp_path, monkeypatch, capsys):
    def interrupt(seconds):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_command.time, "sleep", interrupt)
    code = run_cli("--model", model_path, "--prompts", "one", "two", "three", "--max-length", 3, "--delay", 5,
                   "--benchmark", "--benchmark-dir", tmp_path, "--warmup", 0)
    assert code == 130
    assert "interrupted after 1 of 3 prompts" in capsys.readouterr().err
    runs = read_json(tmp_path)
    assert [r["prompt"] for r in runs] == ["one", "one"]
    assert len(read_csv(tmp_path)[1]) == 2
    png_size(tmp_path / "optimization_comparison.png")


def test_ctrl_c_in_a_real_process_keeps_recorded_runs(model_path, tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "celerinfer", "run", "--model", str(model_path),
                             "--prompts", "one", "two", "--max-length", "3", "--delay", "60", "--benchmark",
                             "--benchmark-dir", str(tmp_path), "--warmup", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        # the CSV is written right after the JSON, once the first prompt's pair is recorded
        while time.time() < deadline and not (tmp_path / "inference_metrics.csv").exists():
            time.sleep(0.05)
        time.sleep(0.3)  # by now waiting out --delay before the second prompt
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    runs = read_json(tmp_path)
    assert [r["prompt"] for r in runs] == ["one", "one"]
    assert len(read_csv(tmp_path)[1]) == 2


def test_concurrent_invocations_keep_every_run(model_path, tmp_path):
    argv = [sys.executable, "-m", "celerinfer", "run", "--model", str(model_path), "--max-length", "4",
            "--benchmark", "--benchmark-dir", str(tmp_path), "--warmup", "0", "--prompts"]
    procs = [subprocess.Popen(argv + [f"process {n} a", f"process {n} b"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for n in range(2)]
    results = [p.communicate(timeout=120) for p in procs]
    for proc, (out, err) in zip(procs, results):
        assert proc.returncode == 0, err
    runs = read_json(tmp_path)
    assert len(runs) == 8 and len({r["run_name"] for r in runs}) == 8
    assert sorted(r["prompt"] for r in runs) == sorted(f"process {n} {x}" for n in range(2) for x in "ab"
                                                       for _ in range(2))
    header, rows = read_csv(tmp_path)
    assert header[:10] == SEED_COLUMNS and [r["run_name"] for r in rows] == [r["run_name"] for r in runs]
    png_size(tmp_path / "performance_over_time.png")


APPENDER = """
import sys, time
from celerinfer.results.inference_metrics import MetricsStore
directory, name, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
store = MetricsStore(directory)
while time.time() < start:
    time.sleep(0.001)
for i in range(40):
    store.append([{"run_name": f"{name}_{i}", "optimized": i % 2 == 1, "tokens_per_second": float(i + 1)}])
"""


def test_the_lock_serialises_many_concurrent_appends(tmp_path):
    """Without the lock, two read-append-replace loops racing on one file lose runs."""
    start = time.time() + 1.5  # both processes start appending at the same moment
    procs = [subprocess.Popen([sys.executable, "-c", APPENDER, str(tmp_path), f"p{n}", str(start)],
                              stderr=subprocess.PIPE, text=True) for n in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    names = [r["run_name"] for r in read_json(tmp_path)]
    assert sorted(names) == sorted(f"p{n}_{i}" for n in range(2) for i in range(40))
    for n in range(2):  # each process's runs stay in its order
        mine = [name for name in names if name.startswith(f"p{n}_")]
        assert mine == [f"p{n}_{i}" for i in range(40)]
    assert len(read_csv(tmp_path)[1]) == 80


# ------------------------------------------------------------------------------------------
# the one results store: the runs are records, the seed's files are views of them
# ------------------------------------------------------------------------------------------

from celerinfer import results  # noqa: E402
from celerinfer.results import inference_metrics  # noqa: E402


def store_records(directory):
    return results.read_records(Path(directory) / "results.jsonl")


def test_runs_are_records_of_the_results_store(model_path, tmp_path):
    assert run_cli("--model", model_path, "--prompt", "Hi there", "--max-length", 4, "--benchmark",
                   "--benchmark-dir", tmp_path, "--warmup", 0, "--version", "v2") == 0
    records = store_records(tmp_path)
    runs = read_json(tmp_path)
    assert [r["benchmark"] for r in records] == ["run", "run"]
    assert [r["run"] for r in records] == runs  # the JSON view is the store's runs
    registry = {v["name"]: v for v in celerinfer.versions()}
    for record, run in zip(records, runs):
        assert set(results.COMMON_FIELDS) <= set(record) and record["status"] == "ok"
        assert record["version"] == run["version"] and record["version_flags"] == registry[run["version"]]
        assert record["run_id"] == run["pair_id"] and record["params"] == {"optimized": run["optimized"]}
        assert {k: record["metrics"][k] for k in inference_metrics.SEED_METRICS} == {
            k: run[k] for k in inference_metrics.SEED_METRICS}
        model = celerinfer.load(model_path)
        engine = celerinfer.Engine(model, run["version"], max_seq_len=run["max_seq_len"])
        assert record["metrics"]["packed_weight_bytes"] == engine.packed_weight_bytes
        assert record["model"]["f32_weight_bytes"] == 4 * model.config.num_parameters
        assert record["model"]["name"] == str(model_path) and record["threads"] == run["threads"]


def test_the_views_are_regenerated_from_the_store(model_path, tmp_path):
    assert run_cli("--model", model_path, "--prompts", "one", "two", "--max-length", 3, "--benchmark",
                   "--benchmark-dir", tmp_path, "--warmup", 0) == 0
    runs = read_json(tmp_path)
    header, rows = read_csv(tmp_path)
    # views lost or edited by hand come back from the store, the seed's shape unchanged
    (tmp_path / "inference_metrics.csv").unlink()
    (tmp_path / "inference_metrics.json").write_text('{"runs": []}', encoding="utf-8")
    for name in ("optimization_comparison.png", "performance_over_time.png"):
        (tmp_path / name).unlink()
    drawn = []
    store = inference_metrics.MetricsStore(tmp_path)
    assert store.regenerate(lambda all_runs: drawn.append(len(all_runs)) or "drawn") == "drawn"
    assert drawn == [4] and read_json(tmp_path) == runs and read_csv(tmp_path) == (header, rows)
    # the plots: through the run command's last step, from every run of the store
    (tmp_path / "inference_metrics.json").unlink()
    assert run_cli("--model", model_path, "--prompt", "three", "--max-length", 3, "--benchmark",
                   "--benchmark-dir", tmp_path, "--warmup", 0) == 0
    assert len(read_json(tmp_path)) == 6 and read_json(tmp_path)[:4] == runs
    assert png_size(tmp_path / "optimization_comparison.png") == (1200, 900)
    assert png_size(tmp_path / "performance_over_time.png") == (1100, 550)


@pytest.mark.parametrize("damage", [
    '{"runs": [{"run_name": "precious"',      # truncated
    "[1, 2, 3]",                               # JSON, but not a metrics document
    b"\xff\xfe not utf-8",                     # not text
    "[" * 100_000,                             # nested past any parser's stack (RecursionError)
])
def test_a_damaged_view_cannot_stop_runs_being_recorded(model_path, tmp_path, capsys, damage):
    assert run_cli("--model", model_path, "--prompt", "Hi", "--max-length", 3, "--benchmark",
                   "--benchmark-dir", tmp_path, "--warmup", 0) == 0
    earlier = store_records(tmp_path)
    view = tmp_path / "inference_metrics.json"
    view.write_bytes(damage if isinstance(damage, bytes) else damage.encode())
    assert run_cli("--model", model_path, "--prompt", "Hello", "--max-length", 3, "--benchmark",
                   "--benchmark-dir", tmp_path, "--warmup", 0) == 0
    err = capsys.readouterr().err
    # the damaged file is kept aside, a new series starts, the earlier records are kept too
    aside = list(tmp_path.glob("inference_metrics.json.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == (damage if isinstance(damage, bytes) else damage.encode())
    assert "damaged" in err and aside[0].name in err
    backups = list(tmp_path.glob("results.jsonl.*.bak"))
    assert len(backups) == 1 and backups[0].name in err
    assert results.read_records(backups[0]) == earlier
    assert [r["prompt"] for r in read_json(tmp_path)] == ["Hello", "Hello"]
    assert [r["run"] for r in store_records(tmp_path)] == read_json(tmp_path)


def test_a_view_that_cannot_be_replaced_costs_a_warning_not_the_runs(model_path, tmp_path, capsys, monkeypatch):
    view = tmp_path / "inference_metrics.json"
    view.write_text("not json", encoding="utf-8")
    real_replace = os.replace

    def refuse(src, dst, *args, **kwargs):
        if Path(src) == view:
            raise PermissionError("read-only file")
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(inference_metrics.os, "replace", refuse)
    assert run_cli("--model", model_path, "--prompt", "Hi", "--max-length", 3, "--benchmark",
                   "--benchmark-dir", tmp_path, "--warmup", 0) == 0
    err = capsys.readouterr().err
    assert "could not be moved aside" in err and "read-only file" in err
    assert view.read_text(encoding="utf-8") == "not json"  # never overwritten
    assert [r["run"]["prompt"] for r in store_records(tmp_path)] == ["Hi", "Hi"]  # but recorded
    monkeypatch.setattr(inference_metrics.os, "replace", real_replace)
    # views that cannot be written: the runs are recorded all the same
    view.unlink()

    def no_views(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(inference_metrics, "atomic_file", no_views)
    assert run_cli("--model", model_path, "--prompt", "Ho", "--max-length", 3, "--benchmark",
                   "--benchmark-dir", tmp_path, "--warmup", 0) == 0
    assert "could not write the views" in capsys.readouterr().err
    assert [r["run"]["prompt"] for r in store_records(tmp_path)] == ["Hi", "Hi", "Ho", "Ho"]


def test_a_folder_from_before_the_store_is_imported(model_path, tmp_path):
    legacy = [{"run_name": "run_1_baseline_ab", "optimized": False, "tokens_per_second": 10.0, "version": "v0"},
              {"run_name": "run_1_optimized_ab", "optimized": True, "tokens_per_second": 30.0, "version": "v1",
               "speedup": 3.0}]
    (tmp_path / "inference_metrics.json").write_text(json.dumps({"runs": legacy}), encoding="utf-8")
    assert run_cli("--model", model_path, "--prompt", "Hi", "--max-length", 3, "--benchmark",
                   "--benchmark-dir", tmp_path, "--warmup", 0) == 0
    runs = read_json(tmp_path)
    assert runs[:2] == legacy and len(runs) == 4
    assert [r["run"] for r in store_records(tmp_path)] == runs
    assert not list(tmp_path.glob("inference_metrics.json.corrupt-*"))
    summary = run_plots.comparison_summary(runs, "all")
    assert summary["baseline"]["n"] == summary["optimized"]["n"] == 2


# Seed 004's per-step CSV header, as the seed writes it.
SEED_004_STEP_HEADER = ("step,enqueue_latency_ms,total_latency_ms,tokens_per_sec,memory_throughput_gb_s,"
                        "param_throughput_gb_s,generated_text,platform,release,device,username,hostname,size,"
                        "quantize,seed,uuid")


def test_per_step_csv_has_seed_004_columns_first_and_a_row_per_token(model_path, tmp_path):
    assert run_cli("--model", model_path, "--prompt", "Hi there", "--max-length", 6, "--benchmark",
                   "--benchmark-dir", tmp_path, "--warmup", 0, "--seed", 7) == 0
    text = (tmp_path / "inference_steps.csv").read_text(encoding="utf-8")
    assert text.splitlines()[0].startswith(SEED_004_STEP_HEADER + ",")
    with open(tmp_path / "inference_steps.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    runs = read_json(tmp_path)
    records = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert len(rows) == sum(r["generated_length"] for r in runs) == 12
    for run, record in zip(runs, records):
        mine = [row for row in rows if row["run_name"] == run["run_name"]]
        assert [int(row["step"]) for row in mine] == list(range(run["generated_length"]))
        assert [int(row["token_id"]) for row in mine] == run["generated_ids"]
        # each token's own text (control characters escaped, as in every CSV view)
        assert "".join(row["generated_text"] for row in mine) == printable(run["generated_text"])
        for row, step in zip(mine, run["steps"]):
            wall = float(row["total_latency_ms"])
            assert float(row["tokens_per_sec"]) == pytest.approx(1e3 / wall)
            assert float(row["param_throughput_gb_s"]) == pytest.approx(step["weight_bytes"] / wall / 1e6)
            assert float(row["memory_throughput_gb_s"]) > float(row["param_throughput_gb_s"])  # + KV and activations
            size = f"{record['model']['num_parameters'] / 1e6:.3g}M"
            assert (row["uuid"], row["seed"], row["device"], row["size"]) == (record["record_id"], "7", "cpu", size)
            assert row["quantize"] == "f32" and row["hostname"] == record["hostname"] and row["platform"]
        # the engine's step times are its part of the caller's: they add up to less than the run's
        engine_ms, wall_ms = (sum(float(row[k]) for row in mine) for k in ("enqueue_latency_ms", "total_latency_ms"))
        assert engine_ms <= wall_ms <= 1e3 * run["total_time"] * 1.01
    assert "steps" not in read_csv(tmp_path)[0]  # the runs CSV leaves the step tables to their own view
