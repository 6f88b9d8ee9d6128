"""GGUF files byte by byte, for the reader's tests: a small valid llama model, and every field
open to a lie. Written from the GGUF specification with struct, independent of celerinfer's
writer and of the gguf package, so that a test can put any count, length, type or offset in.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

# GGUF metadata value types
U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
_SCALAR = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f", BOOL: "<B", U64: "<Q",
           I64: "<q", F64: "<d"}
# GGML tensor types
T_F32, T_F16, T_Q4_0, T_Q4_1, T_Q8_0, T_Q4_K, T_Q6_K, T_BF16 = 0, 1, 2, 3, 8, 12, 14, 30


def gguf_string(s: str | bytes) -> bytes:
    raw = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(raw)) + raw


def gguf_value(vtype: int, value) -> bytes:
    if vtype == STRING:
        return gguf_string(value)
    if vtype == ARRAY:
        etype, items = value
        return struct.pack("<IQ", etype, len(items)) + b"".join(gguf_value(etype, v) for v in items)
    return struct.pack(_SCALAR[vtype], value)


def quantize_q8_0(x: np.ndarray) -> bytes:
    """llama.cpp's Q8_0 blocks of a float32 array whose length is a multiple of 32."""
    blocks = x.astype(np.float32).reshape(-1, 32)
    d = np.abs(blocks).max(axis=1) / 127
    q = np.round(blocks / np.where(d > 0, d, 1)[:, None]).astype(np.int8)
    out = np.zeros(len(blocks), dtype=[("d", "<f2"), ("qs", "i1", 32)])
    out["d"], out["qs"] = d, q
    return out.tobytes()


def quantize_q4_0(x: np.ndarray) -> bytes:
    """llama.cpp's Q4_0 blocks (d = signed max / -8, q = clamp(trunc(x / d + 8.5), 15))."""
    blocks = x.astype(np.float32).reshape(-1, 32)
    idx = np.abs(blocks).argmax(axis=1)
    d = blocks[np.arange(len(blocks)), idx] / -8
    inv = np.where(d != 0, 1 / np.where(d != 0, d, 1), 0).astype(np.float32)
    q = np.minimum(15, (blocks * inv[:, None] + 8.5).astype(np.int8)).astype(np.uint8)
    out = np.zeros(len(blocks), dtype=[("d", "<f2"), ("qs", "u1", 16)])
    out["d"], out["qs"] = d, q[:, :16] | (q[:, 16:] << 4)
    return out.tobytes()


@dataclass
class Tensor:
    name: str
    dims: list[int]  # innermost first, as the file lists them
    ggml_type: int
    data: bytes
    offset: int | None = None  # None: laid out in order, aligned


@dataclass
class GgufFile:
    version: int = 3
    alignment: int = 32
    kvs: list[tuple[str, int, object]] = field(default_factory=list)
    tensors: list[Tensor] = field(default_factory=list)
    tensor_count: int | None = None  # None: len(tensors)
    kv_count: int | None = None

    def set(self, key: str, vtype: int, value) -> None:
        self.kvs = [kv for kv in self.kvs if kv[0] != key] + [(key, vtype, value)]

    def drop(self, key: str) -> None:
        self.kvs = [kv for kv in self.kvs if kv[0] != key]

    def tensor(self, name: str) -> Tensor:
        return next(t for t in self.tensors if t.name == name)

    def to_bytes(self) -> bytes:
        head = b"GGUF" + struct.pack("<I", self.version)
        head += struct.pack("<QQ", len(self.tensors) if self.tensor_count is None else self.tensor_count,
                            len(self.kvs) if self.kv_count is None else self.kv_count)
        for key, vtype, value in self.kvs:
            head += gguf_string(key) + struct.pack("<I", vtype) + gguf_value(vtype, value)
        offsets, pos = [], 0
        for t in self.tensors:
            offsets.append(pos if t.offset is None else t.offset)
            pos = (pos + len(t.data) + 31) // 32 * 32
        for t, off in zip(self.tensors, offsets):
            head += gguf_string(t.name) + struct.pack("<I", len(t.dims))
            head += b"".join(struct.pack("<Q", d) for d in t.dims) + struct.pack("<IQ", t.ggml_type, off)
        align = max(1, self.alignment)
        head += b"\0" * ((-len(head)) % align)
        data = bytearray()
        for t, off in zip(self.tensors, offsets):
            if t.offset is None:
                data += b"\0" * (off - len(data)) + t.data
        return bytes(head + data)

    def write(self, path) -> str:
        with open(path, "wb") as f:
            f.write(self.to_bytes())
        return str(path)


