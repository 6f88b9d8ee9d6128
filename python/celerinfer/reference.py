"""PyTorch reference for the `llama`, `qwen2` and `gpt2` architectures (plain eager torch).

This file is the independent twin of the C++ engine: it is written from the math of the model,
not from the C++ code, and is what the parity tests and `--backend torch` compare against.
torch is an optional dependency of celerinfer; this module imports it and is only imported on
demand (`from celerinfer import reference`).

The model (MiniMind / Llama / Qwen2 style):

    x = embed_tokens[input_ids]                               # (B, S, C)
    for each layer:
        x = x + o_proj(attention(rope(q_proj(n)), rope(k_proj(n)), v_proj(n)))
                                                              # n = input_layernorm(x)
        x = x + down_proj(silu(gate_proj(n)) * up_proj(n))    # n = post_attention_layernorm(x)
    logits = lm_head(norm(x))                                 # (B, S, vocab)

qwen2 is the same with biases on q_proj, k_proj and v_proj. gpt2 (HF GPT-2 / nanoGPT) adds a
learned position embedding to x instead of RoPE, uses LayerNorm with a bias (eps
layer_norm_epsilon) for every norm, biases on every projection, and an ungated MLP
down_proj(gelu(up_proj(n))) with GELU's tanh form ("gelu_new") or exact erf form ("gelu").
The weights come in the engine's layout for all three (celerinfer Model.state_dict(): Llama
names, (out, in) linear weights, separate q/k/v, "model.embed_positions.weight" for wpe).

Attention mask semantics (seed JSON / MiniMind): positions are 0..S-1 for every row, whatever
the padding (they are NOT shifted for left padding). A query at position i attends to the keys
at positions j <= i whose attention_mask is 1. A query with no allowed key gets a zero attention
output (never NaN). Outputs at padded query positions are unspecified.

Generation (greedy) runs every KV-cache version of DESIGN.md section 4 from its flags (VERSIONS,
version_spec): step 0 runs the prompt and takes the logits at its last position, each later step
runs the one new token. With a cache, each layer first WRITES the new tokens' K (after RoPE) and
V to its KVCache (stored as fp32, fp16, INT8 per token, or KIVI: K per channel over blocks of 32
tokens, V per token, the unfinished block exact), then attends over all of it READ back. With
cross-layer sharing, odd layer 2i+1 attends over layer 2i's K/V (`forward(..., sharing=True)` is
the same function without a cache).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# Config fields the reference reads (Hugging Face names), with defaults where the design has one.
_REQUIRED = ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size",
             "max_position_embeddings")
_DEFAULTS = {"architecture": "llama", "num_key_value_heads": None, "intermediate_size": 0,
             "rms_norm_eps": 1e-5, "rope_theta": 1e6, "tie_word_embeddings": False, "hidden_act": "",
             "layer_norm_epsilon": 1e-5}
ARCHITECTURES = ("llama", "qwen2", "gpt2")
_ACTIVATIONS = {"llama": ("silu",), "qwen2": ("silu",), "gpt2": ("gelu_new", "gelu_pytorch_tanh", "gelu")}


def default_intermediate_size(hidden_size: int) -> int:
    """The seed rule for an omitted intermediate_size: 4 * hidden rounded up to a multiple of 64."""
    inter = 4 * hidden_size
    return 64 * ((inter + 63) // 64)


def _read_config(config) -> dict:
    """Reads the fields the model needs from a config object or a dict; checks them."""
    def get(name, default=...):
        if isinstance(config, dict):
            value = config.get(name, default)
        else:
            value = getattr(config, name, default)
        if value is ...:
            raise ValueError(f"config: missing field {name!r}")
        return value

    cfg = {name: get(name) for name in _REQUIRED}
    cfg.update({name: get(name, default) for name, default in _DEFAULTS.items()})
    for name in _REQUIRED + ("num_key_value_heads", "intermediate_size"):
        if cfg[name] is not None:
            cfg[name] = int(cfg[name])
    arch = cfg["architecture"] = str(cfg["architecture"])
    if arch not in ARCHITECTURES:
        raise ValueError(f"config: architecture {arch!r} is not supported ({', '.join(ARCHITECTURES)})")
    if cfg["num_key_value_heads"] is None:
        cfg["num_key_value_heads"] = cfg["num_attention_heads"]
    if not cfg["intermediate_size"]:
        cfg["intermediate_size"] = (4 * cfg["hidden_size"] if arch == "gpt2"
                                    else default_intermediate_size(cfg["hidden_size"]))
    cfg["hidden_act"] = cfg["hidden_act"] or _ACTIVATIONS[arch][0]
    if cfg["hidden_act"] not in _ACTIVATIONS[arch]:
        raise ValueError(f"config: hidden_act {cfg['hidden_act']!r} is not supported for {arch}")
    cfg["layer_norm_epsilon"] = float(cfg["layer_norm_epsilon"])
    cfg["rms_norm_eps"] = float(cfg["rms_norm_eps"])
    cfg["rope_theta"] = float(cfg["rope_theta"])
    cfg["tie_word_embeddings"] = bool(cfg["tie_word_embeddings"])

    for name in _REQUIRED + ("num_key_value_heads", "intermediate_size"):
        if cfg[name] <= 0:
            raise ValueError(f"config: {name} must be positive, got {cfg[name]}")
    if cfg["hidden_size"] % cfg["num_attention_heads"]:
        raise ValueError(f"config: hidden_size {cfg['hidden_size']} is not divisible by "
                         f"num_attention_heads {cfg['num_attention_heads']}")
    if cfg["num_attention_heads"] % cfg["num_key_value_heads"]:
        raise ValueError(f"config: num_attention_heads {cfg['num_attention_heads']} is not "
                         f"divisible by num_key_value_heads {cfg['num_key_value_heads']}")
    if arch != "gpt2" and (cfg["hidden_size"] // cfg["num_attention_heads"]) % 2:
        raise ValueError("config: head_dim must be even for RoPE")
    if not cfg["rms_norm_eps"] > 0 or not cfg["rope_theta"] > 0:
        raise ValueError("config: rms_norm_eps and rope_theta must be positive")
    return cfg


def _to_tensor(value, name: str) -> torch.Tensor:
    """A float32 CPU tensor copy of a numpy array or a tensor (never a view of the caller's data)."""
    if isinstance(value, torch.Tensor):
        return value.detach().to(device="cpu", dtype=torch.float32).clone()
    try:
        array = np.array(value, dtype=np.float32, copy=True)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"tensor {name!r}: cannot be read as float32 ({exc})") from None
    return torch.from_numpy(array)


