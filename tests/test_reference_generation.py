"""Checks of the PyTorch reference's generation (every KV-cache version) against its own full
forward pass, hand-made quantizer cases and properties of the versions.

Nothing here runs the C++ engine: these tests establish that the reference's cache paths are
right, so that the generation parity tests (test_generation_parity.py) mean something.
"""


import numpy as np
import pytest

from conftest import make_inputs, max_rel_err, random_state_dict

torch = pytest.importorskip("torch", reason="the PyTorch reference needs torch (extras 'test')")
from celerinfer import reference  # noqa: E402

F64 = torch.float64
ALL_VERSIONS = list(reference.VERSIONS)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """These models are tiny: one thread is much faster than OpenMP's fork/join on every op."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_config(**overrides):
    cfg = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
               vocab_size=61, max_position_embeddings=96, intermediate_size=48,
               rms_norm_eps=1e-5, rope_theta=1e4, tie_word_embeddings=False)
    cfg.update(overrides)
    return cfg


def make_model(rng, dtype=torch.float32, **overrides):
    cfg = make_config(**overrides)
    return reference.ReferenceModel(cfg, random_state_dict(cfg, rng, head_gain=2.0), dtype=dtype), cfg


def extend_mask(mask, batch, n_new):
    """The attention mask of prompt + n_new generated tokens (generated tokens are valid)."""
    if mask is None:
        return None
    return np.concatenate([mask, np.ones((batch, n_new), dtype=mask.dtype)], axis=1)


def full_forward_at_steps(model, tokens, mask, prompt_len, sharing=False):
    """The full forward on the generated sequence, at the positions each step picked from:
    P-1, P, ..., P+T-2 -> (B, T, vocab) numpy."""
    B, total = tokens.shape
    T = total - prompt_len
    with torch.no_grad():
        out = model(tokens, None if mask is None else torch.from_numpy(extend_mask(mask, B, T)),
                    sharing=sharing)
    return out[:, prompt_len - 1:total - 1].numpy()


def gen(model, ids, T, version, mask=None, eos=None):
    tokens, logits = model.generate(torch.from_numpy(ids), T, version,
                                    attention_mask=None if mask is None else torch.from_numpy(mask),
                                    eos_token_id=eos)
    assert tokens.dtype == torch.int64 and logits.dtype == torch.float32
    return tokens, logits.numpy()


# ------------------------------------------------------------------ v0 / v1: the plain model ---

GEN_CASES = [
    # (id, config overrides, batch, prompt length, padding, new tokens)
    ("gqa", {}, 2, 7, "none", 12),
    ("mha-left", dict(num_key_value_heads=4), 3, 9, "left", 10),
    ("mqa-right", dict(num_key_value_heads=1), 3, 9, "right", 10),
    ("layers1", dict(num_hidden_layers=1), 2, 5, "none", 8),
    ("layers3-tied", dict(num_hidden_layers=3, tie_word_embeddings=True), 2, 6, "left", 9),
    ("P1", {}, 2, 1, "none", 6),
]


@pytest.mark.parametrize("overrides,batch,P,padding,T", [c[1:] for c in GEN_CASES],
                         ids=[c[0] for c in GEN_CASES])
def test_v1_step_logits_equal_full_forward(rng, overrides, batch, P, padding, T):
    model, cfg = make_model(rng, dtype=F64, **overrides)
    ids, mask = make_inputs(rng, batch, P, cfg["vocab_size"], padding=padding)
    tokens, logits = gen(model, ids, T, "v1", mask)
    assert tokens.shape == (batch, P + T) and logits.shape == (batch, T, cfg["vocab_size"])
    assert torch.equal(tokens[:, :P], torch.from_numpy(ids)), "the prompt is not kept"
    expected = full_forward_at_steps(model, tokens, mask, P)
    assert max_rel_err(logits, expected) <= 1e-5
    # greedy: each token is the argmax of its step's logits
    np.testing.assert_array_equal(tokens[:, P:].numpy(), logits.argmax(axis=-1))


@pytest.mark.parametrize("overrides,batch,P,padding,T", [c[1:] for c in GEN_CASES],
                         ids=[c[0] for c in GEN_CASES])
def test_v0_equals_v1(rng, overrides, batch, P, padding, T):
    model, cfg = make_model(rng, **overrides)
    ids, mask = make_inputs(rng, batch, P, cfg["vocab_size"], padding=padding)
    tokens0, logits0 = gen(model, ids, T, "v0", mask)
    tokens1, logits1 = gen(model, ids, T, "v1", mask)
    assert torch.equal(tokens0, tokens1)
    assert max_rel_err(logits1, logits0) <= 1e-5


def test_argmax_ties_pick_the_lowest_id(rng):
    """A tied lm_head row makes two tokens' logits equal: greedy picks the lower id."""
    cfg = make_config()
    sd = random_state_dict(cfg, rng, head_gain=2.0)
    model = reference.ReferenceModel(cfg, sd)
    _, logits = gen(model, np.array([[3, 5, 7]]), 1, "v1")
    best = int(logits[0, 0].argmax())
    for twin in (0, cfg["vocab_size"] - 1):
        if twin == best:
            continue
        sd2 = dict(sd)
        sd2["lm_head.weight"] = sd["lm_head.weight"].copy()
        sd2["lm_head.weight"][twin] = sd["lm_head.weight"][best]
        tokens, _ = gen(reference.ReferenceModel(cfg, sd2), np.array([[3, 5, 7]]), 1, "v1")
        assert int(tokens[0, -1]) == min(twin, best)


