"""Checks of the PyTorch reference against hand-written math and against itself.

Nothing here runs the C++ engine: these tests establish that the reference is right, so that the
parity tests (C++ vs reference) mean something.
"""

import math
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import make_inputs, max_rel_err, valid_positions, random_state_dict

torch = pytest.importorskip("torch", reason="the PyTorch reference needs torch (extras 'test')")
from celerinfer import reference  # noqa: E402


def make_config(**overrides):
    cfg = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
               vocab_size=23, max_position_embeddings=32, intermediate_size=24,
               rms_norm_eps=1e-5, rope_theta=1e4, tie_word_embeddings=False)
    cfg.update(overrides)
    return cfg


def ref_logits(cfg, sd, ids, mask=None, rope=None, dtype=torch.float32):
    model = reference.ReferenceModel(cfg, sd, rope=rope, dtype=dtype)
    with torch.no_grad():
        out = model(torch.from_numpy(np.asarray(ids, dtype=np.int64)),
                    None if mask is None else torch.from_numpy(np.asarray(mask)))
    assert out.dtype == torch.float32
    return out.numpy()


# ------------------------------------------------------------- (a) hand-written numpy model ---

def numpy_llama(cfg, sd, ids, mask):
    """The whole model for one sequence, loop by loop in float64 numpy, straight from the math."""
    C, H = cfg["hidden_size"], cfg["num_attention_heads"]
    KVH, eps = cfg["num_key_value_heads"], cfg["rms_norm_eps"]
    D = C // H
    S = len(ids)
    W = {k: v.astype(np.float64) for k, v in sd.items()}

    def rmsnorm(x, w):
        return x / np.sqrt(np.mean(x * x) + eps) * w

    def rope(vec, pos):  # rotate pairs (i, i + D/2) by the angle pos * theta^(-2i/D)
        out = np.empty(D)
        for i in range(D // 2):
            angle = pos * cfg["rope_theta"] ** (-2.0 * i / D)
            a, b = vec[i], vec[i + D // 2]
            out[i] = a * math.cos(angle) - b * math.sin(angle)
            out[i + D // 2] = b * math.cos(angle) + a * math.sin(angle)
        return out

    x = np.stack([W["model.embed_tokens.weight"][t] for t in ids])  # (S, C)
    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        n = np.stack([rmsnorm(x[s], W[p + "input_layernorm.weight"]) for s in range(S)])
        q = n @ W[p + "self_attn.q_proj.weight"].T  # (S, H*D)
        k = n @ W[p + "self_attn.k_proj.weight"].T  # (S, KVH*D)
        v = n @ W[p + "self_attn.v_proj.weight"].T
        att_out = np.zeros((S, H * D))
        for h in range(H):
            g = h // (H // KVH)  # the K/V head this query head reads
            for i in range(S):
                qi = rope(q[i, h * D:(h + 1) * D], i)
                keys = [j for j in range(i + 1) if mask[j]]
                if not keys:
                    continue
                scores = np.array([qi @ rope(k[j, g * D:(g + 1) * D], j) / math.sqrt(D)
                                   for j in keys])
                probs = np.exp(scores - scores.max())
                probs /= probs.sum()
                att_out[i, h * D:(h + 1) * D] = sum(pr * v[j, g * D:(g + 1) * D]
                                                    for pr, j in zip(probs, keys))
        x = x + att_out @ W[p + "self_attn.o_proj.weight"].T
        n = np.stack([rmsnorm(x[s], W[p + "post_attention_layernorm.weight"]) for s in range(S)])
        gate = n @ W[p + "mlp.gate_proj.weight"].T
        up = n @ W[p + "mlp.up_proj.weight"].T
        x = x + (gate / (1.0 + np.exp(-gate)) * up) @ W[p + "mlp.down_proj.weight"].T
    x = np.stack([rmsnorm(x[s], W["model.norm.weight"]) for s in range(S)])
    head = W["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else W["lm_head.weight"]
    return x @ head.T  # (S, V)


@pytest.mark.parametrize("case", [
    dict(heads=2, kvh=2, layers=1, mask=[1, 1, 1]),          # the one-step MHA case, B=1, S=3
    dict(heads=4, kvh=2, layers=2, mask=[1, 1, 1, 1, 1]),    # GQA, two layers
    dict(heads=2, kvh=1, layers=1, mask=[1, 0, 1, 1, 0]),    # MQA with holes in the mask
], ids=["mha-S3", "gqa2-2layers", "mqa-masked"])
def test_matches_handwritten_numpy(rng, case):
    cfg = make_config(num_attention_heads=case["heads"], num_key_value_heads=case["kvh"],
                      num_hidden_layers=case["layers"])
    sd = random_state_dict(cfg, rng)
    mask = np.array(case["mask"], dtype=np.int32)
    ids = rng.integers(0, cfg["vocab_size"], size=len(mask))
    expected = numpy_llama(cfg, sd, ids, mask)
    got = ref_logits(cfg, sd, ids[None], mask[None])[0]
    valid = mask != 0
    err = max_rel_err(got[valid], expected[valid])
    assert err < 1e-5, f"reference vs numpy: max rel err {err:.3g}"
    # a float64 reference agrees to the rounding of its float32 output
    got64 = ref_logits(cfg, sd, ids[None], mask[None], dtype=torch.float64)[0]
    assert max_rel_err(got64[valid], expected[valid]) < 2e-7


def test_rows_without_allowed_keys_are_finite(rng):
    """A query whose own position is masked, with no earlier valid key, gets no NaN."""
    cfg = make_config()
    sd = random_state_dict(cfg, rng)
    ids = rng.integers(0, cfg["vocab_size"], size=(2, 6))
    mask = np.array([[0, 0, 0, 1, 1, 1], [1, 1, 1, 1, 0, 0]], dtype=np.int32)
    out = ref_logits(cfg, sd, ids, mask)
    assert np.all(np.isfinite(out))


# ------------------------------------------------------------------------- (b) GQA vs MHA ---

@pytest.mark.parametrize("heads,kvh", [(4, 2), (4, 1), (8, 2)], ids=["gqa2", "mqa", "gqa4"])
def test_gqa_equals_mha_with_repeated_kv(rng, heads, kvh):
    """GQA equals MHA whose K/V weights repeat each K/V head for its group of query heads."""
    cfg = make_config(hidden_size=32, num_attention_heads=heads, num_key_value_heads=kvh,
                      num_hidden_layers=2)
    sd = random_state_dict(cfg, rng)
    D = cfg["hidden_size"] // heads
    mha_cfg = dict(cfg, num_key_value_heads=heads)
    mha_sd = dict(sd)
    for i in range(cfg["num_hidden_layers"]):
        for name in ("k_proj", "v_proj"):
            key = f"model.layers.{i}.self_attn.{name}.weight"
            w = sd[key].reshape(kvh, D, -1)  # (KVH, D, C)
            mha_sd[key] = np.repeat(w, heads // kvh, axis=0).reshape(heads * D, -1)
    ids, mask = make_inputs(rng, 2, 7, cfg["vocab_size"], padding="right")
    gqa = ref_logits(cfg, sd, ids, mask)
    mha = ref_logits(mha_cfg, mha_sd, ids, mask)
    valid = valid_positions(mask, 2, 7)
    assert max_rel_err(gqa[valid], mha[valid]) < 1e-6


# ---------------------------------------------------------------------------- (c) padding ---

def test_right_padding_matches_unpadded_prefix(rng):
    """Right padding leaves each row's valid positions as in the unpadded (shorter) sequence."""
    cfg = make_config(num_hidden_layers=2)
    sd = random_state_dict(cfg, rng)
    ids, mask = make_inputs(rng, 3, 9, cfg["vocab_size"], padding="right", min_len=2)
    padded = ref_logits(cfg, sd, ids, mask)
    for b in range(3):
        L = int(mask[b].sum())
        alone = ref_logits(cfg, sd, ids[b:b + 1, :L])[0]
        assert max_rel_err(padded[b, :L], alone) < 1e-6, f"row {b} (length {L})"


@pytest.mark.parametrize("padding", ["right", "left"])
def test_masked_tokens_have_no_influence(rng, padding):
    """Changing the token ids at masked positions does not change the logits at valid ones."""
    cfg = make_config(num_hidden_layers=2)
    sd = random_state_dict(cfg, rng)
    ids, mask = make_inputs(rng, 4, 10, cfg["vocab_size"], padding=padding, min_len=3)
    assert (mask == 0).any()
    other = np.where(mask == 0, rng.integers(0, cfg["vocab_size"], size=ids.shape), ids)
    valid = mask != 0
    a = ref_logits(cfg, sd, ids, mask)
    b = ref_logits(cfg, sd, other, mask)
    assert max_rel_err(a[valid], b[valid]) < 1e-6
    if padding == "left":
        # ... while the same change without the mask does change them (the test can fail);
        # with right padding the masked keys come after every valid query anyway
        c = ref_logits(cfg, sd, ids)
        d = ref_logits(cfg, sd, other)
        assert max_rel_err(c[valid], d[valid]) > 1e-3


def test_left_padding_keeps_positions_unshifted(rng):
    """Left padding does not shift positions: a valid token at column p sits at position p.

    RoPE makes attention scores depend on i - j only, so for rope tables computed from
    rope_theta a left-padded row still equals the unpadded row up to rounding. With tables that
    are not a rotation by position (here: a random sin table), the two differ, which shows the
    positions really are the columns 0..S-1.
    """
    cfg = make_config(num_hidden_layers=2)
    sd = random_state_dict(cfg, rng)
    S, L = 8, 5
    ids = rng.integers(0, cfg["vocab_size"], size=(1, S))
    mask = np.zeros((1, S), dtype=np.int32)
    mask[0, S - L:] = 1
    tail = ids[:, S - L:]

    padded = ref_logits(cfg, sd, ids, mask)[0, S - L:]
    alone = ref_logits(cfg, sd, tail)[0]
    assert max_rel_err(padded, alone) < 1e-5

    D = cfg["hidden_size"] // cfg["num_attention_heads"]
    cos, _ = reference.rope_tables(D, cfg["max_position_embeddings"], cfg["rope_theta"])
    odd_rope = (cos.numpy(), rng.standard_normal(cos.shape).astype(np.float32))
    padded = ref_logits(cfg, sd, ids, mask, rope=odd_rope)[0, S - L:]
    alone = ref_logits(cfg, sd, tail, rope=odd_rope)[0]
    assert max_rel_err(padded, alone) > 1e-3
    # the padded row is the tail run alone with the table rows S-L.. (its columns)
    shifted = tuple(t[S - L:] for t in odd_rope)
    alone_shifted = ref_logits(cfg, sd, tail, rope=shifted)[0]
    assert max_rel_err(padded, alone_shifted) < 1e-5


# ------------------------------------------------------------------------------- (d) rope ---

def numpy_rope_tables(head_dim, max_pos, theta):
    inv_freq = 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    freqs = np.outer(np.arange(max_pos, dtype=np.float64), inv_freq)
    emb = np.concatenate([freqs, freqs], axis=-1)
    return np.cos(emb).astype(np.float32), np.sin(emb).astype(np.float32)


def test_rope_tables_equal_rope_from_theta(rng):
    cfg = make_config(rope_theta=500.0)
    sd = random_state_dict(cfg, rng)
    D = cfg["hidden_size"] // cfg["num_attention_heads"]
    ids, mask = make_inputs(rng, 2, 12, cfg["vocab_size"], padding="left")
    valid = mask != 0
    tables = numpy_rope_tables(D, cfg["max_position_embeddings"], cfg["rope_theta"])
    from_theta = ref_logits(cfg, sd, ids, mask)
    from_tables = ref_logits(cfg, sd, ids, mask, rope=tables)
    assert max_rel_err(from_tables[valid], from_theta[valid]) < 1e-6
    # tables of another theta are used as given (and rope_theta is then ignored)
    other = numpy_rope_tables(D, cfg["max_position_embeddings"], 10.0)
    with_other = ref_logits(cfg, sd, ids, mask, rope=other)
    assert max_rel_err(with_other[valid], from_theta[valid]) > 1e-3
    other_theta = ref_logits(dict(cfg, rope_theta=10.0), sd, ids, mask)
    assert max_rel_err(with_other[valid], other_theta[valid]) < 1e-6


def test_rope_tables_shape_is_checked(rng):
    cfg = make_config()
    sd = random_state_dict(cfg, rng)
    D = cfg["hidden_size"] // cfg["num_attention_heads"]
    cos, sin = numpy_rope_tables(D, 32, 1e4)
    with pytest.raises(ValueError, match="rope.cos"):
        reference.ReferenceModel(cfg, sd, rope=(cos[:, : D // 2], sin))
    model = reference.ReferenceModel(cfg, sd, rope=(cos[:4], sin[:4]))
    with pytest.raises(ValueError, match="exceeds"):
        model(torch.zeros(1, 5, dtype=torch.long))


# --------------------------------------------------------------------------- (e) tied head ---

def test_tied_lm_head_uses_embedding(rng):
    cfg = make_config(tie_word_embeddings=True, num_hidden_layers=2)
    sd = random_state_dict(cfg, rng)
    assert "lm_head.weight" not in sd
    ids, _ = make_inputs(rng, 2, 6, cfg["vocab_size"])
    tied = ref_logits(cfg, sd, ids)
    untied_sd = dict(sd, **{"lm_head.weight": sd["model.embed_tokens.weight"].copy()})
    untied = ref_logits(dict(cfg, tie_word_embeddings=False), untied_sd, ids)
    np.testing.assert_array_equal(tied, untied)
    # a stored lm_head.weight is ignored when the config ties the head
    ignored_sd = dict(sd, **{"lm_head.weight": np.zeros_like(sd["model.embed_tokens.weight"])})
    np.testing.assert_array_equal(ref_logits(cfg, ignored_sd, ids), tied)


# -------------------------------------------------------------------------- (f) validation ---

@pytest.mark.parametrize("name", ["lm_head.weight", "model.norm.weight",
                                  "model.layers.1.self_attn.k_proj.weight",
                                  "model.layers.0.mlp.down_proj.weight"])
def test_missing_tensor_raises(rng, name):
    cfg = make_config(num_hidden_layers=2)
    sd = random_state_dict(cfg, rng)
    del sd[name]
    with pytest.raises(ValueError, match=name.replace(".", r"\.")):
        reference.ReferenceModel(cfg, sd)


def test_misshaped_tensor_raises(rng):
    cfg = make_config(num_attention_heads=4, num_key_value_heads=2)
    sd = random_state_dict(cfg, rng)
    name = "model.layers.0.self_attn.v_proj.weight"
    sd[name] = sd[name].T.copy()  # (C, KVH*D) instead of (KVH*D, C)
    with pytest.raises(ValueError, match=name.replace(".", r"\.")):
        reference.ReferenceModel(cfg, sd)


@pytest.mark.parametrize("overrides", [dict(num_key_value_heads=3), dict(hidden_size=15),
                                       dict(vocab_size=0)], ids=["kvh", "hidden", "vocab"])
def test_invalid_config_raises(overrides):
    with pytest.raises(ValueError):
        reference.ReferenceModel(make_config(**overrides), {})


def test_seed_rule_for_intermediate_size(rng):
    cfg = make_config(hidden_size=40, num_attention_heads=4, num_key_value_heads=4,
                      intermediate_size=192)  # 4 * 40 = 160 -> 192
    sd = random_state_dict(cfg, rng)
    ids, _ = make_inputs(rng, 1, 4, cfg["vocab_size"])
    explicit = ref_logits(cfg, sd, ids)
    np.testing.assert_array_equal(ref_logits(dict(cfg, intermediate_size=0), sd, ids), explicit)


# ------------------------------------------------------------------------- convenience API ---

def test_logits_from_model_like_object(rng):
    """`reference.logits` reads config, state_dict() and rope from a Model-like object."""
    cfg = make_config(num_attention_heads=4, num_key_value_heads=1)
    sd = random_state_dict(cfg, rng)
    D = cfg["hidden_size"] // cfg["num_attention_heads"]
    tables = numpy_rope_tables(D, cfg["max_position_embeddings"], 77.0)
    for t in (*sd.values(), *tables):
        t.setflags(write=False)  # like arrays viewing C++ memory
    fake = SimpleNamespace(config=SimpleNamespace(**cfg), state_dict=lambda: sd, rope=tables)
    ids, mask = make_inputs(rng, 2, 5, cfg["vocab_size"], padding="right", dtype=np.int32)
    out = reference.logits(fake, ids, mask)
    assert out.dtype == np.float32 and out.shape == (2, 5, cfg["vocab_size"])
    expected = ref_logits(cfg, sd, ids, mask, rope=tables)
    np.testing.assert_array_equal(out, expected)
