"""`celerinfer bench compare`: the setups it plans, the metrics and ratios it derives from the
measured times, the records it writes, Ctrl-C, the CLI and the plots. No speed is asserted."""

import math

import numpy as np
import pytest

import celerinfer
from celerinfer import _core, results
from celerinfer.bench import backend_comparison, backends, calibration
from celerinfer.cli import main

pytest.importorskip("torch", reason="the comparison's PyTorch baseline needs torch")

FLAGS = {v["name"]: v for v in celerinfer.versions()}
HAVE_LLAMA = backends.unavailable("llama.cpp") is None
TINY = dict(preset="tiny", prompt_length=12, gen_length=4, repeats=2, progress=False)


@pytest.fixture(autouse=True)
def quick_calibration(monkeypatch, tmp_path):
    """A small triad working set and a private calibration cache."""
    monkeypatch.setattr(calibration, "default_triad_mib", lambda: 8.0)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def test_plan_orders_references_first_and_matches_formats():
    setups = backend_comparison.plan(["celerinfer", "torch", "llama.cpp"], ["f32", "bf16", "int8"], ["v1", "v5", "v2"],
                          ["f16", "q8_0"], FLAGS)
    labels = [s.label for s in setups]
    assert labels == [
        "torch f32 / fp32 KV", "torch bf16 / bf16 KV",
        "llama.cpp f32 / f16 KV", "llama.cpp f32 / q8_0 KV + FA",
        "llama.cpp f16 / f16 KV", "llama.cpp f16 / q8_0 KV + FA",
        "llama.cpp q8_0 / f16 KV", "llama.cpp q8_0 / q8_0 KV + FA",
        "celerinfer f32 / v1 (fp32 KV)", "celerinfer bf16 / v1 (fp32 KV)", "celerinfer int8 / v1 (fp32 KV)",
        "celerinfer int8 / v5 (fp16 KV)", "celerinfer int8 / v2 (int8 KV)"]
    assert {s.format_class for s in setups if s.weight_dtype in ("bf16", "f16")} == {"16-bit"}
    # an Engine with f32 weights only: llama.cpp still runs every format, celerinfer f32 carries the versions
    older = backend_comparison.plan(["celerinfer", "llama.cpp"], ["f32", "bf16", "int8"], ["v1", "v5"], ["f16"], FLAGS, ("f32",))
    assert [s.label for s in older] == ["llama.cpp f32 / f16 KV", "llama.cpp f16 / f16 KV", "llama.cpp q8_0 / f16 KV",
                                        "celerinfer f32 / v1 (fp32 KV)", "celerinfer f32 / v5 (fp16 KV)"]
    assert backend_comparison.plan(["celerinfer"], ["f32"], ["v6"], [], FLAGS)[0].kv_cache == "int8-kivi"
    with pytest.raises(ValueError, match="has no KV cache"):
        backend_comparison.plan(["celerinfer"], ["f32"], ["v0"], [], FLAGS)
    with pytest.raises(ValueError, match="unknown weight dtype 'fp8'"):
        backend_comparison.plan(["celerinfer"], ["fp8"], ["v1"], [], FLAGS)
    with pytest.raises(ValueError, match="unknown backend 'vllm'"):
        backend_comparison.plan(["vllm"], ["f32"], ["v1"], [], FLAGS)


def test_plan_adds_high_matmul_precision_where_it_differs():
    """Where the CPU has AMX, f32 and int8 run v1 a second time at matmul precision "high"."""
    setups = backend_comparison.plan(["celerinfer", "torch"], ["f32", "bf16", "int8"], ["v1", "v2"], [], FLAGS,
                          high_dtypes=("f32", "int8"))
    assert [s.label for s in setups] == [
        "torch f32 / fp32 KV", "torch bf16 / bf16 KV",
        "celerinfer f32 / v1 (fp32 KV)", "celerinfer bf16 / v1 (fp32 KV)", "celerinfer int8 / v1 (fp32 KV)",
        "celerinfer f32 (high) / v1 (fp32 KV)", "celerinfer int8 (high) / v1 (fp32 KV)",
        "celerinfer int8 / v2 (int8 KV)"]
    assert [s.params()["matmul_precision"] for s in setups] == [None, None] + ["highest"] * 3 + ["high"] * 2 + ["highest"]
    # a high setup is compared like its format: f32 against torch fp32 and llama.cpp f32
    assert setups[5].format_class == "f32"
    want = [w for w in ("f32", "int8") if _core.prefill_gemm(w, "high") == "amx-bf16x3"]
    assert backend_comparison.high_precision_dtypes(["f32", "bf16", "int8"]) == want


