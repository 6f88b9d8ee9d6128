"""Plots from result records (docs/results_schema.md): files, and what the figures show."""

from __future__ import annotations

import copy
import math
import struct
import zlib

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from celerinfer import plots  # noqa: E402

# ---- synthetic records, following docs/results_schema.md ---------------------------------------

RUN_OLD, RUN_NEW = "a" * 32, "b" * 32
TS_OLD, TS_NEW = "2026-11-22T09:00:00.000000+00:00", "2026-11-23T15:20:48.123456+00:00"
VERSIONS = ("v0", "v1", "v2")
T_VALUES = (16, 32, 64)
P, BATCH, T_STAR = 8, 2, 32
MODEL_CONFIG = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 8, "num_key_value_heads": 2,
                "vocab_size": 128, "intermediate_size": 256, "max_position_embeddings": 256}
NUM_PARAMS = 123_456
WEIGHT_BYTES = 4 * NUM_PARAMS
FLAGS = {
    "v0": {"description": "no KV cache", "use_cache": False, "kv_dtype": None, "kv_quant": None,
           "cross_layer_sharing": False, "kivi_block": None},
    "v1": {"description": "fp32 KV cache", "use_cache": True, "kv_dtype": "float32", "kv_quant": None,
           "cross_layer_sharing": False, "kivi_block": None},
    "v2": {"description": "INT8 KV cache", "use_cache": True, "kv_dtype": "int8", "kv_quant": "per_token",
           "cross_layer_sharing": False, "kivi_block": None},
}
KV_PER_TOKEN = {"v0": 0, "v1": 2 * 2 * 2 * 8 * 4, "v2": 2 * 2 * 2 * (8 + 4)}  # layers * K,V * kvh * bytes
PER_TOKEN_MS = {"v0": lambda T: 0.01 * (P + T), "v1": lambda T: 0.10, "v2": lambda T: 0.12}
PHASE_MS = {"v0": (0.5, 9.0, 6.0, 1.0, 0.4), "v1": (0.3, 1.5, 3.0, 0.9, 0.3), "v2": (0.3, 1.8, 3.0, 0.9, 0.35)}
PPL = {"v0": 127.9, "v1": 127.9, "v2": 128.4}
KL = {"v0": 0.0, "v1": 0.0, "v2": 3.0e-4}
TOP1 = {"v0": 1.0, "v1": 1.0, "v2": 0.985}
PEAK_GBPS, PEAK_GFLOPS = 12.5, 80.0
ROOF = {  # (version, phase): (arithmetic intensity, achieved GFLOP/s)
    ("v0", "prefill"): (9.0, 40.0), ("v0", "decode"): (4.0, 20.0),
    ("v1", "prefill"): (9.0, 42.0), ("v1", "decode"): (0.5, 4.0),
    ("v2", "prefill"): (9.5, 41.0), ("v2", "decode"): (0.9, 6.0),
}


def stat(values, unit="ms", raw=True):
    """A statistics object of the given values (in `unit`), like celerinfer.results.stats writes."""
    v = np.asarray(values, dtype=np.float64)
    n = int(v.size)
    med = float(np.median(v))
    out = {"unit": unit, "n": n, "median": med, "mean": float(v.mean()),
           "std": float(v.std(ddof=1)) if n > 1 else None, "min": float(v.min()), "max": float(v.max()),
           "p90": float(np.percentile(v, 90)), "p99": float(np.percentile(v, 99)),
           "ci95_low": float(np.percentile(v, 40)) if n > 1 else med,
           "ci95_high": float(np.percentile(v, 60)) if n > 1 else med}
    if raw and unit == "ms":
        out["samples_ns"] = [int(round(x * 1e6)) for x in v]
    elif raw:
        out["samples"] = [float(x) for x in v]
    return out


def record(benchmark, version, params, metrics, run_id=RUN_NEW, timestamp=TS_NEW, status="ok"):
    return {
        "schema_version": 1, "record_id": f"{zlib.crc32(repr((benchmark, version, params, run_id)).encode()):032x}",
        "run_id": run_id, "timestamp": timestamp, "hostname": "testhost", "package_version": "0.1.0",
        "git_commit": None, "python_version": "3.11.7", "numpy_version": np.__version__, "torch_version": None,
        "cpu_model": "Test CPU 9000", "cpu_count": 4, "threads": 2, "device": "cpu", "gpu_name": None,
        "dtype": "float32",
        "model": {"name": "tiny-test", "config": dict(MODEL_CONFIG), "num_parameters": NUM_PARAMS,
                  "weight_bytes": WEIGHT_BYTES, "seed": 0},
        "benchmark": benchmark, "version": version, "version_flags": FLAGS.get(version), "params": params,
        "metrics": metrics, "status": status,
    }


