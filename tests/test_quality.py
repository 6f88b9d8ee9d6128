"""Quality on real text (bench perplexity): the corpus from an installed package, windows with
a stride, the bootstrap interval, and each method's KL measured through its own cache path."""

import json

import numpy as np
import pytest

import celerinfer
from celerinfer.bench import perplexity
from celerinfer.bench.config import load_config
from celerinfer.bench.runner import BenchRun
from celerinfer.cli import main
from celerinfer.io import corpus

needs_licenses = pytest.mark.skipif(not corpus.LICENSES_DIR.is_dir(),
                                    reason="the licenses corpus is Debian's base-files (/usr/share/common-licenses)")


@needs_licenses
def test_the_licenses_corpus_holds_each_text_once():
    text, description = corpus.corpus_text("licenses")
    assert "base-files" in description and len(text) > 100_000
    assert text.count("GNU GENERAL PUBLIC LICENSE\n                       Version 3") == 1  # GPL -> GPL-3 read once
    with pytest.raises(FileNotFoundError, match="a name \\(licenses\\) or a text file"):
        corpus.corpus_text("no-such-corpus")


def test_windows_with_a_stride_score_each_token_once(tmp_path):
    path = tmp_path / "t.npy"
    np.save(path, np.arange(100) % 50)
    windows, first, _ = perplexity.load_windows(str(path), 10, 20, 50, stride=8)
    assert windows.shape == (10, 20) and first == 11
    assert np.array_equal(windows[1], np.arange(8, 28) % 50)
    mask = perplexity.scored_mask(windows.shape, first)
    # window k > 0 scores the predictions of tokens 20 + 8(k-1) .. 27 + 8(k-1): each target once
    targets = [int(windows[0, t + 1]) for t in range(19)] + [int(windows[k, t + 1]) for k in range(1, 10)
                                                              for t in range(19) if mask[k, t]]
    assert targets == [int(i % 50) for i in range(1, 20 + 8 * 9)]
    with pytest.raises(ValueError, match="stride must be in"):
        perplexity.load_windows(str(path), 2, 20, 50, stride=21)
    with pytest.raises(ValueError, match="less than one window"):
        perplexity.load_windows(str(path), 2, 200, 50)


def test_the_bootstrap_interval_holds_the_estimate_and_narrows():
    rng = np.random.default_rng(0)
    sums = rng.gamma(5.0, 20.0, size=40)
    counts = np.full(40, 50)
    point = float(np.exp(sums.sum() / counts.sum()))
    low, high = perplexity.bootstrap_perplexity_ci(sums, counts)
    assert low < point < high
    low4, high4 = perplexity.bootstrap_perplexity_ci(sums[:4], counts[:4])
    assert high4 - low4 > high - low


@needs_licenses
def test_each_method_is_scored_through_its_own_cache(tmp_path):
    """On the licences (byte tokens, 600-token windows: past KIVI's 128-token residual window and
    the eviction budgets of 512): the baseline's KL is 0, v0 matches it, and every method that
    changes what attention sees has KL > 1e-12 (v0's rounding differences are ~1e-14; a method that silently ran the fp32 cache would
    not). v11 merges only the pairs closer than 0.8 rad, few of random layers' near-orthogonal
    ones: it stays next to the baseline here."""
    config = load_config(preset="tiny", overrides={
        "versions": ["v0", "v1", "v2", "v3", "v5", "v7", "v8", "v9", "v10", "v11"],
        "perplexity": {"data": "licenses", "sequence_length": 600, "num_sequences": 2}})
    run = BenchRun(config, log_file=tmp_path / "r.jsonl", progress=False)
    run.run(["perplexity"])
    by_version = {r["version"]: r["metrics"] for r in run.records if r["benchmark"] == "perplexity"}
    assert by_version["v1"]["kl_vs_baseline"] == 0 and by_version["v1"]["top1_agreement"] == 1
    assert by_version["v0"]["kl_vs_baseline"] < 1e-12 and by_version["v11"]["kl_vs_baseline"] < 1e-3
    for v in ("v2", "v3", "v5", "v7", "v8", "v9", "v10"):
        assert by_version[v]["kl_vs_baseline"] > 1e-12, v  # fp16 (v5) on this tiny model: ~1e-10
    assert by_version["v8"]["kl_vs_baseline"] > by_version["v7"]["kl_vs_baseline"] > by_version["v2"]["kl_vs_baseline"]
    for m in by_version.values():
        low, high = m["perplexity_ci95"]
        assert low <= m["perplexity"] <= high and m["num_tokens"] == 2 * 599
        assert len(m["by_position"]["nll"]) == perplexity.POSITION_BUCKETS
    assert by_version["v9"]["kv_cache_bytes_per_token"] < by_version["v1"]["kv_cache_bytes_per_token"]