def test_weight_bytes_scale_with_the_format():
    config = celerinfer.ModelConfig(**backend_comparison.PRESETS["1b"]["model"])
    f32 = backend_comparison.weight_bytes_per_token(config, "f32", 512)
    # every weight but the embedding table (one row is read), fp32
    assert f32 == pytest.approx(4 * (config.num_parameters - (config.vocab_size - 1) * config.hidden_size))
    # the matrices in the format, the norms and the embedding row in fp32
    H, L = config.hidden_size, config.num_hidden_layers
    fp32_part = 4 * ((2 * L + 1) * H + H)
    matrices = config.num_parameters - config.vocab_size * H - (2 * L + 1) * H
    assert backend_comparison.weight_bytes_per_token(config, "f16", 512) == pytest.approx(2 * matrices + fp32_part)
    assert backend_comparison.weight_bytes_per_token(config, "bf16", 512) == pytest.approx(2 * matrices + fp32_part)
    for fmt in ("q8_0", "int8"):  # one byte plus an fp16 scale per 32 values
        assert backend_comparison.weight_bytes_per_token(config, fmt, 512) == pytest.approx(matrices * 34 / 32 + fp32_part)


def test_traffic_above_the_ceiling_says_the_calibration_is_wrong():
    fine = backend_comparison.ceiling_metrics(decode_weight_gbps=15.0, ceiling_gbps=20.0)
    assert fine["ceiling_fraction"] == pytest.approx(0.75) and not fine["calibration_exceeded"]
    assert fine["calibration_note"] is None
    wrong = backend_comparison.ceiling_metrics(decode_weight_gbps=19.5, ceiling_gbps=15.0)
    assert wrong["ceiling_fraction"] is None and wrong["calibration_exceeded"]
    assert "19.5 GB/s" in wrong["calibration_note"] and "15.0 GB/s" in wrong["calibration_note"]
    base = {"pp_tokens_per_s": {"median": 1.0}, "tg_tokens_per_s": {"median": 1.0}, "decode_weight_gbps": 19.5}
    assert backend_comparison._bandwidth_cell({**base, **wrong}) == "above the ceiling: calibration wrong"
    assert backend_comparison._bandwidth_cell({**base, **fine}) == "75%"
    assert backend_comparison._bandwidth_cell({**base, "bandwidth_fraction": 0.5}) == "50%"  # an older record


def test_speed_metrics_and_ratios_come_from_the_samples():
    runs = [(2_000_000, [1_000_000] * 4), (4_000_000, [2_000_000] * 4)]  # 2 ms / 4 ms prefill of 8 tokens
    m = backend_comparison.speed_metrics(runs, prompt_length=8, gen_length=4, weight_bytes=1e6, bandwidth_gbps=10.0)
    assert m["pp_tokens_per_s"]["samples"] == [4000.0, 2000.0] and m["pp_tokens_per_s"]["median"] == 3000.0
    assert m["tg_tokens_per_s"]["samples"] == [1000.0, 500.0]
    assert m["decode_ms_per_token"]["n"] == 8
    assert m["decode_weight_gbps"] == pytest.approx(1e6 * 750 / 1e9)
    assert m["bandwidth_fraction"] == pytest.approx(m["decode_weight_gbps"] / 10.0)

    def record(setup, pp, tg):
        return {"params": setup.params(), "metrics": {"pp_tokens_per_s": {"median": pp, "samples": [pp]},
                                                      "tg_tokens_per_s": {"median": tg, "samples": [tg]}}}

    def speeds(ratios):  # the ratios without their CIs (checked below)
        return None if ratios is None else {k: v for k, v in ratios.items() if not k.endswith("_ci95")}

    torch_ref = record(backend_comparison.Setup("torch", "f32", "fp32"), 1000.0, 100.0)
    slow = record(backend_comparison.Setup("llama.cpp", "q8_0", "f16"), 1500.0, 400.0)
    fast = record(backend_comparison.Setup("llama.cpp", "q8_0", "q8_0", flash_attn=True), 1200.0, 500.0)
    other = record(backend_comparison.Setup("llama.cpp", "f32", "f16"), 9e9, 9e9)
    torch_bf16 = record(backend_comparison.Setup("torch", "bf16", "bf16"), 2000.0, 150.0)
    setup = backend_comparison.Setup("celerinfer", "int8", "fp32", "v1")
    r = backend_comparison.ratios(setup, m, [torch_ref, torch_bf16, slow, fast, other])
    assert speeds(r["vs_torch"]) == {"pp": 3.0, "tg": 7.5}  # always torch fp32, the last torch record or not
    assert r["vs_torch_same_format"] is None  # no torch setup in the 8-bit class
    assert speeds(r["vs_llama_cpp"]) == {"pp": 2.0, "tg": 1.5, "pp_reference": slow["params"]["label"],
                                         "tg_reference": fast["params"]["label"]}
    # each ratio's CI: ours resampled (2 samples) over the one reference sample
    assert r["vs_llama_cpp"]["pp_ci95"] == pytest.approx([2000 / 1500, 4000 / 1500])
    assert r["vs_llama_cpp"]["tg_ci95"] == pytest.approx([500 / 500, 1000 / 500])
    bf16 = backend_comparison.ratios(backend_comparison.Setup("celerinfer", "bf16", "fp32", "v1"), m, [torch_ref, torch_bf16])
    assert speeds(bf16["vs_torch"]) == {"pp": 3.0, "tg": 7.5}
    assert speeds(bf16["vs_torch_same_format"]) == {"pp": 1.5, "tg": 5.0}
    assert backend_comparison.ratios(backend_comparison.Setup("torch", "f32", "fp32"), m, [torch_ref]) == {
        "vs_torch": None, "vs_torch_same_format": None, "vs_llama_cpp": None}
    # torch bf16 against torch fp32, and no same-format ratio of its own
    torch_own = backend_comparison.ratios(backend_comparison.Setup("torch", "bf16", "bf16"), m, [torch_ref])
    assert {k: speeds(v) for k, v in torch_own.items()} == {
        "vs_torch": {"pp": 3.0, "tg": 7.5}, "vs_torch_same_format": None, "vs_llama_cpp": None}


