"""Grouping that never mixes settings: plots facet runs that differ in model, weight format,
matmul precision or threads and name them; compare-runs pairs identical settings only and says
"too few samples" where its test cannot tell."""

import numpy as np
import pytest

from celerinfer.plots import footnote_text, make_plots
from celerinfer.results import append_records, compare_runs, format_comparison_report, make_record, new_run_id
from celerinfer.results.stats import compare_samples, smallest_p_value, summarize


def latency_record(run_id, *, model="tiny", weights="f32", threads=2, version="v1", T=16, samples_ms=(1.0, 1.1, 0.9),
                   stamp="2026-01-01T00:00:00.000000+00:00"):
    ns = [int(s * 1e6) for s in samples_ms]
    metrics = {"total_ms": summarize(ns), "per_token_ms": summarize([n // T for n in ns]),
               "ttft_ms": summarize([n // 10 for n in ns])}
    metrics["tokens_per_s"] = T / (metrics["total_ms"]["median"] / 1e3)
    record = make_record("latency", version, {"description": "fp32 cache", "use_cache": True},
                         {"name": model, "num_parameters": 1234, "weight_dtype": weights, "matmul_precision": "highest"},
                         {"prompt_length": 8, "batch_size": 1, "T": T, "seed": 0}, metrics, run_id, threads=threads)
    record["timestamp"] = stamp
    return record


def test_plots_facet_runs_of_different_weight_formats(tmp_path):
    records = []
    for i, weights in enumerate(("f32", "bf16", "int8")):
        run = new_run_id()
        for version in ("v0", "v1"):
            for T in (8, 16):
                records.append(latency_record(run, weights=weights, version=version, T=T,
                                              samples_ms=[(1 + i) * T * (2 if version == "v0" else 1)] * 3,
                                              stamp=f"2026-01-0{i + 1}T00:00:00.000000+00:00"))
    written = make_plots(records, tmp_path, run_id="all")
    for weights in ("f32", "bf16", "int8"):  # one folder per format: none kept only the newest
        assert f"weights={weights}/latency_vs_T" in written
        assert (tmp_path / f"weights={weights}" / "latency_vs_T.png").stat().st_size > 0
    assert "latency_vs_T" not in written
    note = footnote_text(records[:4])
    for words in ("model: tiny", "weights: f32", "matmul: highest", "threads: 2", "CPU: "):
        assert words in note, note
    # one setting: no facets
    assert "latency_vs_T" in make_plots(records[:4], tmp_path / "one", run_id="all")


def test_compare_runs_never_pairs_different_models(tmp_path):
    path = tmp_path / "r.jsonl"
    a, b = new_run_id(), new_run_id()
    append_records(path, [latency_record(a, model="gpt2", samples_ms=(1000.0, 1001.0)),
                          latency_record(b, model="tiny", samples_ms=(1.0, 1.01),
                                         stamp="2026-01-02T00:00:00.000000+00:00")])
    report = compare_runs(path, a, b)
    assert report.rows == [] and len(report.only_a) == len(report.only_b) == 1
    text = format_comparison_report(report)
    assert "within noise" not in text and "not paired, only in run a" in text and "model=gpt2" in text
    assert "nothing to compare" in text


def test_compare_runs_pairs_threads_apart(tmp_path):
    path = tmp_path / "r.jsonl"
    a, b = new_run_id(), new_run_id()
    append_records(path, [latency_record(a, threads=1), latency_record(a, threads=2),
                          latency_record(b, threads=2, stamp="2026-01-02T00:00:00.000000+00:00")])
    report = compare_runs(path, a, b)
    assert [dict(k.setting)["threads"] for k, _ in report.rows] == ["2"]
    assert [dict(k.setting)["threads"] for k in report.only_a] == ["1"]


def test_two_samples_a_side_are_too_few_not_within_noise(tmp_path):
    path = tmp_path / "r.jsonl"
    a, b = new_run_id(), new_run_id()
    append_records(path, [latency_record(a, samples_ms=(1.0, 1.02)),
                          latency_record(b, samples_ms=(1000.0, 1010.0), stamp="2026-01-02T00:00:00.000000+00:00")])
    report = compare_runs(path, a, b)
    (key, c), = report.rows
    assert c.ratio > 900 and not c.significant and not c.enough_samples
    assert "too few samples" in c.verdict and "within noise" not in c.verdict
    text = format_comparison_report(report)
    assert "too few samples" in text and "within noise" not in text


@pytest.mark.parametrize("n_a, n_b, enough", [(2, 2, False), (3, 3, False), (2, 7, False), (2, 9, True), (4, 4, True),
                                              (3, 5, True), (1, 60, False), (2, 40, True)])
def test_smallest_p_value_decides_enough_samples(n_a, n_b, enough):
    rng = np.random.default_rng(n_a * 100 + n_b)
    a, b = rng.normal(1.0, 0.01, n_a), rng.normal(5.0, 0.01, n_b)  # completely separated
    c = compare_samples(a, b)
    assert (smallest_p_value(n_a, n_b) < 0.05) is enough and c.enough_samples is enough
    assert smallest_p_value(n_a, n_b) == pytest.approx(c.p_value)
    assert c.significant is enough  # separation is significant exactly when the sizes allow it
