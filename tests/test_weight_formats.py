"""Weight formats (Engine(..., weight_dtype=...)) and the SIMD kernels behind them.

Each format is held to the PyTorch reference run on the same rounded weights (and, for bf16,
rounded linear inputs: celerinfer.reference.weight_formats, written from the format's definition): the
engine must compute the same function, so the tolerance is the fp32 parity bound, 1e-4
relative (measured ~3e-7; for bf16, see conftest.assert_matches_twin). The
rounding itself is checked against the float32 model from both sides: far enough to show the
format is really used (bf16 > 1e-5, int8 > 1e-4) and close enough to be useful (bf16 < 1e-2,
int8 < 2e-2; measured ~1e-3 and ~2e-3 on these models). Shapes are not multiples of the SIMD
width (16 floats) nor of the int8 block (32): hidden 40, intermediate 100, vocab 77.
Both code paths are covered: prefill (many rows: the blocked GEMM) through
forward(), decode (one row: the GEMV kernels) through score() and generate().
"""

import numpy as np
import pytest

from conftest import SMALL_CONFIGS, assert_matches_twin, make_inputs, max_rel_err, small_model

torch = pytest.importorskip("torch", reason="parity tests compare against the PyTorch reference")
import celerinfer  # noqa: E402
from celerinfer import _core, reference  # noqa: E402
from celerinfer.reference import weight_formats  # noqa: E402

TWIN_TOL = 1e-4
# Error vs the exact f32 model. 4-bit: measured 0.029 to 0.080 (q4_0) and 0.031 to 0.069 (q4_1)
# over 4 seeds x these configs; bounds ~4x the worst, and 10x under the best from below.
BOUNDS = {"f32": (0.0, 1e-6), "bf16": (1e-5, 1e-2), "int8": (1e-4, 2e-2), "q4_0": (3e-3, 0.3), "q4_1": (3e-3, 0.3)}



def _twin_logits(model, weight_dtype, ids, mask=None):
    ref = weight_formats.reference_model(model, weight_dtype, rope=model.rope, dtype=torch.float64)
    with torch.no_grad():
        mask_t = None if mask is None else torch.from_numpy(mask != 0)
        return ref(torch.from_numpy(ids), mask_t).numpy()


@pytest.mark.parametrize("weight_dtype", celerinfer.WEIGHT_DTYPES)
@pytest.mark.parametrize("config", sorted(SMALL_CONFIGS))
def test_forward_matches_reference_on_rounded_weights(config, weight_dtype, request, rng):
    model = small_model(config, request)
    ids, mask = make_inputs(rng, 2, 19, model.config.vocab_size, padding="left")
    got = celerinfer.Engine(model, weight_dtype=weight_dtype).forward(ids, mask)
    keep = mask.astype(bool)  # outputs at padded positions are unspecified
    assert_matches_twin(got[keep], _twin_logits(model, weight_dtype, ids, mask)[keep], weight_dtype, TWIN_TOL)
    low, high = BOUNDS[weight_dtype]
    exact = celerinfer.Engine(model).forward(ids, mask)
    assert low <= max_rel_err(got[keep], exact[keep]) <= high


@pytest.mark.parametrize("weight_dtype", celerinfer.WEIGHT_DTYPES)
def test_decode_path_matches_reference(weight_dtype, request, rng):
    """score() feeds one token per step: every projection takes the GEMV kernels."""
    model = small_model("gqa_untied", request)
    ids, _ = make_inputs(rng, 3, 21, model.config.vocab_size)
    got = celerinfer.Engine(model, weight_dtype=weight_dtype).score(ids, prefill_length=2)
    assert_matches_twin(got, _twin_logits(model, weight_dtype, ids), weight_dtype, TWIN_TOL)


