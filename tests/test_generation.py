"""The generation API of the C++ engine: timers, memory accounting, sampling through the
engine, stopping, padding and bad arguments. (Parity with the reference: test_generation_parity.)"""

import numpy as np
import pytest

import celerinfer
from celerinfer import Engine, ModelConfig
from conftest import fitting_version, max_rel_err

VERSIONS = [v["name"] for v in celerinfer.versions()]


@pytest.fixture(scope="module")
def model():
    config = ModelConfig(hidden_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         vocab_size=211, max_position_embeddings=96)
    return celerinfer.random_model(config, seed=21)


def test_registry_lists_the_design_versions():
    flags = {v["name"]: (v["use_cache"], v["kv_dtype"], v["cross_layer_sharing"]) for v in celerinfer.versions()}
    assert flags["v0"] == (False, "none", False)
    assert flags["v1"] == (True, "fp32", False)
    assert flags["v2"] == (True, "int8", False)
    assert flags["v3"] == (True, "fp32", True)
    assert flags["v4"] == (True, "int8", True)
    assert any(kv == "fp16" for _, kv, _ in flags.values())


@pytest.mark.parametrize("version", VERSIONS)
def test_phases_are_non_negative_and_add_up_to_the_total(model, rng, version):
    ids = rng.integers(0, 211, size=(2, 12))
    gen = Engine(model, fitting_version(version, 96)).generate(ids, 10)
    table = gen.step_table  # (steps, phases..., total_ns, tokens)
    phases, total = table[:, :5], table[:, 5]
    assert (phases >= 0).all() and (total > 0).all()
    gap = total - phases.sum(axis=1)
    # The phases are disjoint parts of each step, so they never exceed it; what they miss is
    # loop bookkeeping between them: allow 20% + 0.2 ms per step for a preempted thread.
    assert (gap >= 0).all(), gap
    assert (gap <= 0.2 * total + 200_000).all(), (gap, total)
    t = gen.timings
    assert t["ttft_ms"] == pytest.approx(total[0] / 1e6)
    assert len(t["per_token_ms"]) == 9
    assert t["total_ms"] == pytest.approx(total.sum() / 1e6)
    assert set(t["phases_ms"]) == {"embedding", "attention", "mlp", "head", "other"}
    assert t["phases_ms"]["attention"] > 0 and t["phases_ms"]["mlp"] > 0
    assert list(table[:, 6]) == ([12 + i for i in range(10)] if version == "v0" else [12] + [1] * 9)


def test_timing_off_reads_no_clock_for_phases(model):
    gen = Engine(model, "v1").generate(np.arange(5), 4, timing=False)
    assert (gen.step_table[:, :5] == 0).all() and (gen.step_table[:, 5] > 0).all()


@pytest.mark.parametrize("version", VERSIONS)
def test_memory_accounting(model, version):
    ids = np.arange(20).reshape(2, 10)
    gen = Engine(model, fitting_version(version, 64), max_seq_len=64).generate(ids, 6)
    config = model.config
    if version == "v0":
        assert gen.kv_cache_bytes == 0 and gen.kv_cache_capacity_bytes == 0
    else:
        assert 0 < gen.kv_cache_bytes < gen.kv_cache_capacity_bytes
    if version == "v1":  # 15 positions cached (the last token is sampled, not yet processed)
        assert gen.kv_cache_bytes == 2 * config.num_hidden_layers * 2 * 15 * config.num_key_value_heads * 32 * 4
        assert gen.kv_cache_capacity_bytes == 2 * config.num_hidden_layers * 2 * 64 * config.num_key_value_heads * 32 * 4
    assert gen.peak_bytes >= gen.kv_cache_capacity_bytes and gen.peak_rss_bytes > gen.peak_bytes


def test_same_seed_same_tokens_and_seeds_differ(model):
    engine = Engine(model, "v1")
    ids = np.arange(8)[None]
    kwargs = dict(temperature=1.0, top_k=50, top_p=0.95)
    a = engine.generate(ids, 24, seed=7, **kwargs).tokens
    b = engine.generate(ids, 24, seed=7, **kwargs).tokens
    c = engine.generate(ids, 24, seed=8, **kwargs).tokens
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_tiny_temperature_equals_greedy(model):
    engine = Engine(model, "v2")
    ids = np.arange(6)[None]
    np.testing.assert_array_equal(engine.generate(ids, 16, temperature=1e-7, seed=3).tokens,
                                  engine.generate(ids, 16).tokens)


def test_results_do_not_depend_on_threads(model):
    ids = np.arange(30).reshape(3, 10) % 211
    before = celerinfer.get_num_threads()
    try:
        outs = [Engine(model, "v2", threads=t).generate(ids, 8, return_logits=True) for t in (1, 2)]
    finally:
        celerinfer.set_num_threads(before)
    np.testing.assert_array_equal(outs[0].logits, outs[1].logits)


