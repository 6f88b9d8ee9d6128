"""PyTorch reference for the `llama` model family (plain eager torch).

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

Attention mask semantics (seed JSON / MiniMind): positions are 0..S-1 for every row, whatever
the padding (they are NOT shifted for left padding). A query at position i attends to the keys
at positions j <= i whose attention_mask is 1. A query with no allowed key gets a zero attention
output (never NaN). Outputs at padded query positions are unspecified.
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
_DEFAULTS = {"num_key_value_heads": None, "intermediate_size": 0, "rms_norm_eps": 1e-5,
             "rope_theta": 1e6, "tie_word_embeddings": False}


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
    if cfg["num_key_value_heads"] is None:
        cfg["num_key_value_heads"] = cfg["num_attention_heads"]
    if not cfg["intermediate_size"]:
        cfg["intermediate_size"] = default_intermediate_size(cfg["hidden_size"])
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
    if (cfg["hidden_size"] // cfg["num_attention_heads"]) % 2:
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


def allowed_keys(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, S) mask of 0/1 -> (B, 1, S, S) bool: query i may see key j iff j <= i and mask[j]."""
    S = attention_mask.shape[1]
    causal = torch.ones(S, S, dtype=torch.bool, device=attention_mask.device).tril()  # (S, S)
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


def _linear(weight: torch.Tensor) -> nn.Linear:
    """nn.Linear without bias holding `weight` (out, in); built on 'meta' to skip the random init."""
    out_features, in_features = weight.shape
    layer = nn.Linear(in_features, out_features, bias=False, device="meta")
    layer.weight = nn.Parameter(weight, requires_grad=False)
    return layer


class Attention(nn.Module):
    def __init__(self, cfg: dict, w: dict):
        super().__init__()
        self.n_head = cfg["num_attention_heads"]
        self.n_kv_head = cfg["num_key_value_heads"]
        self.head_dim = cfg["hidden_size"] // self.n_head
        self.q_proj = _linear(w["q_proj"])
        self.k_proj = _linear(w["k_proj"])
        self.v_proj = _linear(w["v_proj"])
        self.o_proj = _linear(w["o_proj"])

    def forward(self, x, cos, sin, allowed):
        B, S, C = x.shape
        D = self.head_dim
        q = self.q_proj(x).view(B, S, self.n_head, D).transpose(1, 2)      # (B, H, S, D)
        k = self.k_proj(x).view(B, S, self.n_kv_head, D).transpose(1, 2)   # (B, KVH, S, D)
        v = self.v_proj(x).view(B, S, self.n_kv_head, D).transpose(1, 2)   # (B, KVH, S, D)
        q = apply_rope(q, cos, sin)
        k = apply_rope(k, cos, sin)
        # GQA: query head h reads K/V head h // (H / KVH)
        n_rep = self.n_head // self.n_kv_head
        k = k.repeat_interleave(n_rep, dim=1)                              # (B, H, S, D)
        v = v.repeat_interleave(n_rep, dim=1)                              # (B, H, S, D)

        # scores and softmax in float32 (or wider)
        dtype = torch.promote_types(x.dtype, torch.float32)
        att = (q.to(dtype) @ k.to(dtype).transpose(-2, -1)) / math.sqrt(D)  # (B, H, S, S)
        att = att.masked_fill(~allowed, float("-inf"))
        att = F.softmax(att, dim=-1)
        # a query with no allowed key has a row of NaN here: zero it (and its output)
        att = att.masked_fill(~allowed, 0.0)
        y = att.to(x.dtype) @ v                                            # (B, H, S, D)
        y = y.transpose(1, 2).reshape(B, S, self.n_head * D)               # (B, S, H*D)
        return self.o_proj(y)


class MLP(nn.Module):
    def __init__(self, w: dict):
        super().__init__()
        self.gate_proj = _linear(w["gate_proj"])
        self.up_proj = _linear(w["up_proj"])
        self.down_proj = _linear(w["down_proj"])

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, cfg: dict, w: dict):
        super().__init__()
        eps = cfg["rms_norm_eps"]
        self.input_layernorm = RMSNorm(w["input_layernorm"], eps)
        self.self_attn = Attention(cfg, w)
        self.post_attention_layernorm = RMSNorm(w["post_attention_layernorm"], eps)
        self.mlp = MLP(w)

    def forward(self, x, cos, sin, allowed):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, allowed)
        x = x + self.mlp(self.post_attention_layernorm(x))
        return x


