"""A PyTorch eager baseline for the llama model: what a careful user gets from plain PyTorch.

fp32 weights shared with the celerinfer Model (no copy), or with ``dtype="bf16"`` the model cast
to bfloat16 as a user would (``model.to(torch.bfloat16)``: weights, activations and cache; on
CPUs with AMX, PyTorch's oneDNN matmuls run on the tiles), a KV cache preallocated once per
engine as (B, kv_heads, max_seq_len, head_dim) tensors per layer and written in place,
``torch.inference_mode()``, ``F.scaled_dot_product_attention`` and ``F.rms_norm``. GQA reads
the cache as it is: the query heads of one KV head are stacked along the query axis
((B, kv_heads, group * S, D)), so no step repeats or copies the cache. Generation computes the
lm_head on the last position only, like the celerinfer engine.

It exists to be compared against (``celerinfer bench compare``); parity with the reference is
tested, so the speed it shows is the speed of a correct model.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np

try:
    import torch
    import torch.nn.functional as F
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("celerinfer.reference.torch_engine needs PyTorch: pip install 'celerinfer[torch]'") from exc

from ..model import Model, as_token_array
from .layers import apply_rope, rope_tables


@dataclass
class TorchGeneration:
    """tokens (B, P + T) int64; prefill_ns: the prompt's forward pass plus the first token's
    argmax; decode_ns: one entry per later token (its forward pass and argmax)."""

    tokens: np.ndarray
    prefill_ns: int
    decode_ns: list[int]


def _shared_tensor(array: np.ndarray) -> torch.Tensor:
    """A tensor over the model's read-only float32 weight, without copying it (nothing writes it)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(array)


#: the dtypes the baseline runs in
DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16}


