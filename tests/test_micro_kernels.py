"""benchmarks/micro_kernels.py runs and reports every (format, rows) combination it was asked
for, from measured times (speed itself is never asserted)."""

import importlib.util
import json
from pathlib import Path

import celerinfer

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "micro_kernels.py"


def _script():
    spec = importlib.util.spec_from_file_location("micro_kernels", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_micro_kernels_table(tmp_path, capsys):
    out = tmp_path / "kernels.json"
    levels = celerinfer.simd_levels()
    assert _script().main(["--reps", "2", "--rows", "1", "20", "--shape", "70", "45", "--triad-mib", "16",
                           "--levels", *levels, "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    rows = report["rows"]
    assert len(rows) == len(levels) * len(celerinfer.WEIGHT_DTYPES) * 2
    assert {r["kernel"] for r in rows} == {"gemv", "gemm"}
    for r in rows:
        assert r["seconds"] > 0
        assert abs(r["gflops"] - 2 * r["M"] * 70 * 45 / r["seconds"] / 1e9) < 1e-6 * r["gflops"]
    assert report["triad_gbps"] > 0
    assert "% triad" in capsys.readouterr().out
