"""The CUDA backend (celerinfer._cuda): status, errors without a GPU, and every op against a
numpy reference.

Two groups:

* Always run: the status never raises, the module is there or reported missing with a reason,
  ``Engine(device="cuda")`` gives a clear ValueError, and (when _cuda was built but no GPU is
  usable) each op raises RuntimeError instead of crashing. With ``CELER_EXPECT_CUDA_BUILD=1``
  (CI), the build must have compiled the CUDA sources.
* GPU: each op held to numpy, with the tolerance stated at the test. Skipped, with the reason
  from ``cuda_status()``, where no CUDA device is usable.

Reference rules shared with the CPU backend: INT8 per row, scale = max|x| / 127 (float32),
q = clip(rint(x / scale), -127, 127); fp16 / bf16 round to nearest even.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import celerinfer
from celerinfer import Engine, cuda_device_count, cuda_status
from celerinfer.cuda import cublas_candidates

STATUS = cuda_status()
needs_gpu = pytest.mark.skipif(cuda_device_count() == 0, reason=f"CUDA tests need a GPU: {STATUS['reason']}")
built_without_gpu = pytest.mark.skipif(not STATUS["built"] or STATUS["available"],
                                       reason="needs celerinfer._cuda built and no usable GPU"
                                       if STATUS["built"] else STATUS["reason"])


def cu():
    import celerinfer._cuda as mod
    return mod


# ---- always run ----------------------------------------------------------------------------------

def test_status_never_raises_and_says_why():
    st = cuda_status()
    for key in ("built", "available", "device_count", "reason", "devices", "runtime_version", "driver_version",
                "cuda_architectures", "nvcc_version"):
        assert key in st, key
    assert isinstance(cuda_device_count(), int) and cuda_device_count() >= 0
    assert celerinfer.cuda_device_count() == st["device_count"]
    if st["available"]:
        assert st["reason"] == "" and st["devices"] and st["devices"][0]["total_memory"] > 0
    else:
        assert st["device_count"] == 0 and st["reason"], "an unavailable backend must say why"


def test_module_imports_or_is_reported_missing():
    if STATUS["built"]:
        mod = cu()
        assert mod.build_info()["cuda_architectures"]
        assert isinstance(mod.status()["device_count"], int)
    else:
        assert "CUDA" in STATUS["reason"]
        with pytest.raises(RuntimeError, match="CUDA backend unavailable"):
            celerinfer.cuda.cuda_module()


def test_a_build_without_cuda_is_reported_not_raised():
    # Simulates a build without nvcc: celerinfer._cuda cannot be found.
    code = textwrap.dedent("""
        import sys
        class Hide:
            def find_spec(self, name, path=None, target=None):
                if name == "celerinfer._cuda":
                    raise ModuleNotFoundError(name)
        sys.meta_path.insert(0, Hide())
        import celerinfer
        st = celerinfer.cuda_status()
        assert st["built"] is False and celerinfer.cuda_device_count() == 0, st
        assert st["reason"].startswith("built without CUDA"), st
        m = celerinfer.random_model(hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                    num_key_value_heads=2, vocab_size=64, max_position_embeddings=32)
        try:
            celerinfer.Engine(m, "v1", device="cuda")
        except ValueError as e:
            assert "device 'cuda' is not available: built without CUDA" in str(e), e
        else:
            raise AssertionError("no error")
    """)
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.skipif(os.environ.get("CELER_EXPECT_CUDA_BUILD") != "1",
                    reason="set CELER_EXPECT_CUDA_BUILD=1 where nvcc exists at build time (CI does)")
def test_build_compiled_the_cuda_sources():
    assert STATUS["built"], f"nvcc was expected at build time, but: {STATUS['reason']}"
    archs = STATUS["cuda_architectures"].split(",")
    assert any(a.startswith("90") for a in archs), archs  # H100 / H200


def test_engine_cuda_gives_the_reason():
    model = celerinfer.random_model(hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                    num_key_value_heads=2, vocab_size=64, max_position_embeddings=32)
    with pytest.raises(ValueError, match=r"device 'cuda' is not available: .+") as info:
        Engine(model, "v1", device="cuda")
    if not STATUS["available"]:
        assert STATUS["reason"] in str(info.value)
    with pytest.raises(ValueError, match="device 'tpu' is not available"):
        Engine(model, "v1", device="tpu")


@built_without_gpu
@pytest.mark.parametrize("call", [
    lambda m: m.rmsnorm(np.ones((2, 8), np.float32), np.ones(8, np.float32), 1e-5),
    lambda m: m.quantize_int8(np.ones((2, 8), np.float32)),
    lambda m: m.argmax(np.ones((2, 8), np.float32)),
    lambda m: m.decode_attention(np.ones((1, 2, 8), np.float32), np.ones((1, 3, 1, 8), np.float32),
                                 np.ones((1, 3, 1, 8), np.float32)),
    lambda m: m.linear(np.ones((2, 8), np.float32), np.ones((4, 8), np.float32)),
    lambda m: m.bandwidth(1 << 20, 1),
], ids=["rmsnorm", "quantize_int8", "argmax", "decode_attention", "linear", "bandwidth"])
def test_ops_raise_without_a_device(call):
    with pytest.raises(RuntimeError, match="CUDA unavailable: " + re.escape(STATUS["reason"])):
        call(cu())
    assert cu().allocated_bytes() == 0


@pytest.mark.skipif(not STATUS["built"], reason=STATUS["reason"] or "built")
def test_cublas_loader_fails_cleanly_or_loads():
    # A missing library is an error listing every attempt; a machine with cuBLAS loads it.
    try:
        path = cu().load_cublas(["/nonexistent/libcublas.so.99"] + cublas_candidates())
    except RuntimeError as e:
        assert "cuBLAS not found" in str(e) and "/nonexistent/libcublas.so.99" in str(e)
        assert "libcublas.so.12" in str(e)
    else:
        assert "libcublas" in path and cu().cublas_path() == path


# ---- numpy references ----------------------------------------------------------------------------

def quantize_ref(x):
    """The CPU KV cache's INT8 rule, per row of the last axis, in float32."""
    x = np.asarray(x, np.float32)
    scale = (np.abs(x).max(axis=-1) / np.float32(127)).astype(np.float32)
    safe = np.where(scale > 0, scale, np.float32(1))[..., None]
    q = np.where(scale[..., None] > 0, np.rint(x / safe), 0)
    return np.clip(q, -127, 127).astype(np.int8), scale


