"""The PyTorch eager baseline (celerinfer.reference.torch_engine) computes the model: its logits match the
reference, its greedy tokens equal the celerinfer engine's, through prefill and cached decode."""

import numpy as np
import pytest

import celerinfer
from conftest import max_rel_err

torch = pytest.importorskip("torch", reason="the PyTorch baseline needs torch")
from celerinfer import reference  # noqa: E402
from celerinfer.reference.torch_engine import TorchEngine  # noqa: E402

SMALL = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=8, num_key_value_heads=2, vocab_size=256,
             max_position_embeddings=128)


@pytest.fixture(params=[False, True], ids=["separate-head", "tied-head"])
def model(request):
    return celerinfer.random_model(celerinfer.ModelConfig(**SMALL, tie_word_embeddings=request.param), seed=7)


def test_logits_match_the_reference(model):
    ids = celerinfer.random_tokens(1, 12, SMALL["vocab_size"], seed=1)
    logits = TorchEngine(model).forward(ids)
    assert logits.shape == (1, 12, SMALL["vocab_size"]) and logits.dtype == np.float32
    assert max_rel_err(logits, reference.logits(model, ids)) < 1e-4


def test_bf16_logits_follow_the_reference_within_bf16_error(model):
    """The bf16 cast (weights, activations, cache in bfloat16): logits near the fp32 reference,
    within what 8 bits of mantissa allow (relative to the largest logit), and clearly not equal
    to it (the cast happened)."""
    ids = celerinfer.random_tokens(1, 12, SMALL["vocab_size"], seed=3)
    engine = TorchEngine(model, dtype="bf16")
    logits, want = engine.forward(ids), reference.logits(model, ids)
    assert logits.dtype == np.float32 and engine.k_cache[0].dtype == torch.bfloat16
    assert 1e-4 < max_rel_err(logits, want) < 5e-2
    assert "dtype='bf16'" in repr(engine)
    with pytest.raises(ValueError, match="dtype must be one of f32, bf16"):
        TorchEngine(model, dtype="f16")


def test_cached_decode_matches_a_full_forward(model):
    """The logits of each decode step equal the full forward pass's at that position."""
    ids = celerinfer.random_tokens(1, 9, SMALL["vocab_size"], seed=2)
    engine = TorchEngine(model, max_seq_len=32)
    tokens = engine.generate(ids, 6).tokens
    full = reference.logits(model, tokens)
    engine.reset()
    with torch.inference_mode():
        steps = [engine._step(torch.from_numpy(tokens[:, :9].astype(np.int64)), all_logits=False)]
        steps += [engine._step(torch.from_numpy(tokens[:, p:p + 1].astype(np.int64)), all_logits=False)
                  for p in range(9, tokens.shape[1])]
    for offset, step in enumerate(steps):
        assert max_rel_err(step[:, -1].numpy(), full[:, 8 + offset]) < 1e-4


def test_greedy_tokens_equal_the_engine(model):
    ids = celerinfer.random_tokens(1, 10, SMALL["vocab_size"], seed=3)
    gen = TorchEngine(model, max_seq_len=64).generate(ids, 24)
    assert gen.tokens.shape == (1, 34)
    np.testing.assert_array_equal(gen.tokens, celerinfer.Engine(model).generate(ids, 24).tokens)
    assert gen.prefill_ns > 0 and len(gen.decode_ns) == 23 and all(t > 0 for t in gen.decode_ns)


def test_the_cache_is_preallocated_and_bounded(model, monkeypatch):
    calls = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)  # the process keeps its threads
    engine = TorchEngine(model, max_seq_len=16, threads=1)
    D = SMALL["hidden_size"] // SMALL["num_attention_heads"]
    assert engine.kv_cache_bytes == 2 * SMALL["num_hidden_layers"] * SMALL["num_key_value_heads"] * 16 * D * 4
    assert calls == [1]
    with pytest.raises(ValueError, match="exceed max_seq_len 16"):
        engine.generate(celerinfer.random_tokens(1, 10, SMALL["vocab_size"]), 8)
    with pytest.raises(ValueError, match="max_seq_len must be in"):
        TorchEngine(model, max_seq_len=1000)
    with pytest.raises(ValueError, match="sized for batch 1"):
        engine.forward(celerinfer.random_tokens(2, 4, SMALL["vocab_size"]))