def test_score_equals_generate_logits(rng):
    model, cfg = make_model(rng)
    ids, mask = make_inputs(rng, 3, 8, cfg["vocab_size"], padding="left")
    for version in ("v1", "v4", "v6"):
        tokens, logits = gen(model, ids, 30, version, mask)
        scored = model.score(torch.from_numpy(ids), tokens[:, 8:], version,
                             attention_mask=torch.from_numpy(mask))
        np.testing.assert_array_equal(scored.numpy(), logits)


def test_zero_new_tokens(rng):
    model, cfg = make_model(rng)
    ids = rng.integers(0, cfg["vocab_size"], size=(2, 4))
    tokens, logits = gen(model, ids, 0, "v2")
    assert torch.equal(tokens, torch.from_numpy(ids)) and logits.shape == (2, 0, cfg["vocab_size"])


def test_too_long_for_the_rope_table_raises(rng):
    model, cfg = make_model(rng, max_position_embeddings=16)
    with pytest.raises(ValueError, match="RoPE table"):
        gen(model, np.zeros((1, 10), dtype=np.int64), 8, "v1")


# ------------------------------------------------------------------- batches and padding ---

@pytest.mark.parametrize("version", ["v1", "v2", "v4", "v6"])
@pytest.mark.parametrize("padding", ["left", "right"])
def test_rows_are_independent(rng, version, padding):
    """A padded batch generates, row by row, what each row generates alone with its mask."""
    model, cfg = make_model(rng)
    ids, mask = make_inputs(rng, 3, 10, cfg["vocab_size"], padding=padding, min_len=2)
    tokens, logits = gen(model, ids, 28, version, mask)
    for b in range(3):
        t_b, l_b = gen(model, ids[b:b + 1], 28, version, mask[b:b + 1])
        assert torch.equal(t_b[0], tokens[b]), f"row {b}"
        assert max_rel_err(l_b[0], logits[b]) <= 1e-5, f"row {b}"


def test_left_padded_row_generates_like_its_unpadded_prompt(rng):
    """Left padding keeps positions unshifted; RoPE depends on i - j only, so a left-padded row
    generates what its unpadded prompt generates alone (v1, float64: up to rounding)."""
    model, cfg = make_model(rng, dtype=F64)
    ids, mask = make_inputs(rng, 3, 10, cfg["vocab_size"], padding="left", min_len=2)
    tokens, logits = gen(model, ids, 12, "v1", mask)
    for b in range(1, 3):
        n_pad = int((mask[b] == 0).sum())
        t_b, l_b = gen(model, ids[b:b + 1, n_pad:], 12, "v1")
        assert torch.equal(t_b[0], tokens[b, n_pad:]), f"row {b}"
        assert max_rel_err(l_b[0], logits[b]) <= 1e-9, f"row {b}"