def bf16_bits(x):
    """float32 -> bfloat16 bit patterns, round to nearest even (finite inputs)."""
    u = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def bf16_value(x):
    return (bf16_bits(x).astype(np.uint32) << 16).view(np.float32)


def rope_ref(x, heads, pos, cos, sin):
    rows, width = x.shape
    D = width // heads
    v = x.reshape(rows, heads, D).astype(np.float64)
    c, s = cos[pos][:, None, :], sin[pos][:, None, :]
    rot = np.concatenate([-v[..., D // 2:], v[..., :D // 2]], axis=-1)
    return (v * c + rot * s).reshape(rows, width)


def attention_ref(q, k, v, key_valid):
    """q (B, Hq, D); k, v (B, T, Hkv, D) already as the cache returns them; softmax over valid keys."""
    B, Hq, D = q.shape
    group = Hq // k.shape[2]
    out = np.zeros((B, Hq, D))
    for b in range(B):
        for h in range(Hq):
            kk, vv = k[b, :, h // group].astype(np.float64), v[b, :, h // group].astype(np.float64)
            s = kk @ q[b, h].astype(np.float64) / math.sqrt(D)
            s[~key_valid[b].astype(bool)] = -np.inf
            if np.isneginf(s).all():
                continue
            p = np.exp(s - s.max())
            out[b, h] = p @ vv / p.sum()
    return out


# ---- GPU: each op against numpy ------------------------------------------------------------------

@needs_gpu
def test_status_reports_the_device():
    dev = STATUS["devices"][0]
    assert dev["name"] and dev["total_memory"] > 0 and dev["free_memory"] > 0
    assert dev["compute_capability"][0] >= 7


@needs_gpu
@pytest.mark.parametrize("H", [64, 1000, 4096])
def test_rmsnorm_layernorm(rng, H):  # tolerance: 1e-5 (fp32 sums in another order)
    x = rng.standard_normal((5, H)).astype(np.float32) * 3 + 1
    w, b = rng.standard_normal(H).astype(np.float32), rng.standard_normal(H).astype(np.float32)
    x64 = x.astype(np.float64)
    rms = x64 / np.sqrt((x64 ** 2).mean(-1, keepdims=True) + 1e-5) * w
    np.testing.assert_allclose(cu().rmsnorm(x, w, 1e-5), rms, rtol=1e-5, atol=1e-5)
    mu, var = x64.mean(-1, keepdims=True), x64.var(-1, keepdims=True)
    ln = (x64 - mu) / np.sqrt(var + 1e-5) * w + b
    np.testing.assert_allclose(cu().layernorm(x, w, b, 1e-5), ln, rtol=1e-5, atol=1e-5)


@needs_gpu
@pytest.mark.parametrize("D", [64, 128])
def test_rope(rng, D):  # tolerance: 1e-5 (fused multiply-adds)
    heads, max_pos, rows = 3, 50, 7
    freqs = np.outer(np.arange(max_pos), 1.0 / 10000 ** (np.arange(0, D, 2) / D))
    emb = np.concatenate([freqs, freqs], axis=-1)
    cos, sin = np.cos(emb).astype(np.float32), np.sin(emb).astype(np.float32)
    x = rng.standard_normal((rows, heads * D)).astype(np.float32)
    pos = np.array([0, 1, 2, 49, 10, 10, 7], np.int64)
    np.testing.assert_allclose(cu().rope(x, heads, pos, cos, sin), rope_ref(x, heads, pos, cos, sin),
                               rtol=1e-5, atol=1e-5)


@needs_gpu
def test_activations(rng):  # tolerance: rtol 1e-5, atol 1e-6 (expf / tanhf / erff vs float64)
    x = (rng.standard_normal(10_001) * 4).astype(np.float32)
    y = rng.standard_normal(10_001).astype(np.float32)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(cu().swiglu(x, y), x64 / (1 + np.exp(-x64)) * y, rtol=1e-5, atol=1e-6)
    tanh = 0.5 * x64 * (1 + np.tanh(math.sqrt(2 / math.pi) * (x64 + 0.044715 * x64 ** 3)))
    np.testing.assert_allclose(cu().gelu(x, True), tanh, rtol=1e-5, atol=1e-6)
    erf = 0.5 * x64 * (1 + np.vectorize(math.erf)(x64 / math.sqrt(2)))
    np.testing.assert_allclose(cu().gelu(x, False), erf, rtol=1e-5, atol=1e-6)


@needs_gpu
def test_bias_residual_embedding_exact(rng):  # exact: the same single fp32 additions
    x = rng.standard_normal((6, 33)).astype(np.float32)
    b = rng.standard_normal(33).astype(np.float32)
    np.testing.assert_array_equal(cu().add_bias(x, b), x + b)
    y = rng.standard_normal(x.size).astype(np.float32)
    np.testing.assert_array_equal(cu().add(x.ravel(), y), x.ravel() + y)
    table, pos_table = (rng.standard_normal((100, 48)).astype(np.float32) for _ in range(2))
    ids, pos = np.array([5, 0, 99, 5], np.int64), np.array([0, 1, 2, 3], np.int64)
    np.testing.assert_array_equal(cu().embedding(table, ids), table[ids])
    np.testing.assert_array_equal(cu().embedding(table, ids, pos_table[:10], pos), table[ids] + pos_table[pos])
    with pytest.raises(ValueError, match="token id out of range"):
        cu().embedding(table, np.array([100], np.int64))


@needs_gpu
def test_int8_quantization_is_bit_identical(rng):  # exact: same fp32 division and rounding
    x = rng.standard_normal((40, 128)).astype(np.float32)
    x[3] = 0  # scale 0
    x[4, :5] = [127, 0.5, 1.5, 2.5, -2.5]  # ties round to even (scale 1 exactly)
    x[4, 5:] = 0
    q, scale = cu().quantize_int8(x)
    q_ref, scale_ref = quantize_ref(x)
    np.testing.assert_array_equal(scale, scale_ref)
    np.testing.assert_array_equal(q, q_ref)
    assert list(q[4, :5]) == [127, 0, 2, 2, -2]
    np.testing.assert_array_equal(cu().dequantize_int8(q, scale), q.astype(np.float32) * scale[:, None])


@needs_gpu
def test_half_and_bfloat16_conversions(rng):  # exact: round to nearest even, like numpy
    x = np.concatenate([rng.standard_normal(1000) * 100, [0.0, -0.0, 7e4, -7e4, 1e-6, 6e-8, 65504, 65520]])
    x = x.astype(np.float32)
    bits = cu().f32_to_f16(x)
    np.testing.assert_array_equal(bits, x.astype(np.float16).view(np.uint16))
    np.testing.assert_array_equal(cu().f16_to_f32(bits), x.astype(np.float16).astype(np.float32))
    np.testing.assert_array_equal(cu().f32_to_bf16(x), bf16_bits(x))


@needs_gpu
def test_argmax(rng):
    logits = rng.standard_normal((4, 50_000)).astype(np.float32)
    logits[1, [10, 20, 30]] = 100.0  # ties: the first index wins, like the CPU sampler
    logits[2] = -np.inf  # nothing to pick: -1
    ids = cu().argmax(logits)
    assert list(ids) == [int(np.argmax(logits[0])), 10, -1, int(np.argmax(logits[3]))]
    logits[3, 7] = np.nan
    with pytest.raises(ValueError, match="row 3 holds NaN at index 7"):
        cu().argmax(logits)


@needs_gpu
@pytest.mark.parametrize("storage", ["f32", "f16", "int8"])
@pytest.mark.parametrize("chunk", [1, 3])
def test_cache_store(rng, storage, chunk):  # exact: the stored bytes and scales
    B, T, H, D, max_seq = 2, 7, 3, 64, 10
    k, v = (rng.standard_normal((B, T, H, D)).astype(np.float32) for _ in range(2))
    got = cu().cache_store(k, v, storage, max_seq, chunk)
    for name, x in (("k", k), ("v", v)):
        want = x.transpose(0, 2, 1, 3)  # (B, H, T, D)
        dtype = {"f32": np.float32, "f16": np.float16, "int8": np.int8}[storage]
        stored = got[name].view(dtype).reshape(B, H, max_seq, D)[:, :, :T]
        if storage == "int8":
            q_ref, s_ref = quantize_ref(want)
            np.testing.assert_array_equal(stored, q_ref)
            np.testing.assert_array_equal(got[name + "_scale"][:, :, :T], s_ref)
        else:
            np.testing.assert_array_equal(stored, want.astype(dtype))


@needs_gpu
@pytest.mark.parametrize("storage", ["f32", "f16", "int8"])
@pytest.mark.parametrize("T,D,q_heads,kv_heads", [(1, 64, 8, 2), (300, 64, 8, 2), (129, 128, 4, 4), (513, 256, 6, 1)])
def test_decode_attention(rng, storage, T, D, q_heads, kv_heads):
    # tolerance: 2e-5 against float64 over the values the cache returns (the dequantized ones)
    B = 2
    q = rng.standard_normal((B, q_heads, D)).astype(np.float32)
    k, v = (rng.standard_normal((B, T, kv_heads, D)).astype(np.float32) for _ in range(2))
    valid = np.ones((B, T), np.uint8)
    valid[0, 1::3] = 0  # padding scattered through several tiles
    if T == 1:
        valid[1] = 0  # a query that sees no key gets zeros
    if storage == "f16":
        kc, vc = k.astype(np.float16).astype(np.float32), v.astype(np.float16).astype(np.float32)
    elif storage == "int8":
        (qk, sk), (qv, sv) = quantize_ref(k), quantize_ref(v)
        kc, vc = qk.astype(np.float32) * sk[..., None], qv.astype(np.float32) * sv[..., None]
    else:
        kc, vc = k, v
    out = cu().decode_attention(q, k, v, storage, valid, max_seq=T + 5, chunk=max(1, T // 4))
    np.testing.assert_allclose(out, attention_ref(q, kc, vc, valid), rtol=2e-5, atol=2e-5)
    if T == 1:
        assert not out[1].any()


@needs_gpu
@pytest.mark.parametrize("M,K,N", [(1, 512, 1000), (7, 256, 96), (64, 1024, 512)])
def test_linear_f32(rng, M, K, N):  # tolerance: 1e-4 (fp32 GEMM, no TF32; outputs ~N(0, 1))
    x = rng.standard_normal((M, K)).astype(np.float32)
    w = (rng.standard_normal((N, K)) / math.sqrt(K)).astype(np.float32)
    y = cu().linear(x, w, "f32", cublas_candidates())
    np.testing.assert_allclose(y, x.astype(np.float64) @ w.astype(np.float64).T, rtol=1e-4, atol=1e-4)


@needs_gpu
@pytest.mark.parametrize("M,K,N", [(1, 512, 1000), (16, 768, 256)])
def test_linear_bf16(rng, M, K, N):  # tolerance: 1e-3 vs bf16-rounded x and w summed in float64
    x = rng.standard_normal((M, K)).astype(np.float32)
    w = (rng.standard_normal((N, K)) / math.sqrt(K)).astype(np.float32)
    y = cu().linear(x, w, "bf16", cublas_candidates())
    ref = bf16_value(x).astype(np.float64) @ bf16_value(w).astype(np.float64).T
    np.testing.assert_allclose(y, ref, rtol=1e-3, atol=1e-3)


@needs_gpu
def test_bandwidth_and_matmul_peak(rng):
    b, c = rng.standard_normal(4099).astype(np.float32), rng.standard_normal(4099).astype(np.float32)
    np.testing.assert_allclose(cu().triad(b, c, 3.0), b + np.float32(3.0) * c, rtol=1e-6, atol=1e-6)
    bw = cu().bandwidth(1 << 28, 5)
    assert bw["copy_gbs"] > 0 and bw["triad_gbs"] > 0
    assert cu().matmul_tflops(2048, 3, "f32", cublas_candidates()) > 0
    assert cu().matmul_tflops(2048, 3, "bf16", cublas_candidates()) > 0


@needs_gpu
def test_no_device_memory_left_behind(rng):
    cu().rmsnorm(rng.standard_normal((3, 64)).astype(np.float32), np.ones(64, np.float32), 1e-5)
    assert cu().allocated_bytes() == 0