def _as_index_tensor(value, device) -> torch.Tensor:
    """ids or mask (numpy, list or tensor) -> tensor on `device` (numpy input is copied)."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    return torch.from_numpy(np.array(value)).to(device)


# ------------------------------------------------------------------------------------- ops ---

def rope_tables(head_dim: int, max_positions: int, theta: float):
    """cos, sin tables of shape (max_positions, head_dim), rotate-half layout: cat(freqs, freqs).

    Computed and returned in float64 (the model rounds them once to its dtype).
    """
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    positions = torch.arange(max_positions, dtype=torch.float64)
    freqs = torch.outer(positions, inv_freq)           # (max_pos, head_dim/2)
    emb = torch.cat((freqs, freqs), dim=-1)            # (max_pos, head_dim)
    return emb.cos(), emb.sin()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) over the last dimension split in two halves."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: (B, heads, S, head_dim); cos, sin: (S, head_dim)."""
    return x * cos + rotate_half(x) * sin


def allowed_keys(attention_mask: torch.Tensor, n_queries: int | None = None) -> torch.Tensor:
    """(B, L) key mask of 0/1 -> (B, 1, S, L) bool for the queries at the last S positions.

    S = n_queries (all L positions by default). The query at position i may see key j iff
    j <= i and mask[j]. With a KV cache, the queries are the S newest tokens, the keys all L.
    """
    L = attention_mask.shape[1]
    S = L if n_queries is None else n_queries
    device = attention_mask.device
    query_pos = torch.arange(L - S, L, device=device)[:, None]           # (S, 1)
    key_pos = torch.arange(L, device=device)[None, :]                    # (1, L)
    causal = key_pos <= query_pos                                         # (S, L)
    return causal[None, None, :, :] & attention_mask.bool()[:, None, None, :]


class RMSNorm(nn.Module):
    def __init__(self, weight: torch.Tensor, eps: float):
        super().__init__()
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.eps = eps

    def forward(self, x):
        # computed in float32 (or float64 when the model runs in float64), then cast back
        dtype = torch.promote_types(x.dtype, torch.float32)
        xf = x.to(dtype)
        xf = xf * torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return (xf * self.weight.to(dtype)).to(x.dtype)


