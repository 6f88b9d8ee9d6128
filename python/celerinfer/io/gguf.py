"""Export a celerinfer llama model to GGUF, the file format of llama.cpp.

``export_gguf(model, path, dtype)`` writes the model's weights as f32, f16 or q8_0 (llama.cpp's
8-bit format: blocks of 32 int8 values with one fp16 scale) with the ``llama`` architecture
metadata and a placeholder tokenizer, so llama.cpp (and llama-cpp-python) run exactly the
function celerinfer runs, on token ids. It needs the ``gguf`` package: ``pip install
'celerinfer[compare]'``.

Layout (what llama.cpp's loader expects):

* Tensor names: ``token_embd``, ``blk.N.{attn_norm, attn_q, attn_k, attn_v, attn_output,
  ffn_norm, ffn_gate, ffn_up, ffn_down}``, ``output_norm``, ``output`` (absent when the
  embedding is tied: llama.cpp then reuses ``token_embd``), each with a ``.weight`` suffix.
  Matrices keep the Hugging Face (out, in) layout; GGUF lists dimensions innermost first, so the
  file says (in, out).
* RoPE: celerinfer (like Hugging Face) rotates the two halves of each head, pairing dimension
  i with i + D/2; GGML's ``llama`` RoPE rotates adjacent pairs (2i, 2i + 1). The rows of each
  head of q_proj and k_proj are therefore reordered so that output row 2i is input row i and
  row 2i + 1 is input row i + D/2 (:func:`interleave_rope_rows`). Attention scores are dot
  products over a head's dimensions, so the same reordering of q and k leaves them unchanged.
* Types: 1-D tensors (norm weights) are always f32. With ``q8_0`` a matrix whose rows are not a
  whole number of 32-value blocks is written as f16 (llama.cpp's converter does the same).
* Tokenizer: a ``llama`` (SentencePiece-style) vocabulary of ``vocab_size`` placeholder tokens:
  ``<unk>``, ``<s>``, ``</s>``, the 256 byte tokens ``<0xNN>`` when the vocabulary has room,
  then ``<tok_N>``. Token ids mean nothing in text; they only have to exist.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..model import Model

#: the dtypes export_gguf writes, with llama.cpp's file-type code (general.file_type)
FILE_TYPES = {"f32": 0, "f16": 1, "q8_0": 7}
Q8_0_BLOCK = 32

#: Hugging Face name inside layer N -> GGUF name inside blk.N
LAYER_TENSORS = {
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}

# GGUF token types (llama.cpp's llama_token_type)
_NORMAL, _UNKNOWN, _CONTROL, _BYTE = 1, 2, 3, 6


def _gguf():
    try:
        import gguf
    except ImportError as exc:
        raise ImportError("GGUF export needs the gguf package: pip install 'celerinfer[compare]' "
                          "(or pip install gguf)") from exc
    return gguf


def interleave_rope_rows(weight: np.ndarray, n_heads: int) -> np.ndarray:
    """q_proj / k_proj rows (n_heads * D, in) from the rotate-half RoPE order to GGML's adjacent
    pairs: within each head, new row 2i = old row i and new row 2i + 1 = old row i + D/2."""
    rows = weight.shape[0]
    if rows % n_heads or (rows // n_heads) % 2:
        raise ValueError(f"{rows} rows do not split into {n_heads} heads of an even size")
    half = rows // n_heads // 2
    order = np.arange(rows).reshape(n_heads, 2, half).transpose(0, 2, 1).reshape(-1)
    return weight[order]


def gguf_tensors(model: Model) -> dict[str, np.ndarray]:
    """GGUF name -> float32 array (RoPE rows of q and k already reordered), in file order."""
    c = model.config
    sd = model.state_dict()
    out = {"token_embd.weight": sd["model.embed_tokens.weight"]}
    for i in range(c.num_hidden_layers):
        for hf, name in LAYER_TENSORS.items():
            weight = sd[f"model.layers.{i}.{hf}.weight"]
            if name == "attn_q":
                weight = interleave_rope_rows(weight, c.num_attention_heads)
            elif name == "attn_k":
                weight = interleave_rope_rows(weight, c.num_key_value_heads)
            out[f"blk.{i}.{name}.weight"] = weight
    out["output_norm.weight"] = sd["model.norm.weight"]
    if "lm_head.weight" in sd:
        out["output.weight"] = sd["lm_head.weight"]
    return out


def _encode(gguf, array: np.ndarray, dtype: str):
    """(data, raw_dtype) of one tensor in the requested file dtype."""
    if array.ndim == 1 or dtype == "f32":
        return np.ascontiguousarray(array, dtype=np.float32), None
    if dtype == "q8_0" and array.shape[-1] % Q8_0_BLOCK == 0:
        q8 = gguf.GGMLQuantizationType.Q8_0
        return gguf.quants.quantize(np.ascontiguousarray(array, dtype=np.float32), q8), q8
    return array.astype(np.float16), None


def placeholder_vocab(vocab_size: int) -> list[str]:
    """The placeholder token texts (see the module docstring)."""
    tokens = ["<unk>", "<s>", "</s>"]
    if vocab_size >= len(tokens) + 256:
        tokens += [f"<0x{b:02X}>" for b in range(256)]
    tokens += [f"<tok_{i}>" for i in range(len(tokens), vocab_size)]
    return tokens[:vocab_size]


def _token_type(text: str) -> int:
    if text == "<unk>":
        return _UNKNOWN
    if text in ("<s>", "</s>"):
        return _CONTROL
    return _BYTE if text.startswith("<0x") else _NORMAL


def export_gguf(model: Model, path: str | os.PathLike, dtype: str = "f32", progress: bool = False) -> Path:
    """Write `model` to `path` as a GGUF file of weight type `dtype` ("f32", "f16" or "q8_0");
    returns the path. progress: a tqdm bar while the tensors are converted and written."""
    if not isinstance(model, Model):
        raise TypeError(f"model must be a celerinfer.Model, got {type(model).__name__}")
    if dtype not in FILE_TYPES:
        raise ValueError(f"dtype must be one of {', '.join(FILE_TYPES)}, got {dtype!r}")
    c = model.config
    if c.architecture != "llama":
        raise ValueError(f"GGUF export supports the llama architecture, not {c.architecture!r}")
    if c.vocab_size < 3:
        raise ValueError(f"GGUF export needs vocab_size >= 3 (unk, bos, eos), got {c.vocab_size}")
    gguf = _gguf()
    from tqdm import tqdm

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_name(f"celerinfer random llama ({c.num_parameters / 1e6:.1f}M)")
    writer.add_file_type(FILE_TYPES[dtype])
    writer.add_context_length(c.max_position_embeddings)
    writer.add_embedding_length(c.hidden_size)
    writer.add_block_count(c.num_hidden_layers)
    writer.add_feed_forward_length(c.intermediate_size)
    writer.add_head_count(c.num_attention_heads)
    writer.add_head_count_kv(c.num_key_value_heads)
    writer.add_rope_dimension_count(c.hidden_size // c.num_attention_heads)
    writer.add_rope_freq_base(float(c.rope_theta))
    writer.add_layer_norm_rms_eps(float(c.rms_norm_eps))
    writer.add_vocab_size(c.vocab_size)
    tokens = placeholder_vocab(c.vocab_size)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores([0.0] * len(tokens))
    writer.add_token_types([_token_type(t) for t in tokens])
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    tensors = gguf_tensors(model)
    for name, array in tqdm(tensors.items(), desc=f"GGUF {dtype}", unit="tensor", disable=not progress,
                            leave=False, dynamic_ncols=True):
        data, raw_dtype = _encode(gguf, array, dtype)
        writer.add_tensor(name, data, raw_dtype=raw_dtype)
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file(progress=progress)
    finally:
        writer.close()
    return path


def read_gguf(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """GGUF name -> float32 array in the (out, in) layout, dequantized (f16 and q8_0 included):
    the round trip of :func:`export_gguf` (q and k rows stay in GGML's RoPE order)."""
    gguf = _gguf()
    reader = gguf.GGUFReader(path)
    out = {}
    for t in reader.tensors:
        data = gguf.quants.dequantize(t.data, t.tensor_type)
        out[t.name] = np.asarray(data, dtype=np.float32).reshape(tuple(int(n) for n in reversed(t.shape)))
    return out
