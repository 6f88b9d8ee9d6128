"""The command line, run as a user runs it (subprocesses): the seed workflow end to end."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import celerinfer

pytestmark = pytest.mark.cli
REPO = Path(__file__).resolve().parents[1]


def run(*args, env=None, cwd=None, check=True):
    result = subprocess.run([sys.executable, "-m", "celerinfer", *map(str, args)], capture_output=True, text=True,
                            env={**os.environ, **(env or {})}, cwd=cwd, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    return result


def test_random_model_forward_compare_workflow(tmp_path):
    model_path = tmp_path / "dump" / "minimind.json"
    run("random-model", "--hidden", 64, "--layers", 2, "--heads", 8, "--kvh", 2, "--vocab", 128, "--max-pos", 128,
        "--seq-len", 5, "--batch-size", 2, "--seed", 123, "--output", model_path)
    model = celerinfer.load(model_path)
    assert model.config.hidden_size == 64 and model.config.intermediate_size == 256
    assert model.inputs["input_ids"].shape == (2, 5)

    for backend in ("cpp", "torch"):
        out = run("forward", "--model", model_path, "--dump-dir", tmp_path, "--warmup", 1, "--backend", backend)
        assert " ms" in out.stdout
    cpp, ref = np.load(tmp_path / "logits_cpp.npy"), np.load(tmp_path / "logits_torch.npy")
    assert cpp.shape == ref.shape == (2, 5, 128) and cpp.dtype == np.float32
    np.testing.assert_array_equal(cpp, model.forward(model.inputs["input_ids"]))

    same = run("compare", tmp_path / "logits_cpp.npy", tmp_path / "logits_torch.npy")
    assert "MISMATCH" not in same.stdout and "MATCH" in same.stdout and "max abs err" in same.stdout
    np.save(tmp_path / "off.npy", cpp + 0.01 * np.abs(cpp).max())
    differ = run("compare", tmp_path / "off.npy", tmp_path / "logits_torch.npy", check=False)
    assert differ.returncode == 1 and "MISMATCH" in differ.stdout


def test_forward_reads_the_seed_environment_variables(tmp_path):
    model_path = tmp_path / "m.safetensors"
    run("random-model", "--output", model_path, "--seq-len", 3, "--batch-size", 1)
    dump = tmp_path / "env_dump"
    run("forward", env={"JSON_PATH": str(model_path), "DUMP_DIR": str(dump), "WARMUP": "0"})
    assert np.load(dump / "logits_cpp.npy").shape == (1, 3, 128)


def test_errors_are_messages_not_tracebacks(tmp_path):
    missing = run("forward", "--model", tmp_path / "nope.json", check=False)
    assert missing.returncode == 2 and "no such model file" in missing.stderr and "Traceback" not in missing.stderr
    bad = run("random-model", "--hidden", 30, "--heads", 4, "--output", tmp_path / "x.json", check=False)
    assert bad.returncode == 2 and "divisible" in bad.stderr
    shapes = tmp_path / "a.npy"
    np.save(shapes, np.zeros(3, np.float32))
    np.save(tmp_path / "b.npy", np.zeros(4, np.float32))
    mismatch = run("compare", shapes, tmp_path / "b.npy", check=False)
    assert mismatch.returncode == 1 and "shape mismatch" in mismatch.stdout
    pickled = tmp_path / "obj.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    refused = run("compare", pickled, shapes, check=False)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr


def test_console_script_and_module_agree():
    exe = shutil.which("celerinfer")
    if exe is None:
        pytest.skip("the celerinfer console script is not on PATH (package not installed with pip)")
    via_script = subprocess.run([exe, "--help"], capture_output=True, text=True, check=True).stdout
    assert via_script == run("--help").stdout.replace("__main__.py", "celerinfer")


SEED_SIZES = {
    "small": ("64", "2", "8", "2", "128", "5", "2"),
    "medium": ("256", "4", "8", "2", "512", "32", "4"),
    "large": ("1024", "12", "16", "2", "8192", "128", "16"),
}


@pytest.mark.slow
@pytest.mark.parametrize("size", list(SEED_SIZES))
def test_benchmark_sh_runs_the_seed_sizes_and_logits_match(tmp_path, size):
    env = {**os.environ, "DUMP_DIR": str(tmp_path), "WARMUP": "0",
           "CELERINFER": f"{sys.executable} -m celerinfer"}
    result = subprocess.run(["bash", str(REPO / "benchmarks" / "benchmark.sh"), *SEED_SIZES[size]],
                            capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "MISMATCH" not in result.stdout and "MATCH" in result.stdout
    hidden, layers, heads, kvh, vocab, seq, batch = map(int, SEED_SIZES[size])
    logits = np.load(tmp_path / "logits_cpp.npy")
    assert logits.shape == (batch, seq, vocab)


def test_versions_lists_the_registry():
    import json

    table = run("versions").stdout
    for v in celerinfer.versions():
        assert v["name"] in table and v["description"] in table
    assert json.loads(run("versions", "--json").stdout) == celerinfer.versions()


def test_generate_runs_each_version_and_matches_the_api(tmp_path):
    model_path = tmp_path / "m.safetensors"
    run("random-model", "--hidden", 64, "--heads", 4, "--kvh", 2, "--output", model_path, "--seq-len", 6,
        "--batch-size", 1)
    out = run("generate", "--model", model_path, "--version", "v0", "v2", "--max-new-tokens", 5).stdout
    model = celerinfer.load(model_path)
    expected = celerinfer.Engine(model, "v2").generate(model.inputs["input_ids"], 5).new_tokens[0]
    assert "[v0]" in out and "[v2]" in out and "TTFT" in out and "KV cache" in out
    assert "new tokens: " + " ".join(map(str, expected)) in out
    bad = run("generate", "--model", model_path, "--version", "v99", check=False)
    assert bad.returncode == 2 and "unknown version" in bad.stderr