def gen_params(T):
    return {"prompt_length": P, "batch_size": BATCH, "T": T, "seed": 0, "num_warmup_runs": 1,
            "num_measure_runs": 3}


def latency_record(v, T, rng, scale=1.0, **kw):
    per_token = PER_TOKEN_MS[v](T) * scale * (1 + 0.05 * rng.random(3 * (T - 1)))
    total = [per_token.sum() / 3 + 0.5 + 0.01 * i for i in range(3)]
    m = {"total_ms": stat(total), "ttft_ms": stat([0.5, 0.51, 0.52]), "per_token_ms": stat(per_token)}
    m["tokens_per_s"] = BATCH * T / (m["total_ms"]["median"] / 1e3)
    m["decode_tokens_per_s"] = BATCH / (m["per_token_ms"]["median"] / 1e3)
    return record("latency", v, gen_params(T), m, **kw)


def memory_record(v, T, **kw):
    cached = P + T - 1
    kv = KV_PER_TOKEN[v] * cached * BATCH
    return record("memory", v, gen_params(T), {
        "kv_cache_bytes": kv, "kv_cache_capacity_bytes": KV_PER_TOKEN[v] * 256 * BATCH,
        "engine_bytes": 50_000 + kv, "weight_bytes": WEIGHT_BYTES, "peak_rss_bytes": 80 * 2**20 + 1000 * T,
        "kv_bytes_per_token": float(KV_PER_TOKEN[v])}, **kw)


def phase_record(v, **kw):
    phases = {name: stat([ms, ms * 1.02, ms * 0.99]) for name, ms in zip(plots.PHASES, PHASE_MS[v])}
    total = stat([sum(PHASE_MS[v]) * f for f in (1.0, 1.02, 0.99)])
    share = {name: phases[name]["median"] / total["median"] for name in plots.PHASES}
    return record("phase", v, gen_params(T_STAR), {"phases_ms": phases, "total_ms": total, "phase_share": share},
                  **kw)


def perplexity_record(v, **kw):
    params = {"baseline_version": "v1", "data": "random", "sequence_length": 64, "num_sequences": 2,
              "prefill_length": 1, "seed": 0}
    return record("perplexity", v, params, {"perplexity": PPL[v], "loss": math.log(PPL[v]),
                                            "kl_vs_baseline": KL[v], "top1_agreement": TOP1[v], "num_tokens": 126},
                  **kw)


def roofline_record(v, phase, **kw):
    ai, gflops = ROOF[(v, phase)]
    nbytes = 1_000_000.0
    flops = ai * nbytes
    t_ms = flops / (gflops * 1e9) * 1e3
    metrics = {"flops": flops, "bytes": nbytes, "arithmetic_intensity": ai, "time_ms": stat([t_ms] * 3),
               "achieved_gflops": gflops, "achieved_gbps": gflops / ai, "peak_gflops": PEAK_GFLOPS,
               "peak_gbps": PEAK_GBPS, "fraction_of_peak_flops": gflops / PEAK_GFLOPS,
               "fraction_of_bandwidth": gflops / ai / PEAK_GBPS, "ridge_point": PEAK_GFLOPS / PEAK_GBPS,
               "bound": "memory" if ai < PEAK_GFLOPS / PEAK_GBPS else "compute",
               "by_op": {op: {"flops": flops / 6, "bytes": nbytes / 6}
                         for op in ("embedding", "qkv", "attention", "o_proj", "mlp", "head")}}
    return record("roofline", v, {**gen_params(16), "phase": phase}, metrics, **kw)


def calibrate_record(gbps=PEAK_GBPS, **kw):
    bw = stat([gbps * 0.98, gbps, gbps * 1.01], unit="GB/s")
    mm = stat([PEAK_GFLOPS * 0.99, PEAK_GFLOPS, PEAK_GFLOPS * 1.02], unit="GFLOP/s")
    return record("calibrate", None, {"threads": 2, "bytes": 64 * 2**20, "matmul_size": 256},
                  {"bandwidth_gbps": bw, "matmul_gflops": mm}, **kw)