def _check_records(run, log):
    stored = results.read_records(log)
    assert [r["benchmark"] for r in stored] == ["calibrate"] + ["compare"] * len(run.setups)
    calibrated = stored[0]["metrics"]["bandwidth_gbps"]["median"]
    by_label = {r["params"]["label"]: r for r in stored[1:]}
    assert list(by_label) == [s.label for s in run.setups]
    torch_rec = by_label["torch f32 / fp32 KV"]
    for r in stored[1:]:
        m, p = r["metrics"], r["params"]
        assert r["run_id"] == run.run_id and r["status"] == "ok" and r["threads"] == run.threads
        assert p["prompt_length"] == 12 and p["gen_length"] == 4 and p["num_measure_runs"] == 2
        assert m["pp_tokens_per_s"]["n"] == 2 and m["decode_ms_per_token"]["n"] == 2 * 4
        rounds = m["bandwidth_gbps_rounds"]  # the calibration, then one triad between rounds
        assert rounds[0] == calibrated and len(rounds) == p["num_measure_runs"]
        assert m["bandwidth_gbps"] == pytest.approx(float(np.median(rounds)))
        assert math.isclose(m["bandwidth_fraction"], m["decode_weight_gbps"] / m["bandwidth_gbps"])
        # the ceiling: the best triad or read-only stream repetition of the run, never below the triad
        assert m["bandwidth_ceiling_gbps"] >= max(rounds[1:] + [stored[0]["metrics"]["bandwidth_ceiling_gbps"]])
        if m["calibration_exceeded"]:
            assert m["ceiling_fraction"] is None and "calibration is wrong" in m["calibration_note"]
        else:
            assert math.isclose(m["ceiling_fraction"], m["decode_weight_gbps"] / m["bandwidth_ceiling_gbps"])
        if p["backend"] == "celerinfer":
            assert r["version"] in FLAGS and r["version_flags"]["name"] == r["version"]
        else:
            assert r["version"] is None
        if p["backend"] != "torch":
            for phase, metric in (("pp", "pp_tokens_per_s"), ("tg", "tg_tokens_per_s")):
                want = m[metric]["median"] / torch_rec["metrics"][metric]["median"]
                assert math.isclose(m["vs_torch"][phase], want)
    return stored