class TorchEngine:
    """TorchEngine(model, max_seq_len=None, batch_size=1, threads=None, dtype="f32"): the model in
    eager PyTorch with a preallocated KV cache, all in ``dtype`` (f32: the model's own weights,
    no copy; bf16: a bfloat16 copy). threads: torch.set_num_threads (None: keep the current
    setting)."""

    def __init__(self, model: Model, max_seq_len: int | None = None, batch_size: int = 1,
                 threads: int | None = None, dtype: str = "f32"):
        if not isinstance(model, Model):
            raise TypeError(f"model must be a celerinfer.Model, got {type(model).__name__}")
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        self.dtype = dtype
        torch_dtype = DTYPES[dtype]
        if threads is not None:
            if int(threads) < 1:
                raise ValueError(f"threads must be >= 1, got {threads}")
            torch.set_num_threads(int(threads))
        c = model.config
        if c.architecture != "llama":
            raise ValueError(f"the PyTorch baseline runs the llama architecture, not {c.architecture!r}")
        self.model = model  # keeps the shared weights alive
        self.max_seq_len = int(max_seq_len or c.max_position_embeddings)
        if not 1 <= self.max_seq_len <= c.max_position_embeddings:
            raise ValueError(f"max_seq_len must be in [1, {c.max_position_embeddings}], got {max_seq_len}")
        self.batch_size = int(batch_size)
        self.heads, self.kv_heads = c.num_attention_heads, c.num_key_value_heads
        self.head_dim = c.hidden_size // c.num_attention_heads
        self.eps = float(c.rms_norm_eps)
        w = {name: _shared_tensor(a).to(torch_dtype) for name, a in model.state_dict().items()}
        self.embed = w["model.embed_tokens.weight"]
        self.norm = w["model.norm.weight"]
        self.lm_head = w.get("lm_head.weight", self.embed)
        names = ("input_layernorm", "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                 "post_attention_layernorm", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
        self.layers = [[w[f"model.layers.{i}.{n}.weight"] for n in names] for i in range(c.num_hidden_layers)]
        if model.rope is not None:
            cos, sin = (torch.from_numpy(np.array(t[: self.max_seq_len], dtype=np.float32)) for t in model.rope)
        else:
            cos, sin = (t[: self.max_seq_len].float() for t in rope_tables(self.head_dim, self.max_seq_len,
                                                                         float(c.rope_theta)))
        self.cos, self.sin = cos.to(torch_dtype), sin.to(torch_dtype)  # (max_seq_len, D)
        shape = (self.batch_size, self.kv_heads, self.max_seq_len, self.head_dim)
        self.k_cache = [torch.zeros(shape, dtype=torch_dtype) for _ in self.layers]
        self.v_cache = [torch.zeros(shape, dtype=torch_dtype) for _ in self.layers]
        self.length = 0  # positions held by the cache

    @property
    def kv_cache_bytes(self) -> int:
        """Allocated cache bytes (K and V of every layer)."""
        return sum(t.numel() * t.element_size() for t in self.k_cache + self.v_cache)

    def reset(self) -> None:
        """Forget the cached positions (the memory is kept and overwritten)."""
        self.length = 0

    def _attention(self, q, k, v, layer: int):
        """q (B, H, S, D), k/v (B, KVH, S, D) of positions length..length+S-1 -> (B, S, H*D)."""
        B, H, S, D = q.shape
        p0, end = self.length, self.length + S
        self.k_cache[layer][:, :, p0:end] = k
        self.v_cache[layer][:, :, p0:end] = v
        keys, values = self.k_cache[layer][:, :, :end], self.v_cache[layer][:, :, :end]  # (B, KVH, end, D)
        group = H // self.kv_heads
        q = q.reshape(B, self.kv_heads, group * S, D)  # query head h uses KV head h // group
        mask = None
        if S > 1:  # row (g, s) sees keys at positions <= p0 + s
            pos = (p0 + torch.arange(S)).repeat(group)
            mask = torch.arange(end)[None, :] <= pos[:, None]
        out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)  # (B, KVH, group*S, D)
        return out.reshape(B, H, S, D).transpose(1, 2).reshape(B, S, H * D)

    def _step(self, ids: torch.Tensor, all_logits: bool) -> torch.Tensor:
        """Runs S new tokens per row through the model at positions length..length+S-1."""
        B, S = ids.shape
        if self.length + S > self.max_seq_len:
            raise ValueError(f"{self.length} cached + {S} new positions exceed max_seq_len {self.max_seq_len}")
        H, KVH, D = self.heads, self.kv_heads, self.head_dim
        cos, sin = self.cos[self.length:self.length + S], self.sin[self.length:self.length + S]
        x = F.embedding(ids, self.embed)  # (B, S, C)
        C = x.shape[-1]
        for i, (attn_norm, wq, wk, wv, wo, mlp_norm, wg, wu, wd) in enumerate(self.layers):
            n = F.rms_norm(x, (C,), attn_norm, self.eps)
            q = apply_rope(F.linear(n, wq).view(B, S, H, D).transpose(1, 2), cos, sin)
            k = apply_rope(F.linear(n, wk).view(B, S, KVH, D).transpose(1, 2), cos, sin)
            v = F.linear(n, wv).view(B, S, KVH, D).transpose(1, 2)
            x = x + F.linear(self._attention(q, k, v, i), wo)
            n = F.rms_norm(x, (C,), mlp_norm, self.eps)
            x = x + F.linear(F.silu(F.linear(n, wg)) * F.linear(n, wu), wd)
        self.length += S
        if not all_logits:
            x = x[:, -1:]
        return F.linear(F.rms_norm(x, (C,), self.norm, self.eps), self.lm_head)  # (B, S or 1, vocab)

    def _ids(self, input_ids) -> torch.Tensor:
        ids = torch.from_numpy(as_token_array(input_ids, "input_ids").astype(np.int64))
        if ids.shape[0] != self.batch_size:
            raise ValueError(f"this engine was sized for batch {self.batch_size}, got {ids.shape[0]} rows")
        return ids

    def forward(self, input_ids) -> np.ndarray:
        """Logits (B, S, vocab) float32 of every position of a fresh sequence (one prefill)."""
        self.reset()
        with torch.inference_mode():
            return self._step(self._ids(input_ids), all_logits=True).float().numpy().copy()

    def generate(self, input_ids, max_new_tokens: int) -> TorchGeneration:
        """Greedy generation (argmax, ties to the lowest id) of max_new_tokens tokens after the
        prompt (B, P), timed per step."""
        ids = self._ids(input_ids)
        if int(max_new_tokens) < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        self.reset()
        out, decode_ns = [], []
        with torch.inference_mode():
            t0 = time.perf_counter_ns()
            token = self._step(ids, all_logits=False)[:, -1].argmax(-1, keepdim=True)  # (B, 1)
            prefill_ns = time.perf_counter_ns() - t0
            out.append(token)
            for _ in range(int(max_new_tokens) - 1):
                t0 = time.perf_counter_ns()
                token = self._step(token, all_logits=False)[:, -1].argmax(-1, keepdim=True)
                decode_ns.append(time.perf_counter_ns() - t0)
                out.append(token)
        tokens = torch.cat([ids, *out], dim=1).numpy()
        return TorchGeneration(tokens=tokens, prefill_ns=prefill_ns, decode_ns=decode_ns)

    def __repr__(self) -> str:
        return (f"TorchEngine(max_seq_len={self.max_seq_len}, batch_size={self.batch_size}, "
                f"threads={torch.get_num_threads()}, dtype={self.dtype!r})")