def full_records(**kw):
    rng = np.random.default_rng(0)
    recs = []
    for v in VERSIONS:
        for T in T_VALUES:
            recs += [latency_record(v, T, rng, **kw), memory_record(v, T, **kw)]
        recs += [phase_record(v, **kw), perplexity_record(v, **kw)]
        recs += [roofline_record(v, "prefill", **kw), roofline_record(v, "decode", **kw)]
    recs.append(calibrate_record(**kw))
    return recs


@pytest.fixture(scope="module")
def records():
    return full_records()


def of(recs, benchmark, version=None, T=None):
    return [r for r in recs if r["benchmark"] == benchmark and (version is None or r["version"] == version)
            and (T is None or r["params"].get("T") == T)]


def lines_by_gid(ax):
    return {line.get_gid(): line for line in ax.get_lines() if line.get_gid()}


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


# ---- make_plots ----------------------------------------------------------------------------------

def test_make_plots_writes_every_plot(records, tmp_path):
    out = plots.make_plots(records, tmp_path / "plots")
    compare = {"backend_comparison", "speedup_comparison"}  # bench compare's: tests/test_compare_backends.py
    # drawn from a real run's per-position, per-format records: tests/test_quality.py
    quality = {"quality_vs_memory", "quality_vs_position", "quantization_impact"}
    machines = {"device_comparison"}  # several machines, or a sweep: tests/test_sweep.py
    assert set(out) | compare | quality | machines == set(plots.PLOTS) == {
        "latency_vs_T", "memory_vs_T", "phase_breakdown", "quality", "roofline", "speedup",
        "latency_distribution", "memory_throughput", "param_throughput", "summary_stats", "tradeoff", *compare,
        *quality, *machines}
    for name, path in out.items():
        assert path == tmp_path / "plots" / f"{name}.png"
        assert path.is_file()
        width, height = png_size(path)
        assert 600 <= width <= 2500 and 400 <= height <= 1500, (name, width, height)
        assert path.stat().st_size > 20_000, name
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == sorted(f"{n}.png" for n in out)


def test_make_plots_other_formats(records, tmp_path):
    out = plots.make_plots(of(records, "perplexity"), tmp_path, formats=("png", "svg"))
    assert list(out) == ["quality"]
    assert out["quality"].suffix == ".png"
    assert (tmp_path / "quality.svg").read_text().lstrip().startswith("<?xml")


def test_missing_benchmarks_give_no_file_and_no_error(records, tmp_path):
    assert plots.make_plots([], tmp_path / "none") == {}
    assert not (tmp_path / "none").exists()
    only_latency = of(records, "latency")
    out = plots.make_plots(only_latency, tmp_path)
    assert set(out) == {"latency_vs_T", "speedup", "latency_distribution", "summary_stats"}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{n}.png" for n in out)
    # no v0: no speedup; memory + latency: memory throughput but no trade-off without quality
    no_v0 = [r for r in records if r["version"] != "v0" and r["benchmark"] in ("latency", "memory")]
    made = {name for name, func in plots.PLOTS.items() if func(no_v0) is not None}
    assert made == {"latency_vs_T", "latency_distribution", "memory_vs_T", "memory_throughput", "param_throughput",
                    "summary_stats"}
    for func in plots.PLOTS.values():
        assert func([], None) is None
        assert func(of(records, "calibrate"), None) is None


def test_partial_and_null_data_do_not_crash(tmp_path):
    rng = np.random.default_rng(1)
    lat = latency_record("v1", 16, rng)
    one = stat([0.1], raw=False)  # n = 1: std null, no samples
    lat["metrics"].update(per_token_ms=one, tokens_per_s=None, decode_tokens_per_s=None)
    lat["metrics"]["total_ms"] = stat([2.0])
    lat2 = latency_record("v2", 16, rng)
    lat2["version"], lat2["version_flags"] = "v7", {"description": "an unknown version"}
    lat2["metrics"]["total_ms"]["median"] = None
    mem = memory_record("v1", 16)
    mem["metrics"].update(kv_cache_bytes=None, peak_rss_bytes=None, kv_bytes_per_token=None)
    ppl = perplexity_record("v2")
    ppl["metrics"].update(kl_vs_baseline=None, top1_agreement=None)
    roof = roofline_record("v1", "decode")
    roof["metrics"].update(peak_gbps=None, peak_gflops=None)
    phase = phase_record("v1")
    phase["metrics"]["phases_ms"]["mlp"] = None
    junk = {"benchmark": "latency", "version": "v3", "metrics": None}
    recs = [lat, lat2, mem, ppl, roof, phase, junk, "not a record"]
    out = plots.make_plots(recs, tmp_path)
    assert set(out) == {"latency_vs_T", "latency_distribution", "memory_vs_T", "memory_throughput", "quality",
                        "roofline", "phase_breakdown", "param_throughput", "summary_stats"}
    fig = plots.plot_latency(recs)
    assert set(lines_by_gid(fig.axes[0])) == {"v1"}  # v7's total is null
    assert set(lines_by_gid(fig.axes[1])) == {"v1", "v7"}
    assert lines_by_gid(fig.axes[1])["v1"].get_ydata()[0] == pytest.approx(0.1)


