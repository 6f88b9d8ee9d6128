"""The KV-cache versions as the reference implements them: its own copy of the registry's
flags (VERSIONS, checked against ``celerinfer.versions()`` by the tests), the INT8 quantizers
and a KVCache that stores K/V the way each version does (fp32, fp16, INT8 per token, KIVI)."""

from __future__ import annotations

import torch


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