# ------------------------------------------------------------------------------------ model ---

class ReferenceModel(nn.Module):
    """The `llama` model in eager torch, built from Hugging Face named weights.

    config: an object (or dict) with hidden_size, num_hidden_layers, num_attention_heads,
        num_key_value_heads, vocab_size, max_position_embeddings, intermediate_size (0: the seed
        rule), rms_norm_eps, rope_theta, tie_word_embeddings.
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
        layers = []
        for i in range(cfg["num_hidden_layers"]):
            p = f"model.layers.{i}."
            w = {
                "input_layernorm": weight(p + "input_layernorm.weight", (C,)),
                "post_attention_layernorm": weight(p + "post_attention_layernorm.weight", (C,)),
                "q_proj": weight(p + "self_attn.q_proj.weight", (H * D, C)),
                "k_proj": weight(p + "self_attn.k_proj.weight", (KVH * D, C)),
                "v_proj": weight(p + "self_attn.v_proj.weight", (KVH * D, C)),
                "o_proj": weight(p + "self_attn.o_proj.weight", (C, H * D)),
                "gate_proj": weight(p + "mlp.gate_proj.weight", (I, C)),
                "up_proj": weight(p + "mlp.up_proj.weight", (I, C)),
                "down_proj": weight(p + "mlp.down_proj.weight", (C, I)),
            }
            layers.append(Block(cfg, w))
        self.layers = nn.ModuleList(layers)
        self.norm = RMSNorm(weight("model.norm.weight", (C,)), cfg["rms_norm_eps"])
        if cfg["tie_word_embeddings"]:
            # tied: the output projection is the embedding matrix (a stored lm_head is ignored)
            self.lm_head = nn.Linear(C, V, bias=False, device="meta")
            self.lm_head.weight = self.embed_tokens.weight
        else:
            self.lm_head = _linear(weight("lm_head.weight", (V, C)))

        if rope is None:
            cos, sin = rope_tables(D, cfg["max_position_embeddings"], cfg["rope_theta"])
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

    def forward(self, input_ids, attention_mask=None) -> torch.Tensor:
        """input_ids (B, S) ints, attention_mask (B, S) 0/1 or None -> logits (B, S, vocab) float32."""
        device = self.embed_tokens.weight.device
        input_ids = _as_index_tensor(input_ids, device).long()
        if input_ids.ndim != 2:
            raise ValueError(f"input_ids must be (B, S), got shape {tuple(input_ids.shape)}")
        B, S = input_ids.shape
        if S > self.rope_cos.shape[0]:
            raise ValueError(f"sequence length {S} exceeds the RoPE table "
                             f"({self.rope_cos.shape[0]} positions)")
        if input_ids.numel() and (input_ids.min() < 0 or input_ids.max() >= self.config["vocab_size"]):
            raise ValueError(f"token id out of range [0, {self.config['vocab_size']})")
        if attention_mask is None:
            attention_mask = torch.ones(B, S, dtype=torch.bool, device=device)
        attention_mask = _as_index_tensor(attention_mask, device)
        if tuple(attention_mask.shape) != (B, S):
            raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)}, "
                             f"expected {(B, S)}")

        allowed = allowed_keys(attention_mask)                 # (B, 1, S, S)
        cos, sin = self.rope_cos[:S], self.rope_sin[:S]        # (S, D): positions 0..S-1
        x = self.embed_tokens(input_ids)                       # (B, S, C)
        for block in self.layers:
            x = block(x, cos, sin, allowed)
        x = self.norm(x)
        return self.lm_head(x).float()                         # (B, S, V)


def logits(model, input_ids, attention_mask=None, dtype=torch.float32) -> np.ndarray:
    """Reference logits of a celerinfer Model: numpy in, float32 numpy (B, S, vocab) out."""
    ref = ReferenceModel.from_model(model, dtype=dtype)
    ids = torch.from_numpy(np.array(input_ids, dtype=np.int64))
    mask = None if attention_mask is None else torch.from_numpy(np.array(attention_mask) != 0)
    with torch.no_grad():
        return ref(ids, mask).numpy().astype(np.float32, copy=False)