@pytest.mark.parametrize("padding", ["left", "right"])
def test_masked_prompt_tokens_have_no_influence(rng, padding):
    """Changing the ids at masked prompt positions (except the last column, whose query gives
    step 0's logits for every row) changes nothing."""
    model, cfg = make_model(rng)
    ids, mask = make_inputs(rng, 4, 9, cfg["vocab_size"], padding=padding, min_len=2)
    masked = mask == 0
    masked[:, -1] = False
    assert masked.any()
    other = np.where(masked, rng.integers(0, cfg["vocab_size"], size=ids.shape), ids)
    for version in ("v1", "v6"):
        tokens_a, logits_a = gen(model, ids, 10, version, mask)
        tokens_b, logits_b = gen(model, other, 10, version, mask)
        assert torch.equal(tokens_a[:, 9:], tokens_b[:, 9:])
        assert max_rel_err(logits_b, logits_a) <= 1e-6


# ------------------------------------------------------------------------------------ EOS ---

def test_eos_row_keeps_emitting_eos(rng):
    model, cfg = make_model(rng)
    ids, _ = make_inputs(rng, 3, 6, cfg["vocab_size"])
    plain, plain_logits = gen(model, ids, 16, "v1")
    eos = int(plain[0, 6 + 3])  # row 0 emits it at step 3 (at the latest)
    tokens, logits = gen(model, ids, 16, "v1", eos=eos)
    first = {}
    for b in range(3):
        hits = np.flatnonzero(plain[b, 6:].numpy() == eos)
        first[b] = int(hits[0]) if hits.size else None
    assert first[0] is not None and first[0] <= 3
    all_done = all(s is not None for s in first.values())
    T = (max(first.values()) + 1) if all_done else 16
    assert tokens.shape == (3, 6 + T) and logits.shape[1] == T
    for b in range(3):
        stop = first[b] if first[b] is not None else T
        # identical up to and including the first EOS, then only EOS
        assert torch.equal(tokens[b, :6 + min(stop + 1, T)], plain[b, :6 + min(stop + 1, T)])
        assert bool((tokens[b, 6 + stop + 1:] == eos).all())
        # the logits of the steps before (and at) the EOS are the plain ones
        np.testing.assert_array_equal(logits[b, :min(stop + 1, T)],
                                      plain_logits[b, :min(stop + 1, T)])


def test_generation_stops_when_every_row_has_emitted_eos(rng):
    model, cfg = make_model(rng)
    ids = np.repeat(rng.integers(0, cfg["vocab_size"], size=(1, 5)), 2, axis=0)
    plain, _ = gen(model, ids, 10, "v2")
    eos = int(plain[0, 5 + 4])
    first = int(np.flatnonzero(plain[0, 5:].numpy() == eos)[0])
    tokens, logits = gen(model, ids, 10, "v2", eos=eos)
    assert tokens.shape == (2, 5 + first + 1) and logits.shape[1] == first + 1
    assert torch.equal(tokens, plain[:, :5 + first + 1])


# ----------------------------------------------------------------------------- quantizers ---

def numpy_int8(x, axis):
    """The INT8 contract in float32 numpy: scale = max|x| / 127 over `axis`,
    q = clip(round_half_even(x / scale), -127, 127); scale 0 -> q 0."""
    x = np.asarray(x, dtype=np.float32)
    scale = (np.abs(x).max(axis=axis, keepdims=True) / np.float32(127)).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.clip(np.round(x / scale), -127, 127)
    q = np.where(scale > 0, q, 0).astype(np.int8)
    return q, scale