# ---- run selection -------------------------------------------------------------------------------

def test_latest_run_is_chosen_by_default(records, tmp_path):
    rng = np.random.default_rng(5)
    old = [latency_record(v, T, rng, scale=10.0, run_id=RUN_OLD, timestamp=TS_OLD) for v in VERSIONS
           for T in T_VALUES]
    new = of(records, "latency")
    mixed = new[:3] + old + new[3:]  # order in the log must not matter
    fig = plots.plot_latency(mixed)
    want = [r["metrics"]["per_token_ms"]["median"] for r in of(new, "latency", "v1")]
    np.testing.assert_allclose(lines_by_gid(fig.axes[1])["v1"].get_ydata(), want)
    assert RUN_NEW[:8] in plots.footnote_text(plots.select_records(mixed))
    # an explicit run, and "all" (the newest record per version and T wins)
    fig = plots.plot_latency(mixed, run_id=RUN_OLD)
    want_old = [r["metrics"]["per_token_ms"]["median"] for r in of(old, "latency", "v1")]
    np.testing.assert_allclose(lines_by_gid(fig.axes[1])["v1"].get_ydata(), want_old)
    fig = plots.plot_latency(mixed, run_id=RUN_OLD[:6])  # a unique prefix
    np.testing.assert_allclose(lines_by_gid(fig.axes[1])["v1"].get_ydata(), want_old)
    fig = plots.plot_latency(mixed, run_id="all")
    np.testing.assert_allclose(lines_by_gid(fig.axes[1])["v1"].get_ydata(), want)
    with pytest.raises(ValueError, match="matches no record"):
        plots.make_plots(mixed, tmp_path, run_id="c" * 32)
    # per benchmark: the old run's memory records still plot when the new run has none
    old_mem = [memory_record(v, 16, run_id=RUN_OLD, timestamp=TS_OLD) for v in VERSIONS]
    sel = plots.select_records(new + old_mem)
    assert {r["run_id"] for r in of(sel, "latency")} == {RUN_NEW}
    assert {r["run_id"] for r in of(sel, "memory")} == {RUN_OLD}


def test_versions_order_and_colors(records):
    assert plots.versions_order(["v10", "v2", "v0", "v1", "v9", "zz", None]) == ["v0", "v1", "v2", "v9", "v10", "zz"]
    assert plots.versions_order(records) == list(VERSIONS)
    known = [plots.version_color(f"v{i}") for i in range(7)]
    assert len(set(known)) == 7
    extra = [plots.version_color(f"v{i}") for i in range(7, 12)]
    assert len(set(extra)) == 5 and not set(extra) & set(known)
    assert plots.version_color("custom") == plots.version_color("custom")
    # the same version has the same color in different plots
    lat = lines_by_gid(plots.plot_latency(records).axes[0])
    mem = lines_by_gid(plots.plot_memory(records).axes[0])
    for v in VERSIONS:
        assert lat[v].get_color() == mem[v].get_color() == plots.PALETTE[VERSIONS.index(v)]


def test_footnote_names_model_threads_cpu_and_run(records):
    fig = plots.plot_latency(records)
    texts = " ".join(t.get_text() for t in fig.texts)
    for part in ("tiny-test", "threads: 2", "Test CPU 9000", RUN_NEW[:8], "2026-11-23"):
        assert part in texts, part
    assert "latency" in fig.get_suptitle().lower()


# ---- the content of each plot --------------------------------------------------------------------

