"""The GGUF reader on valid and hostile files: every lie in a header, a tensor table or the
metadata is a clear FormatError naming the field, never a crash, a hang or an allocation the
file cannot back. The files come from tests/gguf_files.py (written byte by byte)."""

import os
import struct

import numpy as np
import pytest

import celerinfer
from celerinfer import _core

import gguf_files as G


def load(tmp_path, g_or_bytes):
    path = tmp_path / "m.gguf"
    path.write_bytes(g_or_bytes if isinstance(g_or_bytes, bytes) else g_or_bytes.to_bytes())
    return _core.load_gguf(str(path))


def test_the_small_file_loads_with_its_types_and_metadata(tmp_path):
    model, metadata = load(tmp_path, G.small_llama())
    c = model.config
    assert (c.architecture, c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads,
            c.intermediate_size, c.vocab_size, c.max_position_embeddings) == (
        "llama", G.HIDDEN, G.LAYERS, G.HEADS, G.KV_HEADS, G.FFN, G.VOCAB, G.CONTEXT)
    assert c.tie_word_embeddings and model.rope_interleaved_rows
    dtypes = model.weight_dtypes
    assert dtypes["model.embed_tokens.weight"] == "q8_0"
    assert dtypes["model.layers.0.self_attn.q_proj.weight"] == "q4_0"
    assert dtypes["model.layers.0.mlp.up_proj.weight"] == "float32"
    assert metadata["tokenizer.ggml.model"] == "gpt2" and len(metadata["tokenizer.ggml.tokens"]) == G.VOCAB
    assert metadata.type_of("llama.block_count") == "uint32"
    assert metadata.type_of("tokenizer.ggml.tokens") == "array[string]"
    info = _core.read_gguf(str(tmp_path / "m.gguf"))
    assert info["version"] == 3 and info["alignment"] == 32 and len(info["tensors"]) == 2 + 9 * G.LAYERS