@pytest.mark.parametrize("kind", ["per_token", "per_channel"])
def test_int8_quantizer_matches_the_contract_and_its_error_bound(rng, kind):
    x = (rng.standard_normal((2, 3, 32, 16)) * rng.uniform(0.01, 10, size=(2, 3, 32, 1)))
    x = x.astype(np.float32)
    x[0, 1, 5] = 0.0         # a zero token
    x[1, 2, :, 7] = 0.0      # a zero channel
    xt = torch.from_numpy(x)
    if kind == "per_token":
        q, scale = reference.quantize_int8_per_token(xt)
        assert scale.shape == (2, 3, 32, 1)
        axis = -1
    else:
        q, scale = reference.quantize_int8_per_channel(xt)
        assert scale.shape == (2, 3, 1, 16)
        axis = -2
    assert q.dtype == torch.int8 and scale.dtype == torch.float32
    q_np, scale_np = numpy_int8(x, axis)
    np.testing.assert_array_equal(scale.numpy(), scale_np)
    np.testing.assert_array_equal(q.numpy(), q_np)

    deq = reference.dequantize_int8(q, scale).numpy()
    assert np.all(np.isfinite(deq))
    # |x - q * scale| <= scale / 2 per element (plus float32 rounding of x / scale and q * scale)
    bound = scale.numpy() / 2 * (1 + 1e-5) + 1e-30
    assert np.all(np.abs(x - deq) <= bound)
    # the largest magnitude of each group maps to +-127 exactly
    assert np.all(np.abs(q.numpy()).max(axis=axis)[scale_np.squeeze(axis) > 0] == 127)
    # zeros: scale 0, q 0, dequantized 0 (no NaN)
    zero_group = (0, 1, 5) if kind == "per_token" else (1, 2, slice(None), 7)
    assert np.all(deq[zero_group] == 0) and np.all(q.numpy()[zero_group] == 0)
    if kind == "per_token":
        assert scale[0, 1, 5, 0] == 0
    else:
        assert scale[1, 2, 0, 7] == 0


def test_int8_rounds_half_to_even():
    # max |x| = 127 gives scale = 1 exactly, so x / scale = x
    x = torch.tensor([[127.0, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.5, 126.5, -127.0]])
    q, scale = reference.quantize_int8_per_token(x)
    assert float(scale) == 1.0
    assert q.tolist() == [[127, 0, 2, 2, 0, -2, -2, 4, 126, -127]]
    q, scale = reference.quantize_int8_per_channel(x.T)
    assert q.T.tolist() == [[127, 0, 2, 2, 0, -2, -2, 4, 126, -127]]


def test_fp16_round_trip_is_round_to_nearest_even():
    one_ulp = 2.0 ** -10  # the spacing of half-precision numbers in [1, 2)
    x = torch.tensor([1.0 + one_ulp / 2, 1.0 + 1.5 * one_ulp, 70000.0, 1e-8, -3.0])
    y = reference.fp16_round_trip(x)
    assert y.dtype == torch.float32
    assert y.tolist() == [1.0, 1.0 + 2 * one_ulp, float("inf"), 0.0, -3.0]


# -------------------------------------------------------------------------- the cache object ---

def random_kv(rng, n, B=2, KVH=2, D=8):
    k = torch.from_numpy(rng.standard_normal((B, KVH, n, D)).astype(np.float32))
    v = torch.from_numpy(rng.standard_normal((B, KVH, n, D)).astype(np.float32))
    return k, v


def write_tokens(cache, k, v, start, stop):
    """Writes tokens start..stop-1 (all valid) and reads the cache back: (k, v) as read."""
    B = k.shape[0]
    cache.write(k[:, :, start:stop], v[:, :, start:stop], torch.arange(start, stop),
                torch.ones(B, stop - start, dtype=torch.bool))
    k_read, v_read, allowed = cache.read(torch.arange(start, stop))
    assert allowed.shape == (B, k.shape[1], stop - start, k_read.shape[2])
    return k_read, v_read


