"""The seeds' own formats: seed 002's config keys and its pandas analysis snippet, run verbatim
on a log `celerinfer bench` wrote with them."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from celerinfer import _core
from celerinfer.bench.config import load_config

# Seed 002's "Loading Results for Analysis", verbatim: it must run unchanged on our log.
SEED_002_SNIPPET = """\
import json
import pandas as pd

# Load all results
results = []
with open('benchmark/results.jsonl', 'r') as f:
    for line in f:
        results.append(json.loads(line))

df = pd.DataFrame(results)

# Filter to latency benchmark
latency_df = df[df['benchmark_name'] == 'latency_vs_T']

# Compare v1 vs v2 speedup
v1 = latency_df[latency_df['version'] == 'v1']
v2 = latency_df[latency_df['version'] == 'v2']
speedup = v1['time_total_ms_median'].values / v2['time_total_ms_median'].values
"""

# A config in seed 002's own keys (its "config.yaml Reference", scaled down).
SEED_002_CONFIG = """\
model_config:
  n_layer: 2
  n_head: 4
  n_embd: 64
  block_size: 256
  vocab_size: 300
  dropout: 0.0
  bias: true
dtype: bfloat16
prompt_length: 8
batch_size: 1
T_values: [8, 16]
T_star: 8
num_warmup_runs: 1
num_measure_runs: 3
seed: 42
log_file: benchmark/results.jsonl
versions: [v1, v2]
"""


@pytest.fixture(scope="module")
def seed_log(tmp_path_factory):
    root = tmp_path_factory.mktemp("seed002")
    (root / "benchmark").mkdir()
    (root / "benchmark" / "config.yaml").write_text(SEED_002_CONFIG)
    proc = subprocess.run([sys.executable, "-m", "celerinfer", "bench", "latency", "memory", "phase", "--config",
                           "benchmark/config.yaml", "--no-progress", "--threads", "1"], cwd=root,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in (root / "benchmark" / "results.jsonl").read_text().splitlines()]
    return root, records


def test_seed_002_snippet_runs_verbatim(seed_log):
    pytest.importorskip("pandas", reason="seed 002's snippet needs pandas (pip install pandas; in .[test])")
    root, records = seed_log
    probe = SEED_002_SNIPPET + textwrap.dedent("""
        import math
        assert len(v1) == len(v2) == 2, (len(v1), len(v2))
        assert all(math.isfinite(s) and s > 0 for s in speedup), speedup
        print(json.dumps([float(s) for s in speedup]))
    """)
    proc = subprocess.run([sys.executable, "-c", probe], cwd=root, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    # the snippet's speedup is the ratio of the nested medians, T by T
    nested = {(r["version"], r["params"]["T"]): r["metrics"]["total_ms"]["median"]
              for r in records if r["benchmark"] == "latency"}
    expected = [nested[("v1", T)] / nested[("v2", T)] for T in (8, 16)]
    assert json.loads(proc.stdout) == pytest.approx(expected, rel=1e-12)


def test_flat_fields_mirror_the_nested_ones(seed_log):
    _, records = seed_log
    for r in records:
        flags = r["version_flags"]
        assert r["version_description"] == flags["description"] and r["use_cache"] is True
        assert r["kv_cache_quant"] is (r["version"] == "v2") and r["cross_layer_sharing"] is False
        assert r["model_config"]["n_layer"] == 2 and r["model_config"]["n_embd"] == 64
        assert r["pretrained"] is None  # random weights of model_config's shape
        assert r["T"] == r["params"]["T"] and r["prompt_length"] == 8 and r["seed"] == 42
    latency = [r for r in records if r["benchmark_name"] == "latency_vs_T"]
    assert len(latency) == 4
    for r in latency:
        assert r["time_total_ms_median"] == r["metrics"]["total_ms"]["median"]
        assert r["time_total_ms_std"] == r["metrics"]["total_ms"]["std"]
        assert r["time_per_token_ms_median"] == pytest.approx(r["time_total_ms_median"] / r["T"])
    memory = [r for r in records if r["benchmark_name"] == "vram_vs_T"]
    assert memory and all(r["peak_memory_bytes"] == r["peak_activation_bytes"] + r["baseline_memory_bytes"]
                          for r in memory)
    phase = [r for r in records if r["benchmark_name"] == "phase_timing"]
    assert phase and set(phase[0]["time_phase_ms"]) == {"embedding", "attention", "mlp", "head", "other", "total"}


def test_seed_002_config_keys(tmp_path):
    def config(text):
        path = tmp_path / "c.yaml"
        path.write_text(text)
        return load_config(path)

    c = config(SEED_002_CONFIG)
    assert c["model"] is None and c["model_config"]["n_layer"] == 2
    assert c["weight_dtype"] == "bf16" and c["dtype"] == "float32"  # bf16 weights, f32 activations
    assert config("pretrained: smollm2\n")["model"] == "smollm2"
    assert config("pretrained: x.gguf\nmodel: y.gguf\n")["model"] == "y.gguf"  # model: wins
    assert config("dtype: bfloat16\nweight_dtype: int8\n")["weight_dtype"] == "int8"
    for text, words in (("pretrained: gpt2-medium\n", "no package ships GPT-2"),
                        ("dtype: float16\n", "float16"),
                        ("model_config: {n_layer: 2, n_head: 3, n_embd: 64, block_size: 8, vocab_size: 9}\n",
                         "multiple of n_head"),
                        ("model_config: {n_layer: 2, n_head: 4, n_embd: 64, block_size: 8}\n", "vocab_size"),
                        ("model_config: {n_layer: 2, n_head: 4, n_embd: 64, block_size: 8, vocab_size: 9, "
                         "n_inner: 5}\n", "n_inner"),
                        ("model_config: {n_layer: 2, n_head: 4, n_embd: 64, block_size: 8, vocab_size: 9, "
                         "bias: false}\n", "bias"),
                        ("model_config: {n_layer: 0, n_head: 4, n_embd: 64, block_size: 8, vocab_size: 9}\n",
                         "n_layer")):
        with pytest.raises(ValueError, match=words):
            config(text)


def test_seed_config_runs_from_the_cli_with_dtype_flag(tmp_path):
    log = tmp_path / "r.jsonl"
    proc = subprocess.run([sys.executable, "-m", "celerinfer", "bench", "latency", "--preset", "tiny", "--version",
                           "v1", "--T-values", "8", "--dtype", "bfloat16", "--num-measure-runs", "2", "--log-file",
                           str(log), "--no-progress"], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "XDG_CACHE_HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    record = json.loads(log.read_text().splitlines()[0])
    assert record["model"]["weight_dtype"] == "bf16" and record["model"]["matrix_formats"] == {"bf16": 15}
    # which kernels ran, in the subprocess's words (the same CPU: the same choice here)
    kernels = record["model"]["kernels"]
    assert kernels["simd_level"] == _core.simd_level() and kernels["prefill_gemm"] == _core.prefill_gemm("bf16")
