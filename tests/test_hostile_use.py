"""Hostile use the reliability issue found, each a regression test: JSON nested past the
decoder's stack in the results log, a checkpoint folder saved over, an unwritable log found
before measuring, big-endian arrays, and arguments the binding would have answered with
pybind11's "incompatible function arguments" listing."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import celerinfer
from celerinfer.bench import PRESETS, load_config
from celerinfer.bench.runner import BenchRun
from celerinfer.cli.app import main as cli_main
from celerinfer.io.folder_save import save_folder
from celerinfer.results import bounded_json
from celerinfer.results.store import ResultsWarning, append_records, read_records

DEEP = "[" * 100_000


@pytest.fixture(scope="module")
def model():
    return celerinfer.random_model(celerinfer.ModelConfig(**PRESETS["tiny"]["model"]), seed=3)


# ---- JSON nesting --------------------------------------------------------------------------

def test_json_nesting_is_bounded():
    assert bounded_json.loads("[" * 64 + "]" * 64) is not None
    for text in ("[" * 65 + "]" * 65, DEEP, '{"a":' * 70 + "1" + "}" * 70):
        with pytest.raises(ValueError, match="nested deeper than 64 levels"):
            bounded_json.loads(text)
    assert bounded_json.depth({"a": [1, {"b": []}]}) == 4 and bounded_json.depth(5) == 0


def _tiny_log(tmp_path):
    """A results log of one real latency run on the tiny preset, then a line of 100,000 '['."""
    log = tmp_path / "results.jsonl"
    cfg = load_config(preset="tiny", overrides={"versions": ["v1", "v2"], "T_values": [4], "num_warmup_runs": 0,
                                                "num_measure_runs": 2})
    BenchRun(cfg, log_file=log, progress=False).run(["latency"])
    with open(log, "a", encoding="utf-8") as f:
        f.write(DEEP + "\n")
    return log


@pytest.mark.parametrize("command", [["export-csv"], ["plot"], ["compare-runs"]])
def test_a_deeply_nested_results_line_is_skipped_by_every_reader(tmp_path, command, capsys):
    log = _tiny_log(tmp_path)
    with pytest.warns(ResultsWarning, match="skipped 1 damaged line"):
        assert len(read_records(log)) == 2
    extra = {"export-csv": ["--output", str(tmp_path / "out.csv")], "plot": ["--out-dir", str(tmp_path / "plots")],
             "compare-runs": []}[command[0]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResultsWarning)
        status = cli_main([*command, "--log-file", str(log), *extra])
    err = capsys.readouterr().err
    assert "RecursionError" not in err and "Traceback" not in err
    # compare-runs needs two runs: with one it says so (exit 2), it does not crash
    assert status == (2 if command == ["compare-runs"] else 0), err


# ---- saving over a checkpoint ----------------------------------------------------------------

def _sharded_folder(folder):
    folder.mkdir()
    shards = [folder / f"model-0000{i}-of-00002.safetensors" for i in (1, 2)]
    for s in shards:
        s.write_bytes(b"old shard")
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"a": shards[0].name, "b": shards[1].name}}))
    (folder / "config.json").write_text('{"old": true}')
    (folder / "tokenizer.json").write_text("keep me")
    return shards


def test_saving_over_a_sharded_checkpoint_replaces_it_whole(model, tmp_path):
    folder = tmp_path / "ckpt"
    shards = _sharded_folder(folder)
    replaced = model.save(folder)
    assert set(replaced) == {*shards, folder / "model.safetensors.index.json", folder / "config.json"}
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json"]
    again = celerinfer.load(folder)
    ids = celerinfer.random_tokens(1, 5, model.config.vocab_size, seed=1)
    np.testing.assert_array_equal(celerinfer.Engine(again, "v1").forward(ids), celerinfer.Engine(model, "v1").forward(ids))
    # saving again replaces exactly the two files it wrote
    assert {p.name for p in model.save(folder)} == {"config.json", "model.safetensors"}


def test_a_failed_folder_save_leaves_the_folder_as_it_was(tmp_path):
    folder = tmp_path / "ckpt"
    _sharded_folder(folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def half_written(staging):
        (tmp_path / "seen").write_text(staging)
        with open(f"{staging}/model.safetensors", "wb") as f:
            f.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        save_folder(half_written, folder)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # staging removed too


def test_saving_a_file_over_a_file_says_so(model, tmp_path):
    path = tmp_path / "m.safetensors"
    assert model.save(path) == []
    assert model.save(path) == [path]


# ---- an unwritable log is found before measuring -------------------------------------------

def test_an_unwritable_log_fails_before_the_model_is_even_loaded(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    cfg = load_config(preset="tiny", overrides={"versions": ["v1"], "T_values": [4]})
    loaded = []
    monkeypatch.setattr(BenchRun, "_load_model", lambda self: loaded.append(1) or (None, {}))
    with pytest.raises(OSError, match="a_file is not a folder"):
        BenchRun(cfg, log_file=blocker / "results.jsonl", progress=False)
    assert loaded == []
    status = cli_main(["bench", "latency", "--preset", "tiny", "--T-values", "4", "--version", "v1",
                       "--log-file", str(blocker / "results.jsonl")])
    err = capsys.readouterr().err
    assert status == 2 and "cannot write the results log" in err and "a_file is not a folder" in err
    assert loaded == []


def test_run_benchmark_checks_its_folder_before_measuring(model, tmp_path, capsys):
    path = tmp_path / "m.safetensors"
    model.save(path)
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    status = cli_main(["run", "--model", str(path), "--prompt-ids", "1", "2", "--max-length", "3", "--benchmark",
                       "--benchmark-dir", str(blocker / "bench")])
    out, err = capsys.readouterr()
    assert status == 2 and "cannot write the benchmark folder" in err
    assert "Tokens/Second" not in out  # nothing was measured


# ---- byte order ------------------------------------------------------------------------------

def test_big_endian_arrays_hold_the_same_values(model, tmp_path):
    from celerinfer import _core
    from celerinfer.model import Model
    from celerinfer.io.model_files import load

    folder = tmp_path / "hf"
    model.save(folder)
    from safetensors.numpy import load_file  # noqa: PLC0415 (the test extra has it)

    native = load_file(folder / "model.safetensors")
    swapped = {k: v.astype(v.dtype.newbyteorder(">")) for k, v in native.items()}
    assert all(not v.dtype.isnative for v in swapped.values())
    a = Model(_core.model_from_hf_tensors(model.config, swapped, "big-endian"))
    b = load(folder)
    ids = celerinfer.random_tokens(1, 6, model.config.vocab_size, seed=2)
    np.testing.assert_array_equal(celerinfer.Engine(a, "v1").forward(ids.astype(">i8")),
                                  celerinfer.Engine(b, "v1").forward(ids))


# ---- arguments are named -----------------------------------------------------------------------

@pytest.mark.parametrize("call, message", [
    (lambda m: celerinfer.ModelConfig(hidden_size="64"), "hidden_size must be an integer, got '64'"),
    (lambda m: celerinfer.ModelConfig(vocab_size=10**30), "vocab_size is out of range"),
    (lambda m: celerinfer.ModelConfig(rope_theta="big"), "rope_theta must be a number"),
    (lambda m: celerinfer.ModelConfig(tie_word_embeddings=1), "tie_word_embeddings must be True or False"),
    (lambda m: celerinfer.ModelConfig(hidden_act=3), "hidden_act must be a string"),
    (lambda m: celerinfer.set_num_threads("2"), "threads must be an integer"),
    (lambda m: celerinfer.Engine(m, "v1", threads=2.5), "threads must be an integer"),
    (lambda m: celerinfer.random_model(m.config, seed=2**64), "seed must be < 18446744073709551616"),
    (lambda m: celerinfer.random_tokens(1, 10**30, 10), "seq_len must be <"),
    (lambda m: celerinfer.Engine(m, "v1").generate(np.array([[1, 2]]), max_new_tokens=10**30), "max_new_tokens must be <"),
    (lambda m: celerinfer.Engine(m, "v1").generate(np.array([[1, 2]]), max_new_tokens=2, top_k=2**70), "top_k must be <"),
])
def test_bad_arguments_are_named_not_listed(model, call, message):
    with pytest.raises(ValueError, match=message) as info:
        call(model)
    assert "incompatible" not in str(info.value)


def test_numpy_scalars_are_good_arguments():
    c = celerinfer.ModelConfig(hidden_size=np.int64(32), num_attention_heads=np.int32(4),
                               tie_word_embeddings=np.bool_(True), rope_theta=np.float32(1e4))
    assert (c.hidden_size, c.num_attention_heads, c.tie_word_embeddings, c.rope_theta) == (32, 4, True, 1e4)


# ---- a damaged RoPE table is named, not called an overflow -----------------------------------

@pytest.mark.parametrize("value", [float("nan"), float("inf"), 1e30])
def test_a_damaged_rope_table_is_named_at_load(model, tmp_path, value):
    import base64

    path = tmp_path / "m.json"
    model.save(path)
    doc = json.loads(path.read_text())
    table = doc["rope"]["sin"]
    values = np.frombuffer(base64.b64decode(table["data"]), dtype=np.float32).copy()
    values[5] = value
    table["data"] = base64.b64encode(values.tobytes()).decode()
    path.write_text(json.dumps(doc))
    with pytest.raises(celerinfer.FormatError, match=r"rope\.sin holds .* at flat index 5 .*\[-1, 1\]"):
        celerinfer.load(path)


# ---- the command line: messages, not tracebacks; a closed pipe ends quietly -----------------

def test_malformed_yaml_config_is_a_message(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("versions: [v1\n  bad: : :\n")
    assert cli_main(["bench", "latency", "--preset", "tiny", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "not valid YAML" in err and str(bad) in err and "Traceback" not in err


def test_a_closed_pipe_ends_quietly():
    import subprocess
    import sys

    # `celerinfer versions | head -c 10`, many times over so that the output outgrows the pipe:
    # the first write after the reader has gone ends that call with 141, quietly
    child = ("import sys; from celerinfer.cli.app import main; "
             "sys.exit(max(main(['versions']) for _ in range(300)))")
    with subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        proc.stdout.read(10)
        proc.stdout.close()
        err = proc.stderr.read().decode()
        status = proc.wait(timeout=120)
    assert status == 141 and "Traceback" not in err and "Broken pipe" not in err, err


# ---- a GGUF tokenizer's metadata (the gguf_tokenizer fuzz target's findings) -----------------

def _bpe_metadata(**changes):
    tokens = ["a", "b", "ab", "<s>"]
    meta = {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.tokens": tokens, "tokenizer.ggml.merges": ["a b"],
            "tokenizer.ggml.bos_token_id": 3, "tokenizer.ggml.eos_token_id": 3}
    meta.update(changes)
    return meta


@pytest.mark.parametrize("changes, message", [
    ({"tokenizer.ggml.merges": ["a c"]}, r"merges\[0\] 'a c' names 'c'"),            # was: tokenizers' bare Exception
    ({"tokenizer.ggml.merges": ["b a"]}, r"merges\[0\] 'b a' names 'ba'"),           # was: a PanicException
    ({"tokenizer.ggml.bos_token_id": -1}, r"bos_token_id is -1, not an id of its 4 tokens"),  # was: OverflowError
    ({"tokenizer.ggml.eos_token_id": 4}, r"eos_token_id is 4"),
    ({"tokenizer.ggml.tokens": ["a", 7, "ab", "<s>"]}, r"tokens\[1\] is not a string"),
])
def test_bad_tokenizer_metadata_is_named(changes, message):
    from celerinfer.io.gguf_tokenizer import GGUFTokenizer

    with pytest.raises(ValueError, match=message):
        GGUFTokenizer(_bpe_metadata(**changes), vocab_size=8)
    good = GGUFTokenizer(_bpe_metadata(), vocab_size=8)
    assert good.decode(good.encode("ab")) == "ab"


def test_a_fifo_named_like_a_model_is_refused_not_waited_on(tmp_path):
    import os
    import subprocess
    import sys

    fifo = tmp_path / "x.safetensors"
    os.mkfifo(fifo)
    # in a child with a timeout: a loader that opened the FIFO would block for ever on no writer
    child = subprocess.run([sys.executable, "-c", f"import celerinfer; celerinfer.load({str(fifo)!r})"],
                           capture_output=True, text=True, timeout=60)
    assert child.returncode == 1 and "not a regular file" in child.stderr, child.stderr


def test_the_writability_check_leaves_no_file_behind(tmp_path):
    from celerinfer.results.store import check_writable

    check_writable(tmp_path / "logs" / "results.jsonl")  # the folder is made, the log is not
    assert [p.name for p in tmp_path.iterdir()] == ["logs"] and list((tmp_path / "logs").iterdir()) == []
