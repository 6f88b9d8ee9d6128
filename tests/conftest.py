"""Shared helpers for the test suite: an error metric, per-test random generators, inputs,
small models, the benchmark scripts."""

import importlib.util
import math
import zlib
from pathlib import Path

import numpy as np
import pytest


def max_rel_err(a, b) -> float:
    """max|a - b| / max|b|: the largest error relative to the largest magnitude of b (the truth)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, f"shapes differ: {a.shape} vs {b.shape}"
    if b.size == 0:
        return 0.0
    scale = np.max(np.abs(b))
    err = np.max(np.abs(a - b))
    if scale == 0.0:
        return 0.0 if err == 0.0 else float("inf")
    return float(err / scale)



def assert_matches_twin(got, want, weight_dtype: str, tol: float) -> None:
    """The engine's logits (..., vocab) against the PyTorch twin of its weight format
    (celerinfer.reference.weight_formats.reference_model), each position's error relative to the
    largest |want|. f32 and int8: every position within `tol`. bf16 also rounds activations,
    and engine and twin compute them in different orders: a value sitting on a bf16 rounding
    boundary may round up in one and down in the other, moving that position (and, through
    attention, later ones) by up to ~1e-3. So at least 90% of positions must be within `tol`
    (measured: 97-100% over 60 seeds; a twin without the activation rounding gets 0%) and
    every position within 5e-3."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"shapes differ: {got.shape} vs {want.shape}"
    per_position = np.abs(got - want).max(axis=-1).ravel() / max(np.abs(want).max(), 1e-30)
    if weight_dtype != "bf16":
        assert per_position.max() <= tol, f"max error {per_position.max():.3g} > {tol}"
        return
    close = float((per_position <= tol).mean())
    assert close >= 0.9, f"only {close:.0%} of positions within {tol} of the twin"
    assert per_position.max() <= 5e-3, f"max error {per_position.max():.3g} > 5e-3"

def seed_for(nodeid: str) -> int:
    """A seed derived from a test id: stable across runs, different for every test."""
    return zlib.crc32(nodeid.encode())


@pytest.fixture
def rng(request) -> np.random.Generator:
    """A numpy Generator seeded from the test id (the seed is `rng.bit_generator.seed_seq.entropy`)."""
    return np.random.default_rng(seed_for(request.node.nodeid))


def make_inputs(rng, batch, seq, vocab, padding="none", min_len=1, dtype=np.int64):
    """Random token ids (B, S) and an attention mask (B, S) int32, or None when padding="none".

    padding="right": each row keeps its first L tokens (L random in [min_len, S], the first row
    full length); padding="left": each row keeps its last L tokens. Padded positions still hold
    random token ids (they must not matter).
    """
    ids = rng.integers(0, vocab, size=(batch, seq)).astype(dtype)
    if padding == "none":
        return ids, None
    lengths = rng.integers(min_len, seq + 1, size=batch)
    lengths[0] = seq
    positions = np.arange(seq)[None, :]
    if padding == "right":
        mask = positions < lengths[:, None]
    elif padding == "left":
        mask = positions >= (seq - lengths)[:, None]
    else:
        raise ValueError(f"padding must be 'none', 'right' or 'left', got {padding!r}")
    return ids, mask.astype(np.int32)


def valid_positions(mask, batch, seq):
    """Boolean (B, S) of the query positions whose outputs are specified (mask == 1)."""
    if mask is None:
        return np.ones((batch, seq), dtype=bool)
    return np.asarray(mask) != 0


def random_state_dict(cfg, rng, head_gain=1.0):
    """Hugging Face named float32 weights (a config dict) with O(1) activations, so attention is far
    from uniform: q/k projections have gain 2, the lm_head `head_gain`."""
    C, V, I = cfg["hidden_size"], cfg["vocab_size"], cfg["intermediate_size"]
    H, KVH = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    D = C // H

    def lin(out_f, in_f, gain=1.0):
        return (gain * rng.standard_normal((out_f, in_f)) / math.sqrt(in_f)).astype(np.float32)

    def norm():
        return (1.0 + 0.2 * rng.standard_normal(C)).astype(np.float32)

    sd = {"model.embed_tokens.weight": rng.standard_normal((V, C)).astype(np.float32),
          "model.norm.weight": norm()}
    if not cfg["tie_word_embeddings"]:
        sd["lm_head.weight"] = lin(V, C, gain=head_gain)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        sd[p + "input_layernorm.weight"] = norm()
        sd[p + "post_attention_layernorm.weight"] = norm()
        sd[p + "self_attn.q_proj.weight"] = lin(H * D, C, gain=2.0)
        sd[p + "self_attn.k_proj.weight"] = lin(KVH * D, C, gain=2.0)
        sd[p + "self_attn.v_proj.weight"] = lin(KVH * D, C)
        sd[p + "self_attn.o_proj.weight"] = lin(C, H * D)
        sd[p + "mlp.gate_proj.weight"] = lin(I, C)
        sd[p + "mlp.up_proj.weight"] = lin(I, C)
        sd[p + "mlp.down_proj.weight"] = lin(C, I)
    return sd


#: Small llama-family models whose sizes are not multiples of the SIMD width (16 floats) nor of
#: the int8 block (32): GQA with a separate head, and MHA with a tied one.
SMALL_CONFIGS = {
    "gqa_untied": dict(hidden_size=40, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                       vocab_size=77, intermediate_size=100, max_position_embeddings=64),
    "mha_tied": dict(hidden_size=64, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=4,
                     vocab_size=130, intermediate_size=96, max_position_embeddings=64, tie_word_embeddings=True),
}


def small_model(name: str, request):
    """A random model of SMALL_CONFIGS[name], seeded from the test id."""
    import celerinfer

    return celerinfer.random_model(celerinfer.ModelConfig(**SMALL_CONFIGS[name]), seed=seed_for(request.node.nodeid))


def load_script(name: str):
    """benchmarks/<name>.py as a module (the scripts are not part of the package)."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fitting_version(name: str, context: int):
    """The registry's version `name` for a model of `context` positions: the name itself, or,
    when its eviction budget (512 tokens for v9/v10) does not fit (the engine refuses a budget
    larger than the context), the same method from the same base with a budget that does and
    that acts on these short runs: StreamingLLM 2 sinks + context/8, H2O context/16 + context/16."""
    import celerinfer

    entry = next(v for v in celerinfer.versions() if v["name"] == name)
    if entry["budget"] <= context:
        return name
    if entry["eviction"] == "window":
        return {"base": name, "sinks": 2, "window": max(context // 8, 2)}
    return {"base": name, "window": max(context // 16, 1), "heavy": max(context // 16, 1)}