@pytest.mark.parametrize("version", ["v1", "v2", "v5"])
def test_cache_reads_back_what_it_stores(rng, version):
    cache = reference.KVCache(reference.version_spec(version), head_dim=8)
    k, v = random_kv(rng, 9)
    for chunk in ((0, 5), (5, 6), (6, 9)):     # a prefill of 5 tokens, then 1, then 3
        k_read, v_read = write_tokens(cache, k, v, *chunk)
    assert k_read.shape[2] == 9
    for got, x in ((k_read, k), (v_read, v)):
        if version == "v1":
            expected = x
        elif version == "v5":
            expected = x.half().float()
        else:
            q, scale = numpy_int8(x.numpy(), -1)
            expected = torch.from_numpy(q.astype(np.float32) * scale)
        assert got.dtype == torch.float32
        assert torch.equal(got, expected)


def test_a_token_attends_to_its_own_quantized_kv(rng):
    """The new tokens' K/V are written (quantized) before attention reads the cache: with a
    one-token prompt, step 0 attends over that token alone, and INT8 already changes it (V is
    quantized: the softmax over one key is 1 whatever K), fp16 too; KIVI keeps it exact (the
    token is in the unfinished block)."""
    model, cfg = make_model(rng)
    ids = rng.integers(0, cfg["vocab_size"], size=(3, 1))
    _, exact = gen(model, ids, 1, "v1")
    for version in ("v2", "v4", "v5"):
        _, got = gen(model, ids, 1, version)
        assert max_rel_err(got, exact) > 1e-7, version
    _, got = gen(model, ids, 1, "v6")
    np.testing.assert_array_equal(got, exact)