def test_latency_plot_shows_the_medians(records):
    fig = plots.plot_latency(records)
    total_ax, per_ax = fig.axes[:2]
    assert "(ms)" in total_ax.get_ylabel() and "(ms/token)" in per_ax.get_ylabel()
    assert "tokens" in total_ax.get_xlabel()
    for ax, key in ((total_ax, "total_ms"), (per_ax, "per_token_ms")):
        lines = lines_by_gid(ax)
        assert list(lines) == list(VERSIONS)
        assert len(ax.get_lines()) == len(VERSIONS)
        for v in VERSIONS:
            np.testing.assert_array_equal(lines[v].get_xdata(), T_VALUES)
            np.testing.assert_allclose(lines[v].get_ydata(),
                                       [r["metrics"][key]["median"] for r in of(records, "latency", v)])
        assert len(ax.collections) == len(VERSIONS)  # one set of error bars per version
    # v0's per-token latency grows with T, v1's does not
    per = lines_by_gid(per_ax)
    assert per["v0"].get_ydata()[-1] > 2 * per["v0"].get_ydata()[0]
    assert per["v1"].get_ydata()[-1] < 1.2 * per["v1"].get_ydata()[0]
    legend = [t.get_text() for t in total_ax.get_legend().get_texts()]
    assert legend == ["v0 (no cache)", "v1 (fp32 cache)", "v2 (INT8 cache)"]


def test_memory_plot(records):
    fig = plots.plot_memory(records)
    kv_ax, mem_ax = fig.axes[:2]
    assert "MiB" in kv_ax.get_ylabel() and "MiB" in mem_ax.get_ylabel()
    kv = lines_by_gid(kv_ax)
    assert list(kv) == list(VERSIONS)
    for v in VERSIONS:
        want = [r["metrics"]["kv_cache_bytes"] / 2**20 for r in of(records, "memory", v)]
        np.testing.assert_allclose(kv[v].get_ydata(), want)
    assert np.all(kv["v0"].get_ydata() == 0)
    other = lines_by_gid(mem_ax)
    np.testing.assert_allclose(other["weights"].get_ydata(), [WEIGHT_BYTES / 2**20] * 2)
    np.testing.assert_allclose(other["engine:v1"].get_ydata(),
                               [r["metrics"]["engine_bytes"] / 2**20 for r in of(records, "memory", "v1")])
    np.testing.assert_allclose(other["rss:v2"].get_ydata(),
                               [r["metrics"]["peak_rss_bytes"] / 2**20 for r in of(records, "memory", "v2")])


def test_phase_breakdown_stacks_the_phase_medians(records):
    fig = plots.plot_phase_breakdown(records)
    ax = fig.axes[0]
    assert "(ms)" in ax.get_ylabel() and str(T_STAR) in ax.get_title()
    bars = {c.get_label(): c for c in ax.containers}
    assert list(bars) == list(plots.PHASES)
    bottom = np.zeros(len(VERSIONS))
    for p in plots.PHASES:
        heights = [rect.get_height() for rect in bars[p]]
        want = [of(records, "phase", v)[0]["metrics"]["phases_ms"][p]["median"] for v in VERSIONS]
        np.testing.assert_allclose(heights, want)
        np.testing.assert_allclose([rect.get_y() for rect in bars[p]], bottom)
        bottom += want
    shares = {c.get_label(): c for c in fig.axes[1].containers}
    tops = sum(np.array([rect.get_height() for rect in shares[f"_share:{p}"]]) for p in plots.PHASES)
    np.testing.assert_allclose(tops, 100.0)


def test_quality_plot(records):
    fig = plots.plot_quality(records)
    ppl_ax, kl_ax = fig.axes[:2]
    bars = {c.get_label(): c for c in ppl_ax.containers}["_perplexity"]
    np.testing.assert_allclose([b.get_height() for b in bars], [PPL[v] for v in VERSIONS])
    assert [b.get_hatch() for b in bars] == [None, "//", None]  # v1 is the baseline
    np.testing.assert_allclose(lines_by_gid(ppl_ax)["baseline"].get_ydata(), [PPL["v1"]] * 2)
    kl = {c.get_label(): c for c in kl_ax.containers}["_kl"]
    np.testing.assert_allclose([b.get_height() for b in kl], [KL[v] for v in VERSIONS])
    assert "nats" in kl_ax.get_ylabel() and kl_ax.get_yscale() == "linear"
    texts = " ".join(t.get_text() for t in kl_ax.texts)
    assert "top-1 98.5%" in texts and "KL 0 (baseline)" in texts
    # values spanning decades: log scale
    wide = copy.deepcopy(of(records, "perplexity")) + [perplexity_record("v2")]
    wide[-1]["metrics"]["kl_vs_baseline"] = 0.5
    wide[-1]["version"] = "v3"
    assert plots.plot_quality(wide).axes[1].get_yscale() == "log"