@pytest.mark.parametrize("version", ["v1", "v2", "v3", "v5", "v6"])
@pytest.mark.parametrize("weight_dtype", ["bf16", "int8"])
def test_generation_step_logits_match_reference(version, weight_dtype, request, rng):
    """Every KV-cache version runs on packed weights: the engine's step logits against the
    reference's cache path of the same version on the rounded weights, fed the engine's tokens."""
    model = small_model("gqa_untied", request)
    ids, _ = make_inputs(rng, 2, 9, model.config.vocab_size)
    gen = celerinfer.Engine(model, version, weight_dtype=weight_dtype).generate(ids, 12, return_logits=True)
    ref = weight_formats.reference_model(model, weight_dtype, rope=model.rope)
    with torch.no_grad():
        want = ref.score(torch.from_numpy(ids), torch.from_numpy(gen.new_tokens[:, :-1].copy()), version).numpy()
    # Step 0 is the prefill's last position; INT8 caches may flip a rounding: their twin bound.
    flags = {v["name"]: v for v in celerinfer.versions()}[version]
    tol = 2e-4 if flags["kv_dtype"] == "int8" else TWIN_TOL
    assert_matches_twin(gen.logits[:, : want.shape[1]], want, weight_dtype, tol)


@pytest.mark.parametrize("weight_dtype", celerinfer.WEIGHT_DTYPES)
def test_every_simd_level_gives_the_same_logits(weight_dtype, request, rng):
    """The scalar, AVX2 and AVX-512 kernels (those this CPU has) agree: the fast paths are held
    to the plain one on the same machine."""
    model = small_model("gqa_untied", request)
    ids, _ = make_inputs(rng, 2, 11, model.config.vocab_size)
    saved = celerinfer.simd_level()
    results = {}
    try:
        for level in celerinfer.simd_levels():
            celerinfer.set_simd_level(level)
            engine = celerinfer.Engine(model, weight_dtype=weight_dtype)
            results[level] = (engine.forward(ids), engine.score(ids, prefill_length=1))
    finally:
        celerinfer.set_simd_level(saved)
    plain = results["scalar"]
    for level, (fwd, scored) in results.items():
        assert max_rel_err(fwd, plain[0]) <= 1e-5, level
        assert max_rel_err(scored, plain[1]) <= 1e-5, level


def test_every_bf16_gemm_path_gives_the_same_logits(request, rng):
    """The bf16 prefill GEMM's paths this CPU has (weights widened to f32, vdpbf16ps pairs, AMX
    tiles) agree: each multiplies the same bf16-rounded values exactly, only the order of the f32
    sums differs. 37 positions: past the 8-row GEMV limit and over two 16-row AMX panels plus a
    partial one."""
    if celerinfer.simd_level() != "avx512":
        pytest.skip(f"the bf16 GEMM paths are the avx512 level's; this run is at {celerinfer.simd_level()}")
    model = small_model("gqa_untied", request)
    ids, _ = make_inputs(rng, 1, 37, model.config.vocab_size)
    results = {}
    try:
        for path in _core.bf16_gemm_paths():
            _core.set_bf16_gemm_path(path)
            assert _core.bf16_gemm_path() == path
            results[path] = celerinfer.Engine(model, weight_dtype="bf16").forward(ids)
    finally:
        _core.set_bf16_gemm_path(None)
    assert _core.prefill_gemm("f32") == f"{_core.f32_gemm_tile()}-fma"
    for path, logits in results.items():
        assert max_rel_err(logits, results["widened"]) <= 1e-5, path


# The avx512 level's kernels chosen by measured speed: (what is chosen, its setter, the Engine
# property naming what ran, weight format, positions). The f32 GEMM tile at 29 positions: past
# the GEMV limit, four 6-row panels and a partial one, two 12-row panels and a partial one; the
# 4-bit decode GEMV at 5 (at most 8 rows run the GEMV).
MEASURED_CHOICES = [("f32 GEMM tile", "set_f32_gemm_tile", "prefill_gemm", "f32", 29),
                    ("f32 GEMM tile", "set_f32_gemm_tile", "prefill_gemm", "q4_1", 29),
                    ("4-bit GEMV", "set_q4_gemv_kernel", "decode_gemv", "q4_0", 5)]


@pytest.mark.parametrize("what, setter, named_by, weight_dtype, positions", MEASURED_CHOICES)
def test_both_kernels_of_a_measured_choice_give_the_same_logits(request, rng, what, setter, named_by, weight_dtype,
                                                                 positions):
    """At avx512 these run the AVX-512 or the AVX2 kernel, whichever this CPU runs faster (timed
    once); forced, each must give the other's logits (the same products, summed in another
    order), and the engine must name the one that ran."""
    if celerinfer.simd_level() != "avx512":
        pytest.skip(f"the {what} is chosen at the avx512 level; this run is at {celerinfer.simd_level()}")
    model = small_model("gqa_untied", request)
    ids, _ = make_inputs(rng, 1, positions, model.config.vocab_size)
    results = {}
    try:
        for kernel in ("avx512", "avx2"):
            getattr(_core, setter)(kernel)
            engine = celerinfer.Engine(model, weight_dtype=weight_dtype)
            assert getattr(engine, named_by).removesuffix("-fma") == kernel
            results[kernel] = engine.forward(ids)
    finally:
        getattr(_core, setter)(None)
    assert max_rel_err(results["avx2"], results["avx512"]) <= 1e-5


