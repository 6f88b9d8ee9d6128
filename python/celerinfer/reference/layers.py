"""The reference's layers in plain eager PyTorch, written from the model's math (not from the
C++ code): the config it reads, RoPE, RMSNorm / LayerNorm, attention (GQA, the mask rules of
:mod:`celerinfer.reference`), the MLPs and the transformer block."""


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


def read_config(config) -> dict:
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


def float_tensor(value, name: str) -> torch.Tensor:
    """A float32 CPU tensor copy of a numpy array or a tensor (never a view of the caller's data)."""
    if isinstance(value, torch.Tensor):
        return value.detach().to(device="cpu", dtype=torch.float32).clone()
    try:
        array = np.array(value, dtype=np.float32, copy=True)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"tensor {name!r}: cannot be read as float32 ({exc})") from None
    return torch.from_numpy(array)


def index_tensor(value, device) -> torch.Tensor:
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


def norm_layer(w: dict, name: str, cfg: dict) -> nn.Module:
    """The architecture's norm from w[name] (and w[name + "_bias"] for gpt2's LayerNorm)."""
    if cfg["architecture"] == "gpt2":
        return LayerNorm(w[name], w[name + "_bias"], cfg["layer_norm_epsilon"])
    return RMSNorm(w[name], cfg["rms_norm_eps"])


def linear_layer(weight: torch.Tensor, bias: torch.Tensor | None = None) -> nn.Linear:
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
        self.q_proj = linear_layer(w["q_proj"], w.get("q_proj_bias"))
        self.k_proj = linear_layer(w["k_proj"], w.get("k_proj_bias"))
        self.v_proj = linear_layer(w["v_proj"], w.get("v_proj_bias"))
        self.o_proj = linear_layer(w["o_proj"], w.get("o_proj_bias"))

    def forward(self, x, cos, sin, allowed, cache=None, kv=None, positions=None, key_valid=None):
        """Attention of the S newest tokens x (B, S, C) over all L keys.

        cos, sin: (S, D) at the positions of the new tokens; allowed: (B, 1, S, L).
        kv: None, or the (k, v, allowed) of another layer to attend over (cross-layer sharing:
            this layer's k_proj and v_proj are then not used).
        cache: None (the keys are the new tokens, L = S) or a cache (kv_cache.py): the new
            tokens' K and V are written to it first (at `positions` (S,), padding flags
            `key_valid` (B, S)), then attention reads back what it keeps, with the mask of which
            key each query sees (allowed is then the cache's).
        Returns (out (B, S, C), (k, v, allowed)): what was attended over, for a layer that shares it.
        """
        B, S, C = x.shape
        D = self.head_dim
        q = self.q_proj(x).view(B, S, self.n_head, D).transpose(1, 2)      # (B, H, S, D)
        if self.use_rope:
            q = apply_rope(q, cos, sin)
        n_rep = self.n_head // self.n_kv_head
        if kv is None:
            k = self.k_proj(x).view(B, S, self.n_kv_head, D).transpose(1, 2)   # (B, KVH, S, D)
            v = self.v_proj(x).view(B, S, self.n_kv_head, D).transpose(1, 2)   # (B, KVH, S, D)
            if self.use_rope:
                k = apply_rope(k, cos, sin)
            if cache is not None:
                cache.write(k, v, positions, key_valid)
                k, v, kv_allowed = cache.read(positions)                   # (B, KVH, L, D), (B, KVH, S, L)
                allowed = kv_allowed.repeat_interleave(n_rep, dim=1)       # (B, H, S, L)
            kv = (k, v, allowed)
        k, v, allowed = kv
        # GQA: query head h reads K/V head h // (H / KVH)
        k = k.repeat_interleave(n_rep, dim=1)                              # (B, H, L, D)
        v = v.repeat_interleave(n_rep, dim=1)                              # (B, H, L, D)

        # scores and softmax in float32 (or wider)
        dtype = torch.promote_types(x.dtype, torch.float32)
        att = (q.to(dtype) @ k.to(dtype).transpose(-2, -1)) / math.sqrt(D)  # (B, H, S, L)
        att = att.masked_fill(~allowed, float("-inf"))
        att = F.softmax(att, dim=-1)
        # a query with no allowed key has a row of NaN here: zero it (and its output)
        att = att.masked_fill(~allowed, 0.0)
        if cache is not None:
            cache.observe(att)                                             # H2O: attention received
        y = att.to(x.dtype) @ v                                            # (B, H, S, D)
        y = y.transpose(1, 2).reshape(B, S, self.n_head * D)               # (B, S, H*D)
        return self.o_proj(y), kv


class MLP(nn.Module):
    """llama / qwen2: down(silu(gate(x)) * up(x)); gpt2: down(gelu(up(x))) with biases."""

    def __init__(self, cfg: dict, w: dict):
        super().__init__()
        self.gated = cfg["architecture"] != "gpt2"
        self.gelu_approximate = "none" if cfg["hidden_act"] == "gelu" else "tanh"
        self.gate_proj = linear_layer(w["gate_proj"]) if self.gated else None
        self.up_proj = linear_layer(w["up_proj"], w.get("up_proj_bias"))
        self.down_proj = linear_layer(w["down_proj"], w.get("down_proj_bias"))

    def forward(self, x):
        if self.gated:
            return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))
        return self.down_proj(F.gelu(self.up_proj(x), approximate=self.gelu_approximate))


class Block(nn.Module):
    def __init__(self, cfg: dict, w: dict):
        super().__init__()
        self.input_layernorm = norm_layer(w, "input_layernorm", cfg)
        self.self_attn = Attention(cfg, w)
        self.post_attention_layernorm = norm_layer(w, "post_attention_layernorm", cfg)
        self.mlp = MLP(cfg, w)

    def forward(self, x, cos, sin, allowed, cache=None, kv=None, positions=None, key_valid=None):
        """Returns (x, (k, v, allowed)): the block's output and what its attention used."""
        a, kv = self.self_attn(self.input_layernorm(x), cos, sin, allowed, cache=cache, kv=kv, positions=positions,
                               key_valid=key_valid)
        x = x + a
        x = x + self.mlp(self.post_attention_layernorm(x))
        return x, kv