def test_roofline_ceilings_are_the_measured_peaks(records):
    fig = plots.plot_roofline(records)
    ax = fig.axes[0]
    assert ax.get_xscale() == ax.get_yscale() == "log"
    assert "flop/byte" in ax.get_xlabel() and "GFLOP/s" in ax.get_ylabel()
    lines = lines_by_gid(ax)
    np.testing.assert_allclose(lines["compute"].get_ydata(), [PEAK_GFLOPS] * 2)
    x, y = lines["bandwidth"].get_xdata(), lines["bandwidth"].get_ydata()
    np.testing.assert_allclose(np.asarray(y) / np.asarray(x), [PEAK_GBPS] * 2)
    assert lines["bandwidth"].get_xdata()[-1] == pytest.approx(PEAK_GFLOPS / PEAK_GBPS)  # meets at the ridge
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("measured" in t and "GB/s" in t for t in legend)
    points = {c.get_gid(): c.get_offsets()[0] for c in ax.collections if c.get_gid()}
    assert set(points) == {f"{v}:{p}" for v, p in ROOF}
    for (v, p), (ai, gf) in ROOF.items():
        np.testing.assert_allclose(points[f"{v}:{p}"], [ai, gf])
    texts = [t.get_text() for t in ax.texts]
    assert f"v1 decode {4.0 / (0.5 * PEAK_GBPS) * 100:.0f}% of BW" in texts  # 0.5 flop/B < ridge 6.4
    assert f"v1 prefill {42.0 / PEAK_GFLOPS * 100:.0f}% of peak FLOP/s" in texts
    # peaks missing from the roofline records: taken from the calibrate record
    no_peaks = copy.deepcopy(records)
    for r in of(no_peaks, "roofline"):
        r["metrics"]["peak_gbps"] = r["metrics"]["peak_gflops"] = None
    lines = lines_by_gid(plots.plot_roofline(no_peaks).axes[0])
    np.testing.assert_allclose(lines["compute"].get_ydata(), [PEAK_GFLOPS] * 2)


def test_speedup_is_the_tokens_per_s_ratio(records):
    fig = plots.plot_speedup(records)
    ax = fig.axes[0]
    lines = lines_by_gid(ax)
    assert set(lines) == {"v1", "v2", "baseline"}
    base = [r["metrics"]["tokens_per_s"] for r in of(records, "latency", "v0")]
    for v in ("v1", "v2"):
        want = [r["metrics"]["tokens_per_s"] / b for r, b in zip(of(records, "latency", v), base)]
        np.testing.assert_allclose(lines[v].get_ydata(), want)
    assert "v0" in ax.get_ylabel()


def test_latency_distribution_at_the_largest_T(records):
    fig = plots.plot_latency_distribution(records)
    ax = fig.axes[0]
    T = max(T_VALUES)
    assert str(T) in ax.get_title() and "(ms/token)" in ax.get_ylabel()
    lat = [of(records, "latency", v, T)[0]["metrics"]["per_token_ms"] for v in VERSIONS]
    medians = lines_by_gid(ax)
    np.testing.assert_allclose([medians[f"median:{v}"].get_ydata()[0] for v in VERSIONS],
                               [s["median"] for s in lat])
    marks = {c.get_gid(): c.get_offsets() for c in ax.collections if c.get_gid() in ("p90", "p99")}
    np.testing.assert_allclose(marks["p99"][:, 1], [s["p99"] for s in lat])
    np.testing.assert_allclose(marks["p90"][:, 1], [s["p90"] for s in lat])