class LayerNorm(nn.Module):
    """GPT-2's norm: (x - mean) / sqrt(var + eps) * weight + bias, computed in float32 or wider."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, eps: float):
        super().__init__()
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.bias = nn.Parameter(bias, requires_grad=False)
        self.eps = eps

    def forward(self, x):
        dtype = torch.promote_types(x.dtype, torch.float32)
        y = F.layer_norm(x.to(dtype), (x.shape[-1],), self.weight.to(dtype), self.bias.to(dtype), self.eps)
        return y.to(x.dtype)


def _norm(w: dict, name: str, cfg: dict) -> nn.Module:
    """The architecture's norm from w[name] (and w[name + "_bias"] for gpt2's LayerNorm)."""
    if cfg["architecture"] == "gpt2":
        return LayerNorm(w[name], w[name + "_bias"], cfg["layer_norm_epsilon"])
    return RMSNorm(w[name], cfg["rms_norm_eps"])


def _linear(weight: torch.Tensor, bias: torch.Tensor | None = None) -> nn.Linear:
    """nn.Linear holding `weight` (out, in) and an optional bias; built on 'meta' to skip the
    random init."""
    out_features, in_features = weight.shape
    layer = nn.Linear(in_features, out_features, bias=bias is not None, device="meta")
    layer.weight = nn.Parameter(weight, requires_grad=False)
    if bias is not None:
        layer.bias = nn.Parameter(bias, requires_grad=False)
    return layer


class Attention(nn.Module):
    def __init__(self, cfg: dict, w: dict):
        super().__init__()
        self.n_head = cfg["num_attention_heads"]
        self.n_kv_head = cfg["num_key_value_heads"]
        self.head_dim = cfg["hidden_size"] // self.n_head
        self.use_rope = cfg["architecture"] != "gpt2"
        self.q_proj = _linear(w["q_proj"], w.get("q_proj_bias"))
        self.k_proj = _linear(w["k_proj"], w.get("k_proj_bias"))
        self.v_proj = _linear(w["v_proj"], w.get("v_proj_bias"))
        self.o_proj = _linear(w["o_proj"], w.get("o_proj_bias"))

    def forward(self, x, cos, sin, allowed, cache=None, kv=None):
        """Attention of the S newest tokens x (B, S, C) over all L keys.

        cos, sin: (S, D) at the positions of the new tokens; allowed: (B, 1, S, L).
        kv: None, or the (k, v) of another layer to attend over (cross-layer sharing: this
            layer's k_proj and v_proj are then not used).
        cache: None (the keys are the new tokens, L = S) or a KVCache: the new tokens' K and V
            are written to it first, then attention reads all of it back (L positions).
        Returns (out (B, S, C), (k, v)), where k, v (B, KVH, L, D) are what was attended over.
        """
        B, S, C = x.shape
        D = self.head_dim
        q = self.q_proj(x).view(B, S, self.n_head, D).transpose(1, 2)      # (B, H, S, D)
        if self.use_rope:
            q = apply_rope(q, cos, sin)
        if kv is None:
            k = self.k_proj(x).view(B, S, self.n_kv_head, D).transpose(1, 2)   # (B, KVH, S, D)
            v = self.v_proj(x).view(B, S, self.n_kv_head, D).transpose(1, 2)   # (B, KVH, S, D)
            if self.use_rope:
                k = apply_rope(k, cos, sin)
            if cache is not None:
                cache.write(k, v)
                k, v = cache.read()                                        # (B, KVH, L, D)
            kv = (k, v)
        k, v = kv
        # GQA: query head h reads K/V head h // (H / KVH)
        n_rep = self.n_head // self.n_kv_head
        k = k.repeat_interleave(n_rep, dim=1)                              # (B, H, L, D)
        v = v.repeat_interleave(n_rep, dim=1)                              # (B, H, L, D)

        # scores and softmax in float32 (or wider)
        dtype = torch.promote_types(x.dtype, torch.float32)
        att = (q.to(dtype) @ k.to(dtype).transpose(-2, -1)) / math.sqrt(D)  # (B, H, S, L)
        att = att.masked_fill(~allowed, float("-inf"))
        att = F.softmax(att, dim=-1)
        # a query with no allowed key has a row of NaN here: zero it (and its output)
        att = att.masked_fill(~allowed, 0.0)
        y = att.to(x.dtype) @ v                                            # (B, H, S, D)
        y = y.transpose(1, 2).reshape(B, S, self.n_head * D)               # (B, S, H*D)
        return self.o_proj(y), kv


class MLP(nn.Module):
    """llama / qwen2: down(silu(gate(x)) * up(x)); gpt2: down(gelu(up(x))) with biases."""

    def __init__(self, cfg: dict, w: dict):
        super().__init__()
        self.gated = cfg["architecture"] != "gpt2"
        self.gelu_approximate = "none" if cfg["hidden_act"] == "gelu" else "tanh"
        self.gate_proj = _linear(w["gate_proj"]) if self.gated else None
        self.up_proj = _linear(w["up_proj"], w.get("up_proj_bias"))
        self.down_proj = _linear(w["down_proj"], w.get("down_proj_bias"))

    def forward(self, x):
        if self.gated:
            return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))
        return self.down_proj(F.gelu(self.up_proj(x), approximate=self.gelu_approximate))


class Block(nn.Module):
    def __init__(self, cfg: dict, w: dict):
        super().__init__()
        self.input_layernorm = _norm(w, "input_layernorm", cfg)
        self.self_attn = Attention(cfg, w)
        self.post_attention_layernorm = _norm(w, "post_attention_layernorm", cfg)
        self.mlp = MLP(cfg, w)

    def forward(self, x, cos, sin, allowed, cache=None, kv=None):
        """Returns (x, (k, v)): the block's output and the K/V its attention used."""
        a, kv = self.self_attn(self.input_layernorm(x), cos, sin, allowed, cache=cache, kv=kv)
        x = x + a
        x = x + self.mlp(self.post_attention_layernorm(x))
        return x, kv


# ------------------------------------------------------------------------------- versions ---

# The KV-cache versions (DESIGN.md section 4), as flags. This is the reference's own copy: the
# reference implements each behaviour from the flags, and a test checks that the engine's
# registry (celerinfer.versions()) describes the same versions.
#   kv_dtype: "none" (no cache), "fp32", "fp16", "int8";  kv_quant: "" or the INT8 grouping,
#   "per_token" or "per_channel_kivi";  kivi_block: tokens per K block of "per_channel_kivi".
VERSIONS = {
    "v0": dict(use_cache=False, kv_dtype="none", kv_quant="", cross_layer_sharing=False),
    "v1": dict(use_cache=True, kv_dtype="fp32", kv_quant="", cross_layer_sharing=False),
    "v2": dict(use_cache=True, kv_dtype="int8", kv_quant="per_token", cross_layer_sharing=False),
    "v3": dict(use_cache=True, kv_dtype="fp32", kv_quant="", cross_layer_sharing=True),
    "v4": dict(use_cache=True, kv_dtype="int8", kv_quant="per_token", cross_layer_sharing=True),
    "v5": dict(use_cache=True, kv_dtype="fp16", kv_quant="", cross_layer_sharing=False),
    "v6": dict(use_cache=True, kv_dtype="int8", kv_quant="per_channel_kivi",
               cross_layer_sharing=False),
}
KIVI_BLOCK = 32


def version_spec(version) -> dict:
    """A version name ("v0".."v6") or a dict of flags (like celerinfer.versions() entries) ->
    a checked dict {name, use_cache, kv_dtype, kv_quant, cross_layer_sharing, kivi_block}."""
    if isinstance(version, str):
        if version not in VERSIONS:
            raise ValueError(f"unknown version {version!r} (known: {', '.join(VERSIONS)})")
        spec = dict(VERSIONS[version], name=version)
    elif isinstance(version, dict):
        spec = dict(version)
    else:
        raise TypeError(f"version must be a name or a dict, got {type(version).__name__}")
    for key in ("use_cache", "kv_dtype", "cross_layer_sharing"):
        if key not in spec:
            raise ValueError(f"version {spec.get('name', '?')!r}: missing flag {key!r}")
    spec.setdefault("name", "?")
    spec.setdefault("kv_quant", "")
    spec.setdefault("kivi_block", KIVI_BLOCK)
    spec["use_cache"] = bool(spec["use_cache"])
    spec["cross_layer_sharing"] = bool(spec["cross_layer_sharing"])
    spec["kivi_block"] = int(spec["kivi_block"])
    storage = (spec["kv_dtype"], spec["kv_quant"]) if spec["use_cache"] else ("none", "")
    known = {("none", ""), ("fp32", ""), ("fp16", ""), ("int8", "per_token"),
             ("int8", "per_channel_kivi")}
    if storage not in known or (spec["use_cache"] and spec["kv_dtype"] == "none"):
        raise ValueError(f"version {spec['name']!r}: unsupported cache storage "
                         f"kv_dtype={spec['kv_dtype']!r} kv_quant={spec['kv_quant']!r}")
    if spec["kv_quant"] == "per_channel_kivi" and spec["kivi_block"] <= 0:
        raise ValueError(f"version {spec['name']!r}: kivi_block must be positive")
    return spec


# ------------------------------------------------------------------------------ quantizers ---

def _quantize_int8(x: torch.Tensor, dim: int):
    """Symmetric INT8 with one scale per slice along `dim`: scale = max|x| / 127,
    q = clamp(round_half_even(x / scale), -127, 127); a slice of zeros gets scale 0, q 0.
    Computed in x's dtype (float32 for the engine's contract)."""
    scale = x.abs().amax(dim=dim, keepdim=True) / 127
    nonzero = scale > 0
    q = torch.round(x / torch.where(nonzero, scale, torch.ones_like(scale)))  # half to even
    q = torch.where(nonzero, q.clamp(-127, 127), torch.zeros_like(q))
    return q.to(torch.int8), scale


def quantize_int8_per_token(x: torch.Tensor):
    """x (..., D) -> q int8 (..., D), scale (..., 1): one scale per token (and head) over D."""
    return _quantize_int8(x, dim=-1)


def quantize_int8_per_channel(x: torch.Tensor):
    """x (..., G, D) -> q int8 (..., G, D), scale (..., 1, D): one scale per channel over G tokens."""
    return _quantize_int8(x, dim=-2)


def dequantize_int8(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """q * scale, in the scale's dtype (broadcast: scale (..., 1) per token or (..., 1, D))."""
    return q.to(scale.dtype) * scale


def fp16_round_trip(x: torch.Tensor) -> torch.Tensor:
    """x stored as IEEE half (round to nearest even) and read back in x's dtype."""
    return x.to(torch.float16).to(x.dtype)


# ---------------------------------------------------------------------------------- cache ---

class KVCache:
    """One layer's K/V cache, stored as a version stores it.

    write(k, v) appends the K (after RoPE) and V of new tokens, each (B, KVH, S, D), quantizing
    them as they are stored; read() returns all the positions written so far, dequantized to the
    compute dtype, (B, KVH, L, D) each. Storage by kv_dtype / kv_quant:
      fp32                    the values as computed
      fp16                    IEEE half
      int8 per_token          int8 + one scale per (token, head), for K and V
      int8 per_channel_kivi   K: int8 + one scale per (head, channel) per block of G tokens
                              [jG, (j+1)G); V: int8 per token. A block is quantized when its last
                              token is written; the tokens of the unfinished block stay exact.
    """

    def __init__(self, kv_dtype: str, kv_quant: str = "", kivi_block: int = KIVI_BLOCK):
        self.kv_dtype = kv_dtype
        self.kv_quant = kv_quant if kv_dtype == "int8" else ""
        self.block = kivi_block
        self.length = 0      # positions written
        self.dtype = None    # compute dtype (of the first write)
        self.stored = {}     # name -> tensor, grown along the token dimension (dim 2)

    def _append(self, name, t):
        old = self.stored.get(name)
        self.stored[name] = t if old is None else torch.cat([old, t], dim=2)

    def write(self, k: torch.Tensor, v: torch.Tensor) -> None:
        self.dtype = k.dtype
        self.length += k.shape[2]
        if self.kv_dtype == "fp32":
            self._append("k", k)
            self._append("v", v)
        elif self.kv_dtype == "fp16":
            self._append("k", k.to(torch.float16))
            self._append("v", v.to(torch.float16))
        elif self.kv_quant == "per_token":
            for name, x in (("k", k), ("v", v)):
                q, scale = quantize_int8_per_token(x)          # (B, KVH, S, D), (B, KVH, S, 1)
                self._append(name + "_q", q)
                self._append(name + "_scale", scale)
        elif self.kv_quant == "per_channel_kivi":
            self._append("k_recent", k)
            self._append("v_recent", v)
            G = self.block
            while self.stored["k_recent"].shape[2] >= G:       # a block [jG, (j+1)G) is complete
                k_block, v_block = self.stored["k_recent"][:, :, :G], self.stored["v_recent"][:, :, :G]
                self.stored["k_recent"] = self.stored["k_recent"][:, :, G:]
                self.stored["v_recent"] = self.stored["v_recent"][:, :, G:]
                q, scale = quantize_int8_per_channel(k_block)  # (B, KVH, G, D), (B, KVH, 1, D)
                self._append("k_q", q)
                self._append("k_scale", scale)                 # (B, KVH, n_blocks, D)
                q, scale = quantize_int8_per_token(v_block)    # (B, KVH, G, D), (B, KVH, G, 1)
                self._append("v_q", q)
                self._append("v_scale", scale)
        else:
            raise ValueError(f"KVCache: unsupported storage {self.kv_dtype!r} {self.kv_quant!r}")

    def read(self):
        """(k, v), each (B, KVH, L, D) in the compute dtype: every position written so far."""
        s = self.stored
        if self.kv_dtype in ("fp32", "fp16"):
            return s["k"].to(self.dtype), s["v"].to(self.dtype)
        if self.kv_quant == "per_token":
            return dequantize_int8(s["k_q"], s["k_scale"]), dequantize_int8(s["v_q"], s["v_scale"])
        # per_channel_kivi: the quantized blocks, then the exact recent window
        k, v = s["k_recent"], s["v_recent"]
        if "k_q" in s:
            k_scale = s["k_scale"].repeat_interleave(self.block, dim=2)  # (B, KVH, blocks*G, D)
            k = torch.cat([dequantize_int8(s["k_q"], k_scale), k], dim=2)
            v = torch.cat([dequantize_int8(s["v_q"], s["v_scale"]), v], dim=2)
        return k, v


# ------------------------------------------------------------------------------------ model ---

class ReferenceModel(nn.Module):
    """The model in eager torch, built from Hugging Face (Llama) named weights.

    config: an object (or dict) with architecture ("llama", "qwen2" or "gpt2"), hidden_size,
        num_hidden_layers, num_attention_heads, num_key_value_heads, vocab_size,
        max_position_embeddings, intermediate_size (0: the seed rule; gpt2: 4 * hidden),
        rms_norm_eps, rope_theta, tie_word_embeddings, hidden_act, layer_norm_epsilon.
    state_dict: Hugging Face name -> numpy array or tensor (linear weights are (out, in)).
    rope: None (tables from rope_theta) or (cos, sin), each (max_positions, head_dim).
    dtype: compute dtype of the weights and activations (RMSNorm and softmax run in float32 or
        wider); logits are returned in float32.
    """

    def __init__(self, config, state_dict, rope=None, dtype=torch.float32):
        super().__init__()
        cfg = _read_config(config)
        self.config = cfg
        C = cfg["hidden_size"]
        V = cfg["vocab_size"]
        I = cfg["intermediate_size"]
        H = cfg["num_attention_heads"]
        KVH = cfg["num_key_value_heads"]
        D = C // H

        def weight(name, shape):
            if name not in state_dict:
                raise ValueError(f"missing tensor {name!r}")
            t = _to_tensor(state_dict[name], name)
            if tuple(t.shape) != tuple(shape):
                raise ValueError(f"tensor {name!r} has shape {tuple(t.shape)}, "
                                 f"expected {tuple(shape)}")
            return t.to(dtype)

        self.embed_tokens = nn.Embedding(V, C, device="meta")
        self.embed_tokens.weight = nn.Parameter(weight("model.embed_tokens.weight", (V, C)),
                                                requires_grad=False)
        gpt2 = cfg["architecture"] == "gpt2"
        qkv_bias = cfg["architecture"] in ("qwen2", "gpt2")
        # learned positions (gpt2); added to the token embedding at positions 0..S-1
        self.register_buffer("embed_positions", weight("model.embed_positions.weight",
                                                       (cfg["max_position_embeddings"], C)) if gpt2 else None,
                             persistent=False)
        layers = []
        for i in range(cfg["num_hidden_layers"]):
            p = f"model.layers.{i}."
            shapes = {  # key in w: (name, shape, present)
                "input_layernorm": ("input_layernorm.weight", (C,), True),
                "input_layernorm_bias": ("input_layernorm.bias", (C,), gpt2),
                "post_attention_layernorm": ("post_attention_layernorm.weight", (C,), True),
                "post_attention_layernorm_bias": ("post_attention_layernorm.bias", (C,), gpt2),
                "q_proj": ("self_attn.q_proj.weight", (H * D, C), True),
                "q_proj_bias": ("self_attn.q_proj.bias", (H * D,), qkv_bias),
                "k_proj": ("self_attn.k_proj.weight", (KVH * D, C), True),
                "k_proj_bias": ("self_attn.k_proj.bias", (KVH * D,), qkv_bias),
                "v_proj": ("self_attn.v_proj.weight", (KVH * D, C), True),
                "v_proj_bias": ("self_attn.v_proj.bias", (KVH * D,), qkv_bias),
                "o_proj": ("self_attn.o_proj.weight", (C, H * D), True),
                "o_proj_bias": ("self_attn.o_proj.bias", (C,), gpt2),
                "gate_proj": ("mlp.gate_proj.weight", (I, C), not gpt2),
                "up_proj": ("mlp.up_proj.weight", (I, C), True),
                "up_proj_bias": ("mlp.up_proj.bias", (I,), gpt2),
                "down_proj": ("mlp.down_proj.weight", (C, I), True),
                "down_proj_bias": ("mlp.down_proj.bias", (C,), gpt2),
            }
            w = {key: weight(p + name, shape) for key, (name, shape, present) in shapes.items() if present}
            layers.append(Block(cfg, w))
        self.layers = nn.ModuleList(layers)
        final = {"norm": weight("model.norm.weight", (C,))}
        if gpt2:
            final["norm_bias"] = weight("model.norm.bias", (C,))
        self.norm = _norm(final, "norm", cfg)
        if cfg["tie_word_embeddings"]:
            # tied: the output projection is the embedding matrix (a stored lm_head is ignored)
            self.lm_head = nn.Linear(C, V, bias=False, device="meta")
            self.lm_head.weight = self.embed_tokens.weight
        else:
            self.lm_head = _linear(weight("lm_head.weight", (V, C)))

        if rope is None:
            # gpt2 has no RoPE: the tables are computed all the same (unused), to size the model
            cos, sin = rope_tables(D + D % 2, cfg["max_position_embeddings"], cfg["rope_theta"])
        else:
            if len(rope) != 2:
                raise ValueError("rope must be None or a tuple (cos, sin)")
            cos, sin = _to_tensor(rope[0], "rope.cos"), _to_tensor(rope[1], "rope.sin")
            for name, t in (("rope.cos", cos), ("rope.sin", sin)):
                if t.ndim != 2 or t.shape[1] != D:
                    raise ValueError(f"tensor {name!r} has shape {tuple(t.shape)}, "
                                     f"expected (max_positions, {D})")
            if cos.shape != sin.shape:
                raise ValueError(f"rope tables differ in shape: cos {tuple(cos.shape)}, "
                                 f"sin {tuple(sin.shape)}")
        self.register_buffer("rope_cos", cos.to(dtype), persistent=False)  # (max_pos, D)
        self.register_buffer("rope_sin", sin.to(dtype), persistent=False)  # (max_pos, D)

    @classmethod
    def from_model(cls, model, dtype=torch.float32):
        """Builds the reference from a celerinfer Model (its config, weights and RoPE tables)."""
        return cls(model.config, model.state_dict(), rope=model.rope, dtype=dtype)

    # ---------------------------------------------------------------- full-sequence forward ---

    def _check_inputs(self, input_ids, attention_mask, n_new=0):
        """ids (B, S) long and mask (B, S) bool tensors on the model's device, checked.

        n_new: tokens that will be appended (the positions 0..S+n_new-1 must fit the RoPE table).
        """
        device = self.embed_tokens.weight.device
        input_ids = _as_index_tensor(input_ids, device).long()
        if input_ids.ndim != 2:
            raise ValueError(f"input_ids must be (B, S), got shape {tuple(input_ids.shape)}")
        B, S = input_ids.shape
        if S + n_new > self.rope_cos.shape[0]:
            raise ValueError(f"sequence length {S + n_new} exceeds the RoPE table "
                             f"({self.rope_cos.shape[0]} positions)")
        if input_ids.numel() and (input_ids.min() < 0 or input_ids.max() >= self.config["vocab_size"]):
            raise ValueError(f"token id out of range [0, {self.config['vocab_size']})")
        if attention_mask is None:
            attention_mask = torch.ones(B, S, dtype=torch.bool, device=device)
        attention_mask = _as_index_tensor(attention_mask, device)
        if tuple(attention_mask.shape) != (B, S):
            raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)}, "
                             f"expected {(B, S)}")
        return input_ids, attention_mask.bool()

    def _embed(self, ids, start: int) -> torch.Tensor:
        """Token embeddings of ids (B, S) at positions start..start+S-1 (+ learned positions)."""
        x = self.embed_tokens(ids)
        if self.embed_positions is not None:
            x = x + self.embed_positions[start:start + ids.shape[1]]
        return x

    def forward(self, input_ids, attention_mask=None, sharing=False) -> torch.Tensor:
        """input_ids (B, S) ints, attention_mask (B, S) 0/1 or None -> logits (B, S, vocab) float32.

        sharing=True: cross-layer sharing (versions v3, v4 without their cache): layers come in
        pairs (0, 1), (2, 3), ...; the odd layer attends over the K and V computed by the even
        layer (its own k_proj and v_proj are not used). A last unpaired layer computes its own.
        """
        input_ids, attention_mask = self._check_inputs(input_ids, attention_mask)
        S = input_ids.shape[1]
        allowed = allowed_keys(attention_mask)                 # (B, 1, S, S)
        cos, sin = self.rope_cos[:S], self.rope_sin[:S]        # (S, D): positions 0..S-1
        x = self._embed(input_ids, 0)                          # (B, S, C)
        kv = None
        for i, block in enumerate(self.layers):
            x, kv = block(x, cos, sin, allowed, kv=kv if sharing and i % 2 == 1 else None)
        x = self.norm(x)
        return self.lm_head(x).float()                         # (B, S, V)

    def forward_shared(self, input_ids, attention_mask=None) -> torch.Tensor:
        """The full forward with cross-layer sharing: `forward(..., sharing=True)`."""
        return self.forward(input_ids, attention_mask, sharing=True)

    # ------------------------------------------------------------------- forward with a cache ---

    def new_caches(self, version) -> list:
        """One KVCache per layer for `version`; None for the odd layers that share (and for v0)."""
        spec = version_spec(version)
        if not spec["use_cache"]:
            return [None] * len(self.layers)
        return [None if spec["cross_layer_sharing"] and i % 2 == 1
                else KVCache(spec["kv_dtype"], spec["kv_quant"], spec["kivi_block"])
                for i in range(len(self.layers))]

    def forward_cached(self, new_ids, key_mask, caches) -> torch.Tensor:
        """Runs the S newest tokens through the model with a KV cache; logits (B, S, vocab) float32.

        new_ids: (B, S) long, the tokens at positions L-S..L-1, where L = key_mask.shape[1].
        key_mask: (B, L) bool, the attention mask of all positions (cached ones and the new).
        caches: from new_caches(): they hold positions 0..L-S-1 and receive the new tokens. A
            layer whose cache is None reuses the K/V of the layer before it (cross-layer sharing:
            that layer has just written the new tokens to its cache and read all of it back).
        """
        B, S = new_ids.shape
        L = key_mask.shape[1]
        allowed = allowed_keys(key_mask, n_queries=S)          # (B, 1, S, L)
        cos, sin = self.rope_cos[L - S:L], self.rope_sin[L - S:L]  # (S, D): positions L-S..L-1
        x = self._embed(new_ids, L - S)                        # (B, S, C)
        kv = None
        for block, cache in zip(self.layers, caches):
            if cache is None:
                x, kv = block(x, cos, sin, allowed, kv=kv)     # shares the previous layer's cache
            else:
                x, kv = block(x, cos, sin, allowed, cache=cache)
        x = self.norm(x)
        return self.lm_head(x).float()                         # (B, S, V)

    # ----------------------------------------------------------------------------- generation ---

    @torch.no_grad()
    def _decode(self, input_ids, attention_mask, version, n_steps, eos_token_id=None, forced=None):
        """The generation loop of every version; greedy, or teacher-forced with `forced` (B, n).

        Step 0 runs the whole prompt (prefill) and takes the logits at its last position P-1 for
        every row; step t > 0 runs only the token chosen at step t-1, at position P+t-1. v0 (no
        cache) instead recomputes the whole current sequence each step. Generated tokens are
        always valid (mask 1). Returns tokens (B, P+T) long and logits (B, T, vocab) float32.
        """
        spec = version_spec(version)
        tokens, key_mask = self._check_inputs(input_ids, attention_mask, n_new=max(n_steps - 1, 0))
        B, P = tokens.shape
        if P == 0:
            raise ValueError("generation needs a prompt of at least one token")
        caches = self.new_caches(spec)
        new = tokens                                           # step 0 processes the prompt
        finished = torch.zeros(B, dtype=torch.bool, device=tokens.device)
        step_logits = []
        for t in range(n_steps):
            if spec["use_cache"]:
                out = self.forward_cached(new, key_mask, caches)                 # (B, S, V)
            else:
                out = self.forward(tokens, key_mask, sharing=spec["cross_layer_sharing"])
            logits_t = out[:, -1, :]                                              # (B, V)
            step_logits.append(logits_t)
            if forced is not None:
                next_token = forced[:, t]
            else:
                next_token = logits_t.argmax(dim=-1)           # ties: the lowest id
            if eos_token_id is not None:
                # a row that has emitted EOS keeps emitting it
                next_token = torch.where(finished, torch.full_like(next_token, eos_token_id),
                                         next_token)
                finished |= next_token == eos_token_id
            tokens = torch.cat([tokens, next_token[:, None]], dim=1)
            key_mask = torch.cat([key_mask, torch.ones_like(key_mask[:, :1])], dim=1)
            new = next_token[:, None]
            if eos_token_id is not None and bool(finished.all()):
                break
        V = self.config["vocab_size"]
        logits_out = (torch.stack(step_logits, dim=1) if step_logits
                      else torch.zeros(B, 0, V))
        return tokens, logits_out

    def generate(self, input_ids, max_new_tokens, version="v1", attention_mask=None,
                 eos_token_id=None):
        """Greedy generation through `version`'s cache path (a name or a versions() dict).

        input_ids (B, P), attention_mask (B, P) 0/1 or None (left or right padding; positions
        are never shifted). Returns tokens (B, P+T) long and the raw logits each step picked
        from, (B, T, vocab) float32. T = max_new_tokens, or fewer with eos_token_id: once a row
        has emitted EOS its later tokens are EOS, and generation stops when every row has.
        """
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        return self._decode(input_ids, attention_mask, version, int(max_new_tokens),
                            eos_token_id=eos_token_id)

    def score(self, input_ids, continuation, version="v1", attention_mask=None) -> torch.Tensor:
        """Teacher-forced decoding: the logits (B, T, vocab) from which each of the T tokens of
        `continuation` (B, T) is predicted, through `version`'s cache path, the prompt input_ids
        (B, P) processed as in generate. This is generate's loop with the tokens given."""
        device = self.embed_tokens.weight.device
        continuation = _as_index_tensor(continuation, device).long()
        if continuation.ndim != 2 or continuation.shape[0] != len(input_ids):
            raise ValueError(f"continuation must be (B, T), got shape {tuple(continuation.shape)}")
        _, logits_out = self._decode(input_ids, attention_mask, version, continuation.shape[1],
                                     forced=continuation)
        return logits_out