def test_eos_stops_rows_and_then_generation(model):
    engine = Engine(model, "v1")
    ids = np.arange(4)[None]
    free = engine.generate(ids, 12).new_tokens[0]
    eos = int(free[3])
    stop = int(np.argmax(free == eos))  # the first time the greedy run emits it
    gen = engine.generate(ids, 12, eos_token_id=eos, return_logits=True)
    assert gen.new_tokens.shape == (1, stop + 1) and gen.new_tokens[0, -1] == eos
    assert gen.logits.shape == (1, stop + 1, 211)
    # With two rows, a finished row keeps emitting EOS while the other goes on.
    two = engine.generate(np.stack([ids[0], ids[0] + 50]), 12, eos_token_id=eos)
    row = two.new_tokens[0]
    assert (row[stop:] == eos).all()


def test_left_padded_row_generates_like_the_bare_prompt(model, rng):
    """Positions are not shifted, but RoPE only sees distances, so a left-padded prompt must
    give the same logits as the bare prompt."""
    prompt = rng.integers(0, 211, size=7)
    padded = np.concatenate([rng.integers(0, 211, size=5), prompt])
    mask = np.r_[np.zeros(5), np.ones(7)].astype(np.int32)
    other = rng.integers(0, 211, size=12)
    batch = Engine(model, "v1").generate(np.stack([padded, other]), 6, attention_mask=np.stack([mask, np.ones(12, np.int32)]),
                                         return_logits=True)
    alone = Engine(model, "v1").generate(prompt[None], 6, return_logits=True)
    assert max_rel_err(batch.logits[0], alone.logits[0]) < 1e-4
    np.testing.assert_array_equal(batch.new_tokens[0], alone.new_tokens[0])


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(max_new_tokens=0), ValueError, "max_new_tokens"),
        (dict(max_new_tokens=-3), ValueError, "max_new_tokens"),
        (dict(max_new_tokens=90), ValueError, "exceeds max_seq_len"),
        (dict(top_p=0.0), ValueError, "top_p"),
        (dict(top_p=1.5), ValueError, "top_p"),
        (dict(temperature=-1.0), ValueError, "temperature"),
        (dict(top_k=-1), ValueError, "top_k"),
        (dict(repetition_penalty=0.0), ValueError, "repetition_penalty"),
        (dict(eos_token_id=211), ValueError, "eos_token_id"),
    ],
)
def test_bad_generation_arguments(model, kwargs, error, message):
    args = {"max_new_tokens": 4, **kwargs}
    with pytest.raises(error, match=message):
        Engine(model, "v1").generate(np.arange(10)[None], **args)


def test_bad_engine_arguments(model):
    with pytest.raises(ValueError, match="unknown version 'v99'.*v0, v1"):
        Engine(model, "v99")
    with pytest.raises(ValueError, match="cuda"):
        Engine(model, "v1", device="cuda")
    with pytest.raises(ValueError, match="max_position_embeddings"):
        Engine(model, "v1", max_seq_len=1000)
    with pytest.raises(ValueError, match="threads"):
        Engine(model, "v1", threads=0)
    with pytest.raises(ValueError, match="exceeds max_seq_len"):
        Engine(model, "v1", max_seq_len=16).generate(np.arange(16)[None], 1)
    with pytest.raises(ValueError, match="out of range"):
        Engine(model, "v1").generate(np.array([[5, 500]]), 2)
    with pytest.raises(TypeError, match="Model"):
        Engine("model.json", "v1")


@pytest.mark.parametrize("version", ["v1", "v2", "v4", "v6"])
def test_score_is_generation_with_forced_tokens(model, rng, version):
    """Teacher forcing walks the same cache path as generation: with the generated tokens forced,
    the logits are the ones generation sampled from."""
    prompt = rng.integers(0, 211, size=(2, 6))
    gen = Engine(model, version).generate(prompt, 40, return_logits=True)
    scored = Engine(model, version).score(gen.tokens, prefill_length=6)
    assert scored.shape == (2, 46, 211)
    assert max_rel_err(scored[:, 5:45], gen.logits) < 1e-5


def test_score_of_v1_is_the_forward_pass_and_v0_is_it_exactly(model, rng):
    ids = rng.integers(0, 211, size=(2, 30))
    forward = model.forward(ids)
    np.testing.assert_array_equal(Engine(model, "v0").score(ids), forward)
    assert max_rel_err(Engine(model, "v1").score(ids), forward) < 1e-5
    with pytest.raises(ValueError, match="prefill_length"):
        Engine(model, "v1").score(ids, prefill_length=31)