@needs_licenses
def test_bench_perplexity_flags(tmp_path, capsys):
    log = tmp_path / "r.jsonl"
    assert main(["bench", "perplexity", "--preset", "tiny", "--corpus", "licenses", "--context-length", "64",
                 "--stride", "32", "--num-windows", "3", "--version", "v1", "v2",
                 "--quality-weight-dtypes", "f32", "int8", "--log-file", str(log), "--no-progress"]) == 0
    records = [json.loads(line) for line in log.read_text().splitlines()]
    ppl = [r for r in records if r["benchmark"] == "perplexity"]
    assert [(r["params"]["weight_dtype"], r["version"]) for r in ppl] == [
        ("f32", "v1"), ("f32", "v2"), ("int8", "v1"), ("int8", "v2")]
    assert all(r["params"]["stride"] == 32 and r["metrics"]["num_windows"] == 3 for r in ppl)
    assert ppl[2]["metrics"]["kl_vs_baseline"] > 0  # int8 weights against the f32 reference
    assert main(["bench", "perplexity", "--preset", "tiny", "--context-length", "64", "--stride", "65",
                 "--log-file", str(log)]) == 2
    with pytest.raises(ValueError, match="unknown config key"):
        load_config(preset="tiny", overrides={"perplexity": {"contxt": 3}})


@needs_licenses
def test_the_quality_plots_draw_a_real_run(tmp_path):
    """quality_vs_memory, quality_vs_position and quantization_impact from a tiny run of two
    versions and two weight formats; none of them without perplexity records."""
    from celerinfer import plots

    config = load_config(preset="tiny", overrides={
        "versions": ["v1", "v2", "v5"],
        "perplexity": {"data": "licenses", "sequence_length": 48, "num_sequences": 3, "weight_dtypes": ["f32", "int8"]}})
    run = BenchRun(config, log_file=tmp_path / "r.jsonl", progress=False)
    run.run(["perplexity"])
    written = plots.make_plots(run.records, tmp_path / "plots", registry=celerinfer.versions())
    for name in ("quality", "quality_vs_memory", "quality_vs_position", "quantization_impact"):
        assert written[name].stat().st_size > 10_000, name
    fig = plots.plot_quality_vs_memory(run.records)
    xs = sorted({round(float(c.get_offsets()[0][0]), 3) for c in fig.axes[0].collections})
    assert len(xs) == 3  # fp32, int8 and fp16 caches: three memory sizes
    assert plots.plot_quantization_impact([r for r in run.records if r["params"].get("weight_dtype") == "f32"]) is None


@pytest.mark.parametrize("setting, message", [
    ({"base": "v8", "value_group": 0}, "int2 needs a group size >= 1"),
    ({"base": "v9", "sinks": 4, "window": 2000}, "the tokens kept \\(2004\\) exceed the model's context \\(1024"),
    ({"base": "v9", "sinks": 9, "window": 8}, "sinks \\(9\\) must not exceed the window \\(8\\)"),
    ({"base": "v10", "heavy": 0}, "heavy-hitter eviction keeps a window >= 1 and heavy >= 1"),
    ({"base": "v7", "residual": 48}, "need a residual window that is a multiple of them"),
    ({"base": "v11", "merge_angle": 4.0}, "merge_angle must be in \\(0, pi\\]"),
    ({"base": "v1", "key_bits": 8}, "version setting 'key_bits' is 8 but the knobs give 32"),
])
def test_impossible_kv_settings_are_refused_naming_the_setting(setting, message):
    model = celerinfer.random_model(hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                                    num_key_value_heads=1, vocab_size=64, max_position_embeddings=1024)
    with pytest.raises(ValueError, match=message):
        celerinfer.Engine(model, setting)
    assert celerinfer.Engine(model, "v9", max_seq_len=64).generate(np.arange(8), 4).tokens.shape == (1, 12)