def test_the_measured_choices_are_named_and_checked():
    if celerinfer.simd_level() != "avx512":
        pytest.skip(f"the kernels are chosen at the avx512 level; this run is at {celerinfer.simd_level()}")
    assert _core.prefill_gemm("f32") == f"{_core.f32_gemm_tile()}-fma"
    assert _core.decode_gemv("q4_1") in ("avx512", "avx2") and _core.decode_gemv("int8") == "avx512"
    with pytest.raises(ValueError, match="avx2 or the avx512"):
        _core.set_q4_gemv_kernel("scalar")


def test_the_avx2_level_runs_its_own_gemm():
    saved = celerinfer.simd_level()
    if "avx2" not in celerinfer.simd_levels():
        pytest.skip("this CPU has no AVX2")
    try:
        celerinfer.set_simd_level("avx2")
        assert {_core.prefill_gemm(w) for w in celerinfer.WEIGHT_DTYPES} == {"avx2-fma"}
        assert {_core.decode_gemv(w) for w in celerinfer.WEIGHT_DTYPES} == {"avx2"}
        celerinfer.set_simd_level("scalar")
        assert _core.prefill_gemm("f32") == "eigen"
    finally:
        celerinfer.set_simd_level(saved)


def test_unknown_bf16_gemm_path_is_refused():
    with pytest.raises(ValueError, match="bf16 GEMM path"):
        _core.set_bf16_gemm_path("tiles")
    with pytest.raises(ValueError, match="f32 GEMM tile"):
        _core.set_f32_gemm_tile("avx1024")
    with pytest.raises(ValueError, match="unknown weight dtype"):
        _core.prefill_gemm("q5_0")


def test_weight_bytes_follow_the_format(request):
    model = small_model("gqa_untied", request)
    c = model.config
    linear = c.num_hidden_layers * (c.hidden_size * (2 * c.hidden_size + 2 * (c.hidden_size // 2))
                                    + 3 * c.hidden_size * c.intermediate_size) + c.vocab_size * c.hidden_size
    sizes = {wd: celerinfer.Engine(model, weight_dtype=wd).packed_weight_bytes for wd in celerinfer.WEIGHT_DTYPES}
    assert sizes["f32"] == 4 * linear
    assert sizes["bf16"] == 2 * linear
    # int8: one byte per value plus an fp16 scale per block of 32 values of each row
    assert linear < sizes["int8"] < 1.2 * linear


def test_bad_weight_dtype_and_simd_level_are_refused(request):
    model = small_model("gqa_untied", request)
    with pytest.raises(ValueError, match="weight_dtype"):
        celerinfer.Engine(model, weight_dtype="q5_0")
    with pytest.raises(ValueError, match="SIMD level"):
        celerinfer.set_simd_level("sse9")


def test_weight_dtype_in_repr_and_cli(tmp_path, request):
    model = small_model("gqa_untied", request)
    assert "weight_dtype='int8'" in repr(celerinfer.Engine(model, weight_dtype="int8"))
    path = tmp_path / "m.safetensors"
    model.save(path)
    from celerinfer.cli import main

    assert main(["generate", "--model", str(path), "--weight-dtype", "bf16", "--max-new-tokens", "3",
                 "--prompt-length", "4"]) == 0


def test_every_format_of_the_cpp_table_has_a_twin():
    """The twins are keyed by the names of the C++ table (celerinfer.formats), one each."""
    from celerinfer.formats import FORMAT_NAMES

    assert sorted(weight_formats.ROUNDERS) == sorted(FORMAT_NAMES)
    assert weight_formats.ROUNDS_INPUTS <= set(FORMAT_NAMES)
    w = torch.linspace(-1, 1, 2 * 40).reshape(2, 40)
    for name in FORMAT_NAMES:
        assert weight_formats.ROUNDERS[name](w).shape == w.shape