# The small model: every shape follows from these.
HIDDEN, HEADS, KV_HEADS, LAYERS, FFN, VOCAB, CONTEXT = 64, 4, 2, 2, 96, 64, 128


def small_llama(seed: int = 0, quantized: bool = True) -> GgufFile:
    """A valid llama GGUF: f32 norms, Q8_0 embedding and Q4_0 q/k (when `quantized`), f32
    elsewhere, a placeholder gpt2 tokenizer of VOCAB tokens."""
    rng = np.random.default_rng(seed)
    g = GgufFile()
    for key, vtype, value in [
        ("general.architecture", STRING, "llama"), ("llama.block_count", U32, LAYERS),
        ("llama.context_length", U32, CONTEXT), ("llama.embedding_length", U32, HIDDEN),
        ("llama.feed_forward_length", U32, FFN), ("llama.attention.head_count", U32, HEADS),
        ("llama.attention.head_count_kv", U32, KV_HEADS), ("llama.rope.freq_base", F32, 10000.0),
        ("llama.attention.layer_norm_rms_epsilon", F32, 1e-5), ("llama.rope.dimension_count", U32, HIDDEN // HEADS),
        ("tokenizer.ggml.model", STRING, "gpt2"),
        ("tokenizer.ggml.tokens", ARRAY, (STRING, [f"t{i}" for i in range(VOCAB)])),
        ("tokenizer.ggml.token_type", ARRAY, (I32, [1] * VOCAB)),
        ("tokenizer.ggml.merges", ARRAY, (STRING, [])),
    ]:
        g.set(key, vtype, value)

    def add(name: str, shape: tuple[int, ...], ggml_type: int = T_F32, scale: float = 0.1) -> None:
        x = (rng.standard_normal(shape) * scale).astype(np.float32)
        if name.endswith("norm.weight"):
            x = 1 + x
        data = {T_F32: x.tobytes(), T_Q8_0: quantize_q8_0(x.ravel()) if ggml_type == T_Q8_0 else b"",
                T_Q4_0: quantize_q4_0(x.ravel()) if ggml_type == T_Q4_0 else b""}[ggml_type]
        g.tensors.append(Tensor(name, list(reversed(shape)), ggml_type, data))

    D = HIDDEN // HEADS
    add("token_embd.weight", (VOCAB, HIDDEN), T_Q8_0 if quantized else T_F32, 1.0)
    for layer in range(LAYERS):
        p = f"blk.{layer}."
        add(p + "attn_norm.weight", (HIDDEN,))
        add(p + "attn_q.weight", (HEADS * D, HIDDEN), T_Q4_0 if quantized else T_F32)
        add(p + "attn_k.weight", (KV_HEADS * D, HIDDEN), T_Q4_0 if quantized else T_F32)
        add(p + "attn_v.weight", (KV_HEADS * D, HIDDEN))
        add(p + "attn_output.weight", (HIDDEN, HEADS * D))
        add(p + "ffn_norm.weight", (HIDDEN,))
        add(p + "ffn_gate.weight", (FFN, HIDDEN))
        add(p + "ffn_up.weight", (FFN, HIDDEN))
        add(p + "ffn_down.weight", (HIDDEN, FFN))
    add("output_norm.weight", (HIDDEN,))
    return g