def _ids_and_mask(input_ids, attention_mask):
    ids = torch.from_numpy(np.array(input_ids, dtype=np.int64))
    mask = None if attention_mask is None else torch.from_numpy(np.array(attention_mask) != 0)
    return ids, mask


def logits(model, input_ids, attention_mask=None, dtype=torch.float32, sharing=False) -> np.ndarray:
    """Reference logits of a celerinfer Model: numpy in, float32 numpy (B, S, vocab) out."""
    ref = ReferenceModel.from_model(model, dtype=dtype)
    ids, mask = _ids_and_mask(input_ids, attention_mask)
    with torch.no_grad():
        return ref(ids, mask, sharing=sharing).numpy().astype(np.float32, copy=False)


def generate(model, version, input_ids, max_new_tokens, attention_mask=None, eos_token_id=None,
             dtype=torch.float32):
    """Reference greedy generation of a celerinfer Model through `version`.

    Returns tokens (B, P+T) int64 and the step logits (B, T, vocab) float32, as numpy.
    """
    ref = ReferenceModel.from_model(model, dtype=dtype)
    ids, mask = _ids_and_mask(input_ids, attention_mask)
    tokens, step_logits = ref.generate(ids, max_new_tokens, version, attention_mask=mask,
                                       eos_token_id=eos_token_id)
    return tokens.numpy(), step_logits.numpy().astype(np.float32, copy=False)


def score(model, version, input_ids, continuation, attention_mask=None, dtype=torch.float32):
    """Reference teacher-forced step logits (B, T, vocab) float32 numpy of a celerinfer Model:
    the logits from which each token of `continuation` (B, T) is predicted through `version`."""
    ref = ReferenceModel.from_model(model, dtype=dtype)
    ids, mask = _ids_and_mask(input_ids, attention_mask)
    cont = torch.from_numpy(np.array(continuation, dtype=np.int64))
    step_logits = ref.score(ids, cont, version, attention_mask=mask)
    return step_logits.numpy().astype(np.float32, copy=False)