def test_kivi_cache_quantizes_each_block_when_its_last_token_is_written(rng):
    G = 32
    cache = reference.KVCache(reference.version_spec("v6"), head_dim=8)
    k, v = random_kv(rng, 80)
    writes = [(0, 20)] + [(i, i + 1) for i in range(20, 40)] + [(40, 75), (75, 80)]
    for start, stop in writes:
        k_read, v_read = write_tokens(cache, k, v, start, stop)
        assert k_read.shape[2] == stop
        n_done = (stop // G) * G    # positions in completed blocks
        # the recent window (the unfinished block) is exact
        assert torch.equal(k_read[:, :, n_done:], k[:, :, n_done:stop])
        assert torch.equal(v_read[:, :, n_done:], v[:, :, n_done:stop])
        for j in range(stop // G):
            block = slice(j * G, (j + 1) * G)
            qk, sk = numpy_int8(k[:, :, block].numpy(), -2)   # K per channel over the block
            qv, sv = numpy_int8(v[:, :, block].numpy(), -1)   # V per token
            np.testing.assert_array_equal(k_read[:, :, block].numpy(), qk.astype(np.float32) * sk)
            np.testing.assert_array_equal(v_read[:, :, block].numpy(), qv.astype(np.float32) * sv)
        if n_done:
            assert not torch.equal(k_read[:, :, :n_done], k[:, :, :n_done])


def test_kivi_generation_is_exact_until_the_first_block_completes(rng):
    """v6 equals v1 while every cached position is in the unfinished first block; the step that
    writes position 31 (= the cache reaching 32 tokens) attends over a quantized block."""
    model, cfg = make_model(rng)
    P, T = 20, 20
    ids = rng.integers(0, cfg["vocab_size"], size=(2, P))
    tokens, logits_v1 = gen(model, ids, T, "v1")
    logits_v6 = model.score(torch.from_numpy(ids), tokens[:, P:], "v6").numpy()
    # step t writes positions up to P+t-1 (step 0: the prompt 0..P-1)
    first_quantized = 32 - P
    np.testing.assert_array_equal(logits_v6[:, :first_quantized], logits_v1[:, :first_quantized])
    assert max_rel_err(logits_v6[:, first_quantized], logits_v1[:, first_quantized]) > 1e-6


def test_kivi_prefill_quantizes_its_completed_blocks_before_attention(rng):
    """A prompt of 40 tokens: block 0 is quantized at step 0 already, so v6 differs from v1 at
    the prompt's last position; a prompt of 31 tokens leaves step 0 exact."""
    model, cfg = make_model(rng)
    for P, quantized in ((40, True), (31, False)):
        ids = rng.integers(0, cfg["vocab_size"], size=(1, P))
        _, l1 = gen(model, ids, 1, "v1")
        _, l6 = gen(model, ids, 1, "v6")
        if quantized:
            assert max_rel_err(l6, l1) > 1e-6
        else:
            np.testing.assert_array_equal(l6, l1)


# ------------------------------------------------------------------- cross-layer sharing ---

@pytest.mark.parametrize("layers", [2, 3, 4])
def test_sharing_changes_the_function_and_v3_implements_it(rng, layers):
    model, cfg = make_model(rng, dtype=F64, num_hidden_layers=layers)
    ids, mask = make_inputs(rng, 2, 8, cfg["vocab_size"], padding="left")
    with torch.no_grad():
        plain = model(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
        shared = model.forward_shared(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    valid = mask != 0
    assert max_rel_err(shared[valid], plain[valid]) > 1e-2
    tokens, logits = gen(model, ids, 14, "v3", mask)
    expected = full_forward_at_steps(model, tokens, mask, 8, sharing=True)
    assert max_rel_err(logits, expected) <= 1e-5
    np.testing.assert_array_equal(tokens[:, 8:].numpy(), logits.argmax(axis=-1))


def test_sharing_with_one_layer_is_the_plain_model(rng):
    model, cfg = make_model(rng, dtype=F64, num_hidden_layers=1)
    ids = rng.integers(0, cfg["vocab_size"], size=(2, 6))
    t1, l1 = gen(model, ids, 8, "v1")
    t3, l3 = gen(model, ids, 8, "v3")
    assert torch.equal(t1, t3)
    np.testing.assert_array_equal(l1, l3)


def test_odd_layers_do_not_use_their_kv_projections(rng):
    """With sharing, changing the K/V weights of layers 1 and 3 changes nothing; changing
    those of layer 2 does. Without sharing, layer 1's K/V weights matter."""
    cfg = make_config(num_hidden_layers=4)
    sd = random_state_dict(cfg, rng, head_gain=2.0)
    ids = torch.from_numpy(rng.integers(0, cfg["vocab_size"], size=(2, 7)))

    def perturbed(layer):
        sd2 = dict(sd)
        for name in ("k_proj", "v_proj"):
            key = f"model.layers.{layer}.self_attn.{name}.weight"
            sd2[key] = sd[key] + rng.standard_normal(sd[key].shape).astype(np.float32)
        return reference.ReferenceModel(cfg, sd2)

    base = reference.ReferenceModel(cfg, sd)
    with torch.no_grad():
        for layer, matters in ((1, False), (3, False), (2, True)):
            other = perturbed(layer)
            diff = max_rel_err(other.forward_shared(ids).numpy(), base.forward_shared(ids).numpy())
            assert (diff > 1e-3) == matters, f"layer {layer}: {diff:.3g}"
            t_base, l_base = gen(base, ids.numpy(), 6, "v4")
            t_other, l_other = gen(other, ids.numpy(), 6, "v4")
            assert (max_rel_err(l_other, l_base) > 1e-3) == matters, f"layer {layer} (v4)"
        assert max_rel_err(perturbed(1)(ids).numpy(), base(ids).numpy()) > 1e-3


def test_new_caches_follow_the_share_map(rng):
    model, _ = make_model(rng, num_hidden_layers=5)
    assert [c is None for c in model.new_caches("v3")] == [False, True, False, True, False]
    assert all(c is not None for c in model.new_caches("v2"))
    assert all(c is None for c in model.new_caches("v0"))


# ------------------------------------------------- quantized versions vs their exact twins ---

# (version, the exact version it approximates, bound on the step-logit max rel err over the
# sequence it generates, measured against the exact full forward on the same tokens). Measured
# over 40 random models of this file's kind (B=2, P=12 right-padded, T=40): fp16 median 9e-4,
# max 3.2e-3; INT8 per token (v2) median 0.016, max 0.042; KIVI (v6) median 0.013, max 0.042;
# INT8 + sharing (v4 vs v3) median 0.014, max 0.030. The bounds are ~3x the largest seen: they
# catch a wrong scale, grouping or dequantization (errors of order 1), not small drifts.
APPROX = [("v5", "v1", 1e-2), ("v2", "v1", 0.15), ("v6", "v1", 0.15), ("v4", "v3", 0.15)]


@pytest.mark.parametrize("version,exact,bound", APPROX, ids=[a[0] for a in APPROX])
def test_quantized_versions_stay_close_to_their_exact_twin(rng, version, exact, bound):
    sharing = reference.version_spec(exact)["sharing"] == "reuse"
    errors = []
    for _ in range(3):
        model, cfg = make_model(rng, dtype=F64)
        ids, mask = make_inputs(rng, 2, 12, cfg["vocab_size"], padding="right")
        tokens, logits = gen(model, ids, 40, version, mask)
        expected = full_forward_at_steps(model, tokens, mask, 12, sharing=sharing)
        errors.append(max_rel_err(logits, expected))
    assert 0 < max(errors) <= bound, f"{version} vs {exact}: errors {errors}"


@pytest.mark.parametrize("layers", [1, 3])
def test_every_version_runs_with_odd_layer_counts(rng, layers):
    model, cfg = make_model(rng, num_hidden_layers=layers)
    ids, mask = make_inputs(rng, 2, 5, cfg["vocab_size"], padding="left")
    for version in ALL_VERSIONS:
        tokens, logits = gen(model, ids, 35, version, mask)
        assert tokens.shape == (2, 40) and np.all(np.isfinite(logits))


# ------------------------------------------------------------------------- version specs ---

def test_version_spec_accepts_names_and_knob_dicts():
    spec = reference.version_spec("v6")
    assert spec == dict(name="v6", use_cache=True, key=dict(storage="int8", along="channel", group=32),
                        value=dict(storage="int8", along="token", group=0), residual=32, eviction="none",
                        sinks=0, window=0, heavy=0, sharing="none", share_from=0, merge_angle=0.0)
    as_dict = dict(name="mine", key_storage="int8", value_storage="int8", sharing="reuse")
    assert reference.version_spec(as_dict)["sharing"] == "reuse"
    based = reference.version_spec({"base": "v7", "residual": 64})
    assert based["residual"] == 64 and based["key"] == reference.version_spec("v7")["key"]
    with pytest.raises(ValueError, match="unknown version"):
        reference.version_spec("v99")
    with pytest.raises(ValueError, match="unsupported K storage 'int3'"):
        reference.version_spec(dict(as_dict, key_storage="int3"))
    with pytest.raises(ValueError, match="unsupported eviction 'lru'"):
        reference.version_spec(dict(as_dict, eviction="lru"))


def test_a_knob_dict_gives_the_same_generation_as_the_name(rng):
    model, cfg = make_model(rng)
    ids = rng.integers(0, cfg["vocab_size"], size=(1, 6))
    knobs = dict(key_storage="int8", value_storage="int8", sharing="reuse")
    t_name, l_name = gen(model, ids, 10, "v4")
    t_dict, l_dict = gen(model, ids, 10, knobs)
    assert torch.equal(t_name, t_dict)
    np.testing.assert_array_equal(l_name, l_dict)


def test_numpy_convenience_wrapper(rng):
    celerinfer = pytest.importorskip("celerinfer")
    m = celerinfer.random_model(celerinfer.ModelConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        vocab_size=50, max_position_embeddings=32), seed=3)
    ids = rng.integers(0, 50, size=(2, 5))
    tokens, logits = reference.generate(m, "v2", ids, 6)
    assert tokens.dtype == np.int64 and tokens.shape == (2, 11)
    assert logits.dtype == np.float32 and logits.shape == (2, 6, 50)
    scored = reference.score(m, "v2", ids, tokens[:, 5:])
    np.testing.assert_array_equal(scored, logits)
