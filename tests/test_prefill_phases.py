"""benchmarks/prefill_phases.py reports each setup's phase rates from the engine's timers and the
roofline's FLOP counts, beside a BLAS measured in the same run (speed itself is never asserted)."""

import json

import pytest

import celerinfer
from celerinfer import _core
from celerinfer.bench import PRESETS, roofline
from conftest import load_script


def _script():
    return load_script("prefill_phases")


def test_prefill_phases_report(tmp_path, capsys):
    out = tmp_path / "phases.json"
    assert _script().main(["--preset", "tiny", "--prompt-length", "24", "--reps", "2", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    setups = [(r["weight_dtype"], r["matmul_precision"]) for r in report["rows"]]
    high = [fmt for fmt in celerinfer.WEIGHT_DTYPES if _core.prefill_gemm(fmt, "high") != _core.prefill_gemm(fmt)]
    assert setups == [(fmt, p) for fmt in ("f32", "bf16", "int8") for p in ("highest", "high")
                      if p == "highest" or fmt in high]
    config = celerinfer.ModelConfig(**{**PRESETS["tiny"]["model"], "max_position_embeddings": 25})
    cost = roofline.prefill_cost(config, "v1", 1, 24)
    assert report["phase_flops"] == {"attention": sum(cost.by_op[op]["flops"] for op in ("qkv", "attention", "o_proj")),
                                     "mlp": cost.by_op["mlp"]["flops"]}
    for r in report["rows"]:
        assert r["prefill_gemm"] == _core.prefill_gemm(r["weight_dtype"], r["matmul_precision"])
        for phase in ("attention", "mlp"):
            assert r[f"{phase}_gflops"] == pytest.approx(report["phase_flops"][phase] / r["phase_seconds"][phase] / 1e9)
        libraries = set(r["blas_gflops"])
        assert "numpy" in libraries or r["weight_dtype"] == "bf16"  # numpy has no bf16 matmul
        assert r["peak_gflops"] == (max(r["blas_gflops"].values()) if libraries else None)
    assert "mlp % of peak" in capsys.readouterr().out


def test_bad_arguments_are_refused():
    with pytest.raises(SystemExit):
        _script().main(["--reps", "0"])