def test_memory_throughput(records):
    fig = plots.plot_memory_throughput(records)
    ax = fig.axes[0]
    assert "GB/s" in ax.get_ylabel()
    lines = lines_by_gid(ax)
    assert set(lines) == set(VERSIONS) | {"bandwidth"}
    np.testing.assert_allclose(lines["bandwidth"].get_ydata(), [PEAK_GBPS] * 2)  # the calibrate median
    for v in VERSIONS:
        want = []
        for T in T_VALUES:
            per_s = of(records, "latency", v, T)[0]["metrics"]["per_token_ms"]["median"] / 1e3
            nbytes = WEIGHT_BYTES + KV_PER_TOKEN[v] * BATCH * (P + T / 2)
            want.append(nbytes / per_s / 1e9)
        np.testing.assert_allclose(lines[v].get_ydata(), want)
    # without memory records: the roofline decode records' achieved GB/s
    fig = plots.plot_memory_throughput([r for r in records if r["benchmark"] != "memory"])
    lines = lines_by_gid(fig.axes[0])
    ai, gf = ROOF[("v2", "decode")]
    np.testing.assert_allclose(lines["v2"].get_ydata(), [gf / ai])


def test_param_throughput_is_packed_weight_bytes_over_the_step_time(records):
    fig = plots.plot_param_throughput(records)
    lines = lines_by_gid(fig.axes[0])
    assert set(lines) == set(VERSIONS) | {"bandwidth"}
    for v in VERSIONS:
        want = [WEIGHT_BYTES / (of(records, "latency", v, T)[0]["metrics"]["per_token_ms"]["median"] / 1e3) / 1e9
                for T in T_VALUES]
        np.testing.assert_allclose(lines[v].get_ydata(), want)
    # the packed bytes (an int8 or 4-bit engine's) win over the fp32 size
    packed = [dict(r, metrics={**r["metrics"], "packed_weight_bytes": WEIGHT_BYTES / 4}) if r["benchmark"] == "memory"
              else r for r in records]
    quarter = lines_by_gid(plots.plot_param_throughput(packed).axes[0])
    np.testing.assert_allclose(quarter["v1"].get_ydata(), lines["v1"].get_ydata() / 4)
    assert plots.plot_param_throughput(of(records, "latency")) is None  # no memory records: no weight bytes


def test_summary_stats_bars_are_the_decode_medians(records):
    fig = plots.plot_summary_stats(records)
    ax = fig.axes[0]
    bars = {p.get_gid(): p.get_height() for p in ax.patches if p.get_gid()}
    T = max(T_VALUES)
    assert set(bars) == set(VERSIONS) and str(T) in ax.get_title()
    for v in VERSIONS:
        assert bars[v] == pytest.approx(of(records, "latency", v, T)[0]["metrics"]["decode_tokens_per_s"])
    table = fig.axes[1].tables[0]
    cells = {(row, col): cell.get_text().get_text() for (row, col), cell in table.get_celld().items()}
    assert cells[(0, 2)] == "decode tok/s" and [cells[(i + 1, 0)] for i in range(len(VERSIONS))] == list(VERSIONS)
    assert plots.plot_summary_stats(of(records, "memory")) is None


def test_tradeoff(records):
    fig = plots.plot_tradeoff(records)
    ax = fig.axes[0]
    assert "MiB" in ax.get_xlabel() and "tokens/s" in ax.get_ylabel() and f"T = {max(T_VALUES)}" in ax.get_xlabel()
    sc = next(c for c in ax.collections if c.get_gid() == "versions")
    T = max(T_VALUES)
    want = [[of(records, "memory", v, T)[0]["metrics"]["kv_cache_bytes"] / 2**20,
             of(records, "latency", v, T)[0]["metrics"]["decode_tokens_per_s"]] for v in VERSIONS]
    np.testing.assert_allclose(sc.get_offsets(), want)
    np.testing.assert_allclose(sc.get_array(), [KL[v] for v in VERSIONS])
    assert "KL" in fig.axes[-1].get_ylabel()  # the colorbar
    assert plots.plot_tradeoff([r for r in records if r["benchmark"] != "perplexity"]) is None


def test_plot_functions_save_to_a_path(records, tmp_path):
    fig = plots.plot_speedup(records, tmp_path / "sub" / "s.png")
    assert fig is not None
    assert png_size(tmp_path / "sub" / "s.png")[0] > 500


# ---- styles from the registry ----------------------------------------------------------------------

