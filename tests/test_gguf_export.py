"""GGUF export (celerinfer.io.gguf): the file reads back with gguf's own reader (names,
shapes, metadata, values per dtype), and llama.cpp computes the same logits as the engine."""

import numpy as np
import pytest

import celerinfer
from celerinfer.io.gguf import (LAYER_TENSORS, export_gguf, gguf_tensors, interleave_rope_rows,
                                    placeholder_vocab, read_gguf)
from conftest import max_rel_err

gguf = pytest.importorskip("gguf", reason="GGUF export needs the gguf package: pip install 'celerinfer[compare]'")

SMALL = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=8, num_key_value_heads=2, vocab_size=300,
             max_position_embeddings=128, rope_theta=10000.0, rms_norm_eps=1e-6)
#: max|read - written| / max|written| per file dtype: f16 rounds to 11 significant bits; q8_0 has
#: 127 levels per block of 32, so its error is at most half a step of the block's max
TOLERANCE = {"f32": 0.0, "f16": 1e-3, "q8_0": 1 / 127}


@pytest.fixture(scope="module", params=[False, True], ids=["separate-head", "tied-head"])
def model(request):
    return celerinfer.random_model(celerinfer.ModelConfig(**SMALL, tie_word_embeddings=request.param), seed=11)


def test_rope_rows_interleave_the_halves_of_each_head():
    heads, D = 3, 6
    w = np.arange(heads * D, dtype=np.float32)[:, None] * np.ones((1, 2), np.float32)
    out = interleave_rope_rows(w, heads)
    for h in range(heads):
        for i in range(D // 2):
            assert out[h * D + 2 * i, 0] == h * D + i
            assert out[h * D + 2 * i + 1, 0] == h * D + D // 2 + i
    with pytest.raises(ValueError, match="even size"):
        interleave_rope_rows(np.zeros((9, 2)), 3)


@pytest.mark.parametrize("dtype", ["f32", "f16", "q8_0"])
def test_round_trip(model, dtype, tmp_path):
    path = export_gguf(model, tmp_path / f"m-{dtype}.gguf", dtype)
    reader = gguf.GGUFReader(path)
    fields = {name: f.contents() for name, f in reader.fields.items()}
    c = model.config
    assert fields["general.architecture"] == "llama"
    assert fields["llama.block_count"] == c.num_hidden_layers
    assert fields["llama.embedding_length"] == c.hidden_size
    assert fields["llama.feed_forward_length"] == c.intermediate_size
    assert fields["llama.attention.head_count"] == c.num_attention_heads
    assert fields["llama.attention.head_count_kv"] == c.num_key_value_heads
    assert fields["llama.context_length"] == c.max_position_embeddings
    assert fields["llama.rope.freq_base"] == pytest.approx(c.rope_theta)
    assert fields["llama.attention.layer_norm_rms_epsilon"] == pytest.approx(c.rms_norm_eps)
    assert fields["tokenizer.ggml.model"] == "llama"
    assert fields["tokenizer.ggml.tokens"] == placeholder_vocab(c.vocab_size)

    written = gguf_tensors(model)
    names = ["token_embd.weight", *[f"blk.{i}.{n}.weight" for i in range(c.num_hidden_layers)
                                    for n in LAYER_TENSORS.values()], "output_norm.weight"]
    if not c.tie_word_embeddings:
        names.append("output.weight")
    assert sorted(written) == sorted(names)
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    assert sorted(types) == sorted(names)
    expected = {"f32": "F32", "f16": "F16", "q8_0": "Q8_0"}[dtype]
    for name, array in read_gguf(path).items():
        assert array.shape == written[name].shape, name
        assert types[name] == ("F32" if array.ndim == 1 else expected), name
        assert max_rel_err(array, written[name]) <= TOLERANCE[dtype] + 1e-7, name


def test_q_and_k_hold_the_model_weights_reordered(model):
    sd, out = model.state_dict(), gguf_tensors(model)
    wq = sd["model.layers.1.self_attn.q_proj.weight"]
    np.testing.assert_array_equal(out["blk.1.attn_q.weight"], interleave_rope_rows(wq, SMALL["num_attention_heads"]))
    np.testing.assert_array_equal(out["blk.1.attn_v.weight"], sd["model.layers.1.self_attn.v_proj.weight"])


def test_bad_arguments(model, tmp_path):
    with pytest.raises(ValueError, match="dtype must be one of f32, f16, q8_0"):
        export_gguf(model, tmp_path / "x.gguf", "q5_0")
    with pytest.raises(TypeError, match="celerinfer.Model"):
        export_gguf("model.json", tmp_path / "x.gguf")


def test_placeholder_vocab_is_unique_with_byte_tokens_when_they_fit():
    big, small = placeholder_vocab(300), placeholder_vocab(40)
    assert len(big) == len(set(big)) == 300 and big[:3] == ["<unk>", "<s>", "</s>"] and big[3 + 10] == "<0x0A>"
    assert len(small) == len(set(small)) == 40 and "<0x0A>" not in small


# ---- llama.cpp computes the same function ------------------------------------------------------

@pytest.fixture(scope="module")
def llama_runner():
    pytest.importorskip("llama_cpp", reason="llama.cpp parity needs llama-cpp-python: pip install 'celerinfer[compare]'")
    from celerinfer.bench.backends import LlamaCppRunner

    return LlamaCppRunner


@pytest.mark.slow
def test_llama_cpp_logits_match_the_engine(model, llama_runner, tmp_path):
    """f32 weights and an f32 KV cache: llama.cpp's logits equal the engine's (measured: ~3e-7
    of the largest logit; ~5e-2 without the RoPE row reordering)."""
    ids = celerinfer.random_tokens(1, 24, SMALL["vocab_size"], seed=5)
    path = export_gguf(model, tmp_path / "m.gguf", "f32")
    runner = llama_runner(path, "f32", flash_attn=False, threads=2, n_ctx=64, logits_all=True)
    try:
        got = runner.logits(ids)
    finally:
        runner.close()
    want = celerinfer.Engine(model).forward(ids)[0]
    assert max_rel_err(got, want) < 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("dtype, kv, limit", [("f16", "f16", 5e-3), ("q8_0", "f16", 5e-2), ("q8_0", "q8_0", 5e-2)])
def test_llama_cpp_quantized_exports_stay_close(llama_runner, tmp_path, dtype, kv, limit):
    """The 16- and 8-bit exports compute nearly the same logits (same argmax almost everywhere).
    head_dim 32: llama.cpp's q8_0 KV cache stores whole 32-value blocks per head."""
    config = celerinfer.ModelConfig(**{**SMALL, "num_attention_heads": 2, "num_key_value_heads": 1})
    model = celerinfer.random_model(config, seed=12)
    ids = celerinfer.random_tokens(1, 24, SMALL["vocab_size"], seed=6)
    runner = llama_runner(export_gguf(model, tmp_path / f"m-{dtype}.gguf", dtype), kv, flash_attn=kv == "q8_0",
                          threads=2, n_ctx=64, logits_all=True)
    try:
        got = runner.logits(ids)
    finally:
        runner.close()
    want = celerinfer.Engine(model).forward(ids)[0]
    assert max_rel_err(got, want) < limit
    assert (got.argmax(-1) == want.argmax(-1)).mean() >= 0.9
