"""benchmarks/micro_kernels.py runs and reports every (format, rows) combination it was asked
for, from measured times (speed itself is never asserted)."""

import importlib.util
import json

import pytest

import celerinfer
from celerinfer import _core
from conftest import load_script


def _script():
    return load_script("micro_kernels")


def _formats_split_at_avx512() -> list[str]:
    if "avx512" not in celerinfer.simd_levels():
        return []
    saved = celerinfer.simd_level()
    try:
        celerinfer.set_simd_level("avx512")
        return [fmt for fmt in celerinfer.WEIGHT_DTYPES if _core.prefill_gemm(fmt, "high") == "amx-bf16x3"]
    finally:
        celerinfer.set_simd_level(saved)


def test_micro_kernels_table(tmp_path, capsys):
    out = tmp_path / "kernels.json"
    levels = celerinfer.simd_levels()
    assert _script().main(["--reps", "2", "--rows", "1", "20", "--shape", "70", "45", "--triad-mib", "16",
                           "--levels", *levels, "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    rows = report["rows"]
    highest = [r for r in rows if r["matmul_precision"] == "highest"]
    assert len(highest) == len(levels) * len(celerinfer.WEIGHT_DTYPES) * 2
    # matmul precision "high": again, for the GEMM rows of the formats it splits (AMX, avx512)
    high = [r for r in rows if r["matmul_precision"] == "high"]
    assert {(r["kernel"], r["level"]) for r in high} <= {("gemm", "avx512")}
    assert sorted(r["weight_dtype"] for r in high) == sorted(_formats_split_at_avx512())
    assert {r["kernel"] for r in rows} == {"gemv", "gemm"}
    for r in rows:
        assert r["seconds"] > 0
        assert abs(r["gflops"] - 2 * r["M"] * 70 * 45 / r["seconds"] / 1e9) < 1e-6 * r["gflops"]
    assert report["triad_gbps"] > 0
    assert "% of PyTorch" in capsys.readouterr().out
    for r in rows:  # the % of peak exists where the GEMM is ours (avx2, avx512) and only there
        assert (r["peak_gflops"] is not None) == (r["level"] in ("avx2", "avx512"))
    torch_present = importlib.util.find_spec("torch") is not None
    for r in rows:  # the PyTorch reference: for the GEMM rows, where torch is installed
        assert (r["torch_gflops"] is not None) == (r["kernel"] == "gemm" and torch_present)
        assert r["torch_gflops"] is None or r["torch_gflops"] > 0


def test_multiply_add_peak_is_measured_only_for_our_gemms():
    saved = celerinfer.simd_level()
    try:
        celerinfer.set_simd_level("scalar")
        with pytest.raises(ValueError, match="AVX2 and AVX-512 GEMMs"):
            _core.multiply_add_peak_gflops("f32", 1)
        for level in [lv for lv in celerinfer.simd_levels() if lv != "scalar"]:
            celerinfer.set_simd_level(level)
            for fmt in celerinfer.WEIGHT_DTYPES:
                rates = _core.multiply_add_peak_gflops(fmt, 2)
                assert len(rates) == 2 and all(r > 0 for r in rates)
    finally:
        celerinfer.set_simd_level(saved)