TODAYS_COLORS = ("#4d4d4d", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")


def test_styles_follow_the_registry_order():
    import celerinfer

    registry = celerinfer.versions()  # passed in as data: the plots never import the engine
    names = [v["name"] for v in registry]
    assert [plots.version_color(v, registry) for v in names[:7]] == list(TODAYS_COLORS)
    assert [plots.version_color(f"v{i}") for i in range(7)] == list(TODAYS_COLORS)  # vN without a registry
    # a version added to the registry gets a colour and a marker no other version has
    grown = registry + [{"name": "kv4-window", "description": "a new version", "use_cache": True,
                         "kv_dtype": "int4", "kv_quant": "", "cross_layer_sharing": False}]
    colors = [plots.version_color(v["name"], grown) for v in grown]
    markers = [plots.version_marker(v["name"], grown) for v in grown]
    assert len(set(colors)) == len(grown) and len(set(markers)) == len(grown)
    assert plots.version_label("kv4-window", registry=grown) == "kv4-window (INT4 cache)"
    # the order is the registry's, whatever the names
    backwards = list(reversed(registry))
    assert plots.version_color(backwards[0]["name"], backwards) == plots.PALETTE[0]
    # labels come from the flags
    assert [plots.version_label(v, registry=registry) for v in names[:7]] == [
        "v0 (no cache)", "v1 (fp32 cache)", "v2 (INT8 cache)", "v3 (fp32 + sharing)", "v4 (INT8 + sharing)",
        "v5 (fp16 cache)", "v6 (INT8 KIVI)"]
    assert [plots.version_label(v, registry=registry) for v in ("v7", "v8", "v9", "v10", "v11")] == [
        "v7 (INT4 KIVI)", "v8 (INT2 KIVI)", "v9 (StreamingLLM)", "v10 (H2O)", "v11 (MiniCache)"]


def test_an_unknown_version_still_gets_a_style(records):
    registry = [{"name": f"v{i}"} for i in range(3)]
    for name in ("experimental", "v99"):
        color, marker = plots.version_color(name, registry), plots.version_marker(name, registry)
        assert color in plots.PALETTE and marker in plots.MARKERS
        assert color not in {plots.version_color(v["name"], registry) for v in registry}
        assert (color, marker) == (plots.version_color(name, registry), plots.version_marker(name, registry))
        assert plots.version_color(name) in plots.PALETTE and plots.version_marker(name) in plots.MARKERS
    assert plots.version_label("experimental") == "experimental"
    # a plot draws a version the registry does not know, in a style of its own
    renamed = [dict(r, version="experimental") if r.get("version") == "v2" else r for r in of(records, "latency")]
    lines = lines_by_gid(plots.plot_latency(renamed, registry=registry).axes[0])
    assert lines["experimental"].get_color() == plots.version_color("experimental", registry)
    assert lines["experimental"].get_color() not in {lines[v].get_color() for v in ("v0", "v1")}


def test_make_plots_passes_the_registry(records, tmp_path):
    backwards = [{"name": v} for v in ("v2", "v1", "v0")]
    fig = plots.plot_memory(records, registry=backwards)
    kv = lines_by_gid(fig.axes[0])
    assert [kv[v].get_color() for v in ("v2", "v1", "v0")] == list(plots.PALETTE[:3])
    seen = []
    real = plots.PLOTS["latency_vs_T"]

    def spy(recs, path=None, **kw):
        seen.append(kw.get("registry"))
        return real(recs, path, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(plots.PLOTS, "latency_vs_T", spy)
        plots.make_plots(of(records, "latency"), tmp_path, registry=backwards)
    assert seen == [backwards]


def test_weights_are_read_under_the_new_name_and_the_old(records):
    """Records now say f32_weight_bytes; older ones (docs/results/results.jsonl) weight_bytes."""
    renamed = copy.deepcopy(of(records, "memory"))
    for r in renamed:
        r["metrics"]["f32_weight_bytes"] = r["metrics"].pop("weight_bytes")
        r["model"]["f32_weight_bytes"] = r["model"].pop("weight_bytes")
        r["metrics"]["packed_weight_bytes"] = WEIGHT_BYTES // 4
    for recs in (of(records, "memory"), renamed):
        weights = lines_by_gid(plots.plot_memory(recs).axes[1])["weights"]
        np.testing.assert_allclose(weights.get_ydata(), [WEIGHT_BYTES / 2**20] * 2)
    lat = of(records, "latency", "v1", T=16)[0]
    old, new = of(records, "memory", "v1", T=16)[0], of(renamed, "memory", "v1", T=16)[0]
    assert plots.decode_bytes_per_step(lat, old) > WEIGHT_BYTES
    # a step reads the packed weights (here a quarter of the fp32 size) where the record has them
    assert plots.decode_bytes_per_step(lat, new) == plots.decode_bytes_per_step(lat, old) - (WEIGHT_BYTES - WEIGHT_BYTES // 4)