@pytest.mark.slow
def test_tiny_run_records_every_setup(tmp_path):
    log = tmp_path / "results.jsonl"
    names = ("celerinfer", "torch", "llama.cpp") if HAVE_LLAMA else ("celerinfer", "torch")
    run = backend_comparison.run_backend_comparison(**TINY, log_file=log, backend_names=names, versions=["v1", "v5", "v6"],
                              llama_kv=["f16", "q8_0"])
    assert not run.interrupted
    if HAVE_LLAMA:  # tiny's head_dim is 16
        assert "multiple of 32" in run.skipped["llama.cpp f32 / q8_0 KV + FA"]
    stored = _check_records(run, log)
    backends_run = {r["params"]["backend"] for r in stored[1:]}
    assert backends_run == set(names)
    for r in stored[1:]:  # the noise guard judged every setup over all its rounds
        assert r["noise"]["verdict"] in ("ok", "untrustworthy") and r["noise"]["seconds"] > 0, r["noise"]
    celer = [r for r in stored[1:] if r["params"]["backend"] == "celerinfer"]
    assert [r["version"] for r in celer][-2:] == ["v5", "v6"]
    high = [r["params"]["weight_dtype"] for r in celer if r["params"]["matmul_precision"] == "high"]
    assert high == backend_comparison.high_precision_dtypes(celerinfer.WEIGHT_DTYPES)
    if HAVE_LLAMA:
        for r in celer:
            fmt = backend_comparison.MATCHING_GGUF[r["params"]["weight_dtype"]]
            refs = [x for x in stored[1:] if x["params"]["backend"] == "llama.cpp"
                    and x["params"]["weight_dtype"] == fmt]
            best = max(x["metrics"]["tg_tokens_per_s"]["median"] for x in refs)
            assert math.isclose(r["metrics"]["vs_llama_cpp"]["tg"], r["metrics"]["tg_tokens_per_s"]["median"] / best)
    table = backend_comparison.format_table(stored)
    for r in stored[1:]:
        assert r["params"]["label"] in table
    from celerinfer import plots

    written = plots.make_plots(stored, tmp_path / "plots")
    assert {"backend_comparison", "speedup_comparison"} <= set(written)


@pytest.mark.skipif(HAVE_LLAMA, reason="llama-cpp-python is installed: the skip path does not apply")
def test_a_missing_backend_is_skipped_with_its_reason(tmp_path):
    run = backend_comparison.run_backend_comparison(**TINY, log_file=tmp_path / "r.jsonl", backend_names=("celerinfer", "llama.cpp"),
                              versions=["v1"])
    assert "llama.cpp" in run.skipped and "pip install" in run.skipped["llama.cpp"]
    high = backend_comparison.high_precision_dtypes(celerinfer.WEIGHT_DTYPES)  # again at "high" where it differs
    assert [s.backend for s in run.setups] == ["celerinfer"] * (len(celerinfer.WEIGHT_DTYPES) + len(high))
    assert [s.weight_dtype for s in run.setups] == list(celerinfer.WEIGHT_DTYPES) + high
    if not high:
        assert "no AMX" in run.skipped["celerinfer (high)"]


def test_setups_run_round_robin(tmp_path, monkeypatch):
    """Round r runs every setup once (a burst of load hits one run of each, not every run of
    one); the triad is re-measured between rounds and the records use the median."""
    order = []

    def fake_once(self, setup, gguf_files, ids):
        order.append(setup.label)
        return (1_000_000, [500_000] * self.gen_length)

    monkeypatch.setattr(backend_comparison.BackendComparison, "_measure_once", fake_once)
    triads = iter([10.0, 30.0])
    monkeypatch.setattr(backend_comparison.BackendComparison, "_triad_gbps", lambda self, cal: next(triads))
    run = backend_comparison.run_backend_comparison(**{**TINY, "repeats": 3}, log_file=tmp_path / "r.jsonl",
                              backend_names=("torch", "celerinfer"), versions=["v1"], weight_dtypes=["f32", "int8"])
    labels = [s.label for s in run.setups]
    assert order == labels * 3
    stored = [r for r in results.read_records(tmp_path / "r.jsonl") if r["benchmark"] == "compare"]
    assert [r["params"]["label"] for r in stored] == labels
    first = stored[0]["metrics"]
    assert first["bandwidth_gbps_rounds"][1:] == [10.0, 30.0]
    assert first["bandwidth_gbps"] == sorted(first["bandwidth_gbps_rounds"])[1]
    assert all(r["metrics"]["pp_tokens_per_s"]["n"] == 3 for r in stored)


