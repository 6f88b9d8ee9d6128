"""Matmul precision (Engine(..., matmul_precision=...)): "high" runs prefill's GEMMs on f32 and
int8 weights as bf16x3 on AMX tiles, where the CPU has them (elsewhere it is "highest").

The logits at "high" are held to the float64 PyTorch twin on the same weights: within 3e-5 of
the largest logit (measured 2e-6 to 6e-6 over 18 model/seed/format cases; "highest": 2e-7 to
8e-7; one bf16 product per term, the bf16 format: 1e-3 to 7e-3). Prompts of 2 x 37 tokens (74
GEMM rows: past the GEMV's 8, four full 16-row AMX panels and a partial one); shapes not
multiples of 16 or 32. Decoding and bf16 weights must not change at all.
"""

import numpy as np
import pytest

from conftest import SMALL_CONFIGS, make_inputs, max_rel_err, small_model

torch = pytest.importorskip("torch", reason="parity tests compare against the PyTorch reference")
import celerinfer  # noqa: E402
from celerinfer import _core  # noqa: E402
from celerinfer.reference import weight_formats  # noqa: E402

HIGH_TOL = 3e-5
SPLITS = _core.prefill_gemm("f32", "high") == "amx-bf16x3"  # this CPU has AMX (and the avx512 level)



@pytest.mark.parametrize("weight_dtype", ["f32", "int8"])
@pytest.mark.parametrize("config", sorted(SMALL_CONFIGS))
def test_high_precision_prefill_matches_reference(config, weight_dtype, request, rng):
    model = small_model(config, request)
    ids, _ = make_inputs(rng, 2, 37, model.config.vocab_size)
    engine = celerinfer.Engine(model, weight_dtype=weight_dtype)
    highest = engine.forward(ids)
    engine.matmul_precision = "high"
    high = engine.forward(ids)
    twin = weight_formats.reference_model(model, weight_dtype, rope=model.rope, dtype=torch.float64)
    with torch.no_grad():
        want = twin(torch.from_numpy(ids), None).numpy()
    assert max_rel_err(high, want) <= HIGH_TOL
    if SPLITS:
        assert engine.prefill_gemm == "amx-bf16x3"
        assert not np.array_equal(high, highest)  # the split path ran
    else:
        assert engine.prefill_gemm != "amx-bf16x3"
        assert np.array_equal(high, highest)


def test_decoding_and_bf16_weights_are_the_same_at_every_precision(request, rng):
    """score() with a one-token prefill takes the GEMV kernels only: bit for bit the same. bf16
    weights already multiply bf16 values: their GEMM is the same at both settings."""
    model = small_model("gqa_untied", request)
    ids, _ = make_inputs(rng, 2, 15, model.config.vocab_size)
    for weight_dtype in celerinfer.WEIGHT_DTYPES:
        outputs = []
        for precision in celerinfer.MATMUL_PRECISIONS:
            engine = celerinfer.Engine(model, weight_dtype=weight_dtype, matmul_precision=precision)
            outputs.append((engine.score(ids, prefill_length=1), engine.forward(ids)))
        assert np.array_equal(outputs[0][0], outputs[1][0]), weight_dtype
        if weight_dtype == "bf16":
            assert np.array_equal(outputs[0][1], outputs[1][1])


def test_precision_setting_is_checked_and_shown(request, tmp_path, capsys):
    model = small_model("gqa_untied", request)
    engine = celerinfer.Engine(model)
    assert engine.matmul_precision == "highest"
    engine.matmul_precision = "high"
    assert "matmul_precision='high'" in repr(engine)
    for bad in ("medium", "HIGH", None):
        with pytest.raises(ValueError, match="matmul_precision must be one of highest, high"):
            engine.matmul_precision = bad
    with pytest.raises(ValueError, match="matmul_precision"):
        celerinfer.Engine(model, matmul_precision="tf32")
    with pytest.raises(ValueError, match="unknown matmul precision 'tf32'"):
        _core.prefill_gemm("f32", "tf32")
    from celerinfer.bench import load_config

    with pytest.raises(ValueError, match="config: matmul_precision 'fast'"):
        load_config(preset="tiny", overrides={"matmul_precision": "fast"})
    path = tmp_path / "m.safetensors"
    model.save(path)
    from celerinfer.cli import main

    assert main(["generate", "--model", str(path), "--matmul-precision", "high", "--max-new-tokens", "2",
                 "--prompt-length", "12"]) == 0
    assert f"prefill GEMM {_core.prefill_gemm('f32', 'high')}" in capsys.readouterr().out