def test_f32_tensors_are_views_of_the_file_and_values_are_exact(tmp_path):
    g = G.small_llama(quantized=False)
    model, _ = load(tmp_path, g)
    up = model.state_dict()["model.layers.1.mlp.up_proj.weight"]
    expected = np.frombuffer(g.tensor("blk.1.ffn_up.weight").data, np.float32).reshape(G.FFN, G.HIDDEN)
    np.testing.assert_array_equal(up, expected)
    # q_proj comes back in Hugging Face's rotate-half row order: GGML row 2i + j is row j * D/2 + i.
    q = model.state_dict()["model.layers.0.self_attn.q_proj.weight"]
    ggml = np.frombuffer(g.tensor("blk.0.attn_q.weight").data, np.float32).reshape(G.HIDDEN, G.HIDDEN)
    D = G.HIDDEN // G.HEADS
    order = np.arange(G.HIDDEN).reshape(G.HEADS, D // 2, 2).transpose(0, 2, 1).reshape(-1)
    np.testing.assert_array_equal(q, ggml[order])


def _set_count(field: str, value: int):
    def mutate(g):
        setattr(g, field, value)
    return mutate


def _kv(key, vtype, value):
    def mutate(g):
        g.set(key, vtype, value)
    return mutate


def _drop(key):
    def mutate(g):
        g.drop(key)
    return mutate


def _tensor(name, **changes):
    def mutate(g):
        t = g.tensor(name)
        for k, v in changes.items():
            setattr(t, k, v)
    return mutate


def _raw(build):  # mutate the bytes instead of the structure
    return build


def _nan_in(name, index=3, value=np.nan):
    def mutate(g):
        t = g.tensor(name)
        x = np.frombuffer(t.data, np.float32).copy()
        x[index] = value
        t.data = x.tobytes()
    return mutate


def _bad_q8_scale(g):
    t = g.tensor("token_embd.weight")
    raw = bytearray(t.data)
    raw[34 * 5: 34 * 5 + 2] = struct.pack("<e", np.inf)  # block 5's fp16 scale
    t.data = bytes(raw)


def _duplicate_tensor(g):
    g.tensors.append(G.Tensor("blk.0.attn_norm.weight", [G.HIDDEN], G.T_F32, bytes(4 * G.HIDDEN)))


def _extra_tensor(g):
    g.tensors.append(G.Tensor("rope_freqs.weight", [G.HIDDEN // G.HEADS // 2], G.T_F32, bytes(32)))


def _overlap(g):
    first = g.tensors[1]  # blk.0.attn_norm.weight, at some offset after the embedding
    g.tensor("blk.0.ffn_norm.weight").offset = 0
    first.offset = None


def _missing_tensor(g):
    g.tensors = [t for t in g.tensors if t.name != "blk.1.ffn_down.weight"]


def _quantized_norm(g):
    t = g.tensor("output_norm.weight")
    t.ggml_type, t.data = G.T_Q8_0, G.quantize_q8_0(np.ones(G.HIDDEN, np.float32))


def _nested_array(g):
    g.kvs.append(("x.nested", G.ARRAY, (G.ARRAY, [])))


HOSTILE = [
    # header
    ("bad magic", lambda g: None, lambda b: b"GGUX" + b[4:], "bad magic"),
    ("version 1", lambda g: setattr(g, "version", 1), None, "version 1 is not supported"),
    ("version 99", lambda g: setattr(g, "version", 99), None, "version 99"),
    ("tensor count near 2^63", _set_count("tensor_count", 2**63 - 5), None, "tensor count .* more than"),
    ("metadata count near 2^64", _set_count("kv_count", 2**64 - 1), None, "metadata count .* more than"),
    ("metadata count past the keys", _set_count("kv_count", 40), None, "metadata key 15"),
    ("empty file", lambda g: None, lambda b: b"", "runs past the end"),
    ("truncated in the metadata", lambda g: None, lambda b: b[:300], "bytes left in the file|runs past the end"),
    ("truncated in the tensor table", lambda g: None, lambda b: b[: b.index(b"blk.1.ffn_up") + 5], "runs past the end"),
    ("truncated data", lambda g: None, lambda b: b[:-100], "run past the end of the data section"),
    # metadata values
    ("key length 2^62", lambda g: None,
     lambda b: b[:24] + struct.pack("<Q", 2**62) + b[32:], "exceeds the limit|runs past the end"),
    ("string length past the end", _kv("general.name", G.STRING, "x"),
     lambda b: b.replace(G.gguf_string("general.name") + struct.pack("<I", G.STRING) + G.gguf_string("x"),
                         G.gguf_string("general.name") + struct.pack("<I", G.STRING) + struct.pack("<Q", 10**9) + b"x"),
     "general.name.* runs past the end"),
    ("unknown value type", lambda g: None,
     lambda b: b.replace(G.gguf_string("llama.block_count") + struct.pack("<I", G.U32),
                         G.gguf_string("llama.block_count") + struct.pack("<I", 99)), "unknown value type 99"),
    ("array count 2^60", _kv("x.array", G.ARRAY, (G.U32, [1, 2])),
     lambda b: b.replace(struct.pack("<IQ", G.U32, 2) + struct.pack("<II", 1, 2),
                         struct.pack("<IQ", G.U32, 2**60) + struct.pack("<II", 1, 2)), "array length .* more than"),
    ("string array count 2^40", _kv("x.strings", G.ARRAY, (G.STRING, ["a"])),
     lambda b: b.replace(struct.pack("<IQ", G.STRING, 1) + G.gguf_string("a"),
                         struct.pack("<IQ", G.STRING, 2**40) + G.gguf_string("a")), "array length .* more than"),
    ("nested array", _nested_array, None, "arrays of arrays"),
    ("duplicate key", lambda g: g.kvs.append(("llama.block_count", G.U32, 2)), None, "appears twice"),
    ("bool 7", _kv("x.flag", G.BOOL, 7), None, "bool must be 0 or 1"),
    ("uint64 past int64", _kv("x.big", G.U64, 2**64 - 1), None, "too large"),
    ("alignment 3", _kv("general.alignment", G.U32, 3), None, "power of two"),
    ("alignment 0", _kv("general.alignment", G.U32, 0), None, "power of two"),
    # the tensor table
    ("0 dimensions", _tensor("blk.0.attn_norm.weight", dims=[]), None, "0 dimensions"),
    ("5 dimensions", _tensor("blk.0.attn_norm.weight", dims=[4, 4, 2, 2, 1]), None, "5 dimensions"),
    ("dimension 0", _tensor("blk.0.attn_norm.weight", dims=[0]), None, "dimension 0 is 0"),
    ("dimension 2^40", _tensor("blk.0.attn_norm.weight", dims=[2**40]), None, "dimension 0 is"),
    ("dimensions overflow", _tensor("blk.0.attn_norm.weight", dims=[2**31 - 1] * 4), None, "too large"),
    ("unknown tensor type", _tensor("blk.0.attn_norm.weight", ggml_type=99), None, "unknown tensor type 99"),
    ("unsupported tensor type", _tensor("blk.0.attn_norm.weight", ggml_type=6), None, "Q5_0 is not supported"),
    ("rows not whole blocks", _tensor("blk.0.attn_q.weight", dims=[48, 64]), None, "multiple of 32"),
    ("unaligned offset", _tensor("blk.0.ffn_up.weight", offset=12), None, "not a multiple of the alignment"),
    ("offset past the end", _tensor("blk.0.ffn_up.weight", offset=2**62), None, "run past the end of the data"),
    ("overlapping tensors", _overlap, None, "overlap"),
    ("duplicate tensor", _duplicate_tensor, None, "appears twice"),
    # the model the metadata describes
    ("no architecture", _drop("general.architecture"), None, "general.architecture' is missing"),
    ("unknown architecture", _kv("general.architecture", G.STRING, "mamba"), None, "architecture 'mamba'"),
    ("no block count", _drop("llama.block_count"), None, "llama.block_count' is missing"),
    ("block count is a string", _kv("llama.block_count", G.STRING, "2"), None, "must be an integer, got string"),
    ("negative heads", _kv("llama.attention.head_count", G.I32, -4), None, "head_count' is -4"),
    ("heads do not divide", _kv("llama.attention.head_count", G.U32, 5), None, "impossible model"),
    ("ffn size lies", _kv("llama.feed_forward_length", G.U32, 100), None, "ffn_gate.weight' has shape"),
    ("vocab size lies", _kv("llama.vocab_size", G.U32, 65), None, "vocab_size' is 65"),
    ("token list lies", _kv("tokenizer.ggml.tokens", G.ARRAY, (G.STRING, ["a"] * 3)), None, "holds 3 tokens"),
    ("rope dims lie", _kv("llama.rope.dimension_count", G.U32, 8), None, "partial or uneven"),
    ("rope scaling", _kv("llama.rope.scaling.type", G.STRING, "linear"), None, "RoPE scaling"),
    ("experts", _kv("llama.expert_count", G.U32, 8), None, "mixture-of-experts"),
    ("rope theta NaN", _kv("llama.rope.freq_base", G.F32, float("nan")), None, "positive finite"),
    ("missing tensor", _missing_tensor, None, "ffn_down.weight' is missing"),
    ("unexpected tensor", _extra_tensor, None, "unexpected tensor 'rope_freqs.weight'"),
    ("quantized norm", _quantized_norm, None, "only matrices and the token embedding"),
    # values
    ("NaN weight", _nan_in("blk.1.ffn_up.weight"), None, "ffn_up.weight' holds NaN"),
    ("Inf norm", _nan_in("output_norm.weight", 0, np.inf), None, "output_norm.weight' holds Inf"),
    ("Inf block scale", _bad_q8_scale, None, "block 5 has a NaN or Inf scale"),
]


@pytest.mark.parametrize("name, mutate, raw, message", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_files_are_refused_naming_the_field(tmp_path, name, mutate, raw, message):
    g = G.small_llama()
    mutate(g)
    data = g.to_bytes()
    if raw is not None:
        data = raw(data)
        assert data != g.to_bytes() or name in ("bad magic",), "the byte mutation did not apply"
    with pytest.raises(celerinfer.FormatError, match=message):
        load(tmp_path, data)


def test_at_least_25_hostile_files():
    assert len(HOSTILE) >= 25


def test_not_a_regular_file(tmp_path):
    with pytest.raises(OSError, match="directory"):
        _core.load_gguf(str(tmp_path))
    fifo = tmp_path / "pipe.gguf"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="not a regular file"):  # refused at once: no writer is waited for
        _core.load_gguf(str(fifo))
    with pytest.raises(OSError, match="cannot open"):
        _core.load_gguf(str(tmp_path / "missing.gguf"))
