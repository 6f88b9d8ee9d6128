"""GGUF, llama.cpp's model file, from Python: exporting a model (through the C++ writer,
``_core.save_gguf``), and reading one back with the ``gguf`` package for independent checks.

``export_gguf(model, path, dtype)`` writes the model's matrices as stored ("stored": a GGUF
model's own types), or as f32, f16, q8_0, q4_0 or q4_1 (llama.cpp's block formats, quantized
with llama.cpp's own rounding), with the architecture's metadata, so llama.cpp (and
llama-cpp-python) run exactly the function celerinfer runs. A model loaded from GGUF keeps its
file's metadata (tokenizer, chat template); any other model gets a placeholder tokenizer.

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
* Types: 1-D tensors (norm weights) are always f32. A matrix whose rows are not a whole number
  of 32-value blocks is written as f16 in the block formats (llama.cpp's converter does the same).
* Tokenizer (models without one): a ``llama`` (SentencePiece-style) vocabulary of
  ``vocab_size`` placeholder tokens: ``<unk>``, ``<s>``, ``</s>``, the 256 byte tokens
  ``<0xNN>`` when the vocabulary has room, then ``<tok_N>``. Token ids mean nothing in text;
  they only have to exist.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .. import _core

#: the matrix types export_gguf writes ("stored" also: each matrix as the model holds it), with
#: llama.cpp's file-type code (general.file_type)
FILE_TYPES = {"f32": 0, "f16": 1, "q8_0": 7, "q4_0": 2, "q4_1": 3}

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
        raise ImportError("reading GGUF with the gguf package needs it: pip install gguf") from exc
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


def gguf_tensors(model) -> dict[str, np.ndarray]:
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


def placeholder_tokenizer(vocab_size: int) -> dict:
    """The metadata of the placeholder tokenizer (see the module docstring)."""
    tokens = placeholder_vocab(vocab_size)
    return {"tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": tokens,
            "tokenizer.ggml.scores": [0.0] * len(tokens), "tokenizer.ggml.token_type": [_token_type(t) for t in tokens],
            "tokenizer.ggml.unknown_token_id": 0, "tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2}


def export_gguf(model, path: str | os.PathLike, dtype: str = "f32", progress: bool = False) -> Path:
    """Write `model` to `path` as a GGUF file with matrices in `dtype` ("stored", "f32", "f16",
    "q8_0", "q4_0" or "q4_1"); returns the path. The C++ writer converts and writes each tensor
    in turn, atomically (`progress` is accepted for callers that show one; the write is one call)."""
    del progress
    if not hasattr(model, "_impl") or not hasattr(model, "gguf_metadata"):  # (io/ does not import the Model)
        raise TypeError(f"model must be a celerinfer.Model, got {type(model).__name__}")
    if dtype not in FILE_TYPES and dtype != "stored":
        raise ValueError(f"dtype must be one of {', '.join(FILE_TYPES)} or stored, got {dtype!r}")
    c = model.config
    if c.architecture not in ("llama", "qwen2"):
        raise ValueError(f"GGUF export supports the llama and qwen2 architectures, not {c.architecture!r}")
    metadata = model.gguf_metadata
    extra = {"general.name": f"celerinfer {c.architecture} ({c.num_parameters / 1e6:.1f}M)"}
    if metadata is None or "tokenizer.ggml.model" not in metadata:
        if c.vocab_size < 3:
            raise ValueError(f"GGUF export needs vocab_size >= 3 (unk, bos, eos), got {c.vocab_size}")
        extra.update(placeholder_tokenizer(c.vocab_size))
    elif "general.name" in metadata:
        del extra["general.name"]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _core.save_gguf(model._impl, str(path), dtype, metadata, extra)
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