def test_ctrl_c_keeps_the_timed_runs(tmp_path, monkeypatch):
    calls = []
    real_run = backends.CelerinferRunner.run

    def run_then_interrupt(self, ids, n):
        calls.append(n)
        # round 1: celerinfer f32 v1's warm-up and timed run, then Ctrl-C in bf16's warm-up
        if len(calls) > 2:
            raise KeyboardInterrupt
        return real_run(self, ids, n)

    monkeypatch.setattr(backends.CelerinferRunner, "run", run_then_interrupt)
    monkeypatch.setattr(backends.TorchRunner, "run", lambda self, ids, n: (1_000_000, [500_000] * n))
    log = tmp_path / "r.jsonl"
    code = main(["bench", "compare", "--preset", "tiny", "--prompt-length", "12", "--gen-len", "4", "--repeats", "2",
                 "--backends", "torch", "celerinfer", "--version", "v1", "v5", "--log-file", str(log),
                 "--no-progress"])
    assert code == 130
    stored = results.read_records(log)
    labels = [r["params"]["label"] for r in stored if r["benchmark"] == "compare"]
    assert labels == ["torch f32 / fp32 KV", "torch bf16 / bf16 KV", "celerinfer f32 / v1 (fp32 KV)"]
    assert stored[-1]["status"] == "interrupted" and stored[-1]["metrics"]["pp_tokens_per_s"]["n"] == 1


def test_cli_prints_the_table_and_checks_its_input(tmp_path, capsys):
    log = tmp_path / "r.jsonl"
    args = ["bench", "compare", "--preset", "tiny", "--prompt-length", "12", "--gen-len", "3", "--repeats", "1",
            "--backends", "celerinfer", "--version", "v1", "--log-file", str(log), "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    # (a row may carry " (noisy)" when other processes load the machine: the noise guard says so)
    assert "| celerinfer f32 / v1 (fp32 KV)" in out and "pp12 tok/s" in out and "tg3 tok/s" in out
    assert main(["bench", "compare", "latency", "--preset", "tiny"]) == 2
    assert "compare runs alone" in capsys.readouterr().err
    assert main([*args, "--version", "v0"]) == 2
    assert "has no KV cache" in capsys.readouterr().err


def test_a_preset_grows_to_fit_a_long_prompt(tmp_path):
    run = backend_comparison.run_backend_comparison(preset="tiny", prompt_length=1100, gen_length=2, repeats=1,
                                                    progress=False, log_file=tmp_path / "r.jsonl",
                                                    backend_names=("celerinfer",), versions=["v1"])
    assert run.model.config.max_position_embeddings == 1103
    assert run.records[-1]["model"]["config"]["max_position_embeddings"] == 1103


def test_a_gguf_model_is_compared_on_its_own_file(tmp_path):
    """--model x.gguf: celerinfer runs the file's own formats and llama.cpp the file itself
    (weight dtype "stored"), next to the int8/q8_0 pair; llama.cpp's logits are measured
    against celerinfer's in the same format."""
    model = celerinfer.random_model(hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                                    num_key_value_heads=2, vocab_size=300, max_position_embeddings=64, seed=5)
    path = tmp_path / "m.gguf"
    model.save(path, weight_dtype="q4_1")
    names = ("celerinfer", "llama.cpp") if HAVE_LLAMA else ("celerinfer",)
    run = backend_comparison.run_backend_comparison(model=str(path), prompt_length=12, gen_length=3, repeats=1,
                                                    progress=False, log_file=tmp_path / "r.jsonl",
                                                    backend_names=names, versions=["v1"], llama_kv=["f16"])
    records = [r for r in run.records if r["benchmark"] == "compare"]
    labels = {(r["params"]["backend"], r["params"]["weight_dtype"]) for r in records}
    assert ("celerinfer", "stored") in labels and ("celerinfer", "int8") in labels
    stored = next(r for r in records if r["params"]["backend"] == "celerinfer" and r["params"]["weight_dtype"] == "stored")
    assert stored["metrics"]["packed_weight_bytes"] < 0.25 * 4 * model.config.num_parameters  # 4-bit, not f32
    if HAVE_LLAMA:
        assert ("llama.cpp", "stored") in labels and stored["metrics"]["vs_llama_cpp"]["tg_reference"].startswith(
            "llama.cpp stored")
        for r in records:
            if r["params"]["backend"] == "llama.cpp":
                a = r["metrics"]["logits_vs_celerinfer"]
                assert a["positions"] == 12 and 0 <= a["kl_mean"] < 0.05 and a["top1_agreement"] >= 0.75
    with pytest.raises(ValueError, match="not a GGUF file"):
        backend_comparison.run_backend_comparison(preset="tiny", prompt_length=4, gen_length=2, repeats=1, progress=False,
                                                  log_file=tmp_path / "r2.jsonl", backend_names=("celerinfer",),
                                                  weight_dtypes=["stored"], versions=["v1"])
