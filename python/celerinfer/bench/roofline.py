"""An analytical roofline model of the work the engine does for the llama architecture.

For one engine step (a prefill, or one decode token) this counts the floating-point operations
and the bytes moved, per op, for a model config and a KV-cache version (a dict from
:func:`celerinfer.versions`, or a version name). Compared with the step's measured time and this
machine's calibrated peaks (:mod:`celerinfer.bench.calibration`), it says how close a phase runs to
the compute roof (``peak_gflops``) or the memory roof (``peak_gbps * arithmetic_intensity``).

What is modelled is what the engine executes (``cpp/src/engine/``), not an ideal kernel:

* A step processes ``n`` new tokens in each of ``B`` rows (``M = B * n`` tokens) whose queries
  attend over ``keys = p0 + n`` positions (``p0`` cached before the step). The cache attention
  computes every score of the ``n x keys`` block densely and masks the causal part afterwards,
  so prefill attention is counted over the whole square, not the triangle.
* Prefill: ``n = P``, ``p0 = 0``. Generation computes the final norm and lm_head only on each
  row's last position (``head_rows = B``); :meth:`Engine.forward` computes them on every
  position (``prefill_cost(..., all_positions=True)``).
* Decode with a cache: ``n = 1``, ``p0 = context_length``. Without a cache (v0) a decode step
  recomputes the whole sequence: it is exactly a prefill of ``context_length + 1`` tokens with
  the head on the last position (the engine's v0 K/V go through one fp32 scratch cache layer).

Ops (the keys of ``Cost.by_op``), per layer unless said otherwise:

* ``embedding`` (once): gathers ``M`` rows of the table and writes them (``2 * M * H * 4`` bytes).
* ``qkv``: input RMSNorm, q/k/v projections, RoPE on q and k. With cross-layer sharing an odd
  layer computes only q (no k/v projection or RoPE; its k_proj/v_proj weights are never read).
* ``attention``: ``QK^T`` and ``PV`` (``4 * D * keys`` flops per query head and query), the
  softmax (``SOFTMAX_FLOPS_PER_SCORE`` per score: scale, max, subtract, exp, sum; exp counted as
  one flop), the final division (``D`` per query head and query); the KV cache read (every
  layer reads the ``keys`` positions of its cache layer, once per KV head, in the version's
  storage) and, in a layer that owns its K/V, the KV write of the new tokens, with their
  quantization (``QUANT_FLOPS_PER_VALUE``) and the dequantization of what is read
  (``DEQUANT_FLOPS_PER_VALUE`` per int8 value; fp16 conversion counts 0 flops).
* ``o_proj``: output projection plus the residual add (1 flop per element).
* ``mlp``: post-attention RMSNorm, gate and up projections, SwiGLU (``SWIGLU_FLOPS_PER_ELEMENT``:
  negate, exp, add, divide, multiply), down projection plus the residual add.
* ``head`` (once): final RMSNorm and lm_head on ``head_rows`` rows; writes the logits.

FLOPs: ``2 * M * N * K`` per matmul; RMSNorm ``RMSNORM_FLOPS_PER_ELEMENT`` (square, sum, two
scalings), RoPE ``ROPE_FLOPS_PER_ELEMENT`` per element. The online softmax's per-tile
rescaling is not counted.

Bytes, counted as main-memory traffic with no cache modelling:

* weights: every weight the step uses is read once (linear layers in the weight_dtype: 4, 2 or
  1 + 2/32 bytes per value; norm weights fp32, included); the embedding contributes only the
  gathered rows; a tied lm_head still reads the whole table.
* KV cache: exact storage bytes from the engine's own layout (``_core.kv_layout``, C++
  ``KVLayout::bytes_for``): each method's values, scales and minimums, its exact residual
  window, an evicting cache's budget, a merged pair's direction and norms (counted as merged).
  A step reads what its cache layer holds (an evicting cache: what it held plus the new tokens,
  so decode cost stops growing at the budget) and writes what the step adds (at least the new
  tokens as stored). Integer storage adds the quantization of the new values and the
  dequantization of every value read. With Reuse sharing the odd layers compute no K/V but still
  read the shared cache layer, so the read bytes do not shrink; a large last-level cache may
  serve the second read (see ``Cost.kv_resident_bytes``).
* activations: each op reads its inputs and writes its outputs once, fp32 (an approximation:
  in decode they live in the CPU caches; in a big prefill a matmul may re-read them). The
  dequantized KV tiles and the attention scores stay in per-thread scratch (L1/L2) and are not
  counted. RoPE tables, token ids and positions are not counted.

``achieved(cost, time_s, peak_gflops, peak_gbps)`` puts a measured time against the roofs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import _core
from ..formats import weight_format
from ..registry import versions

FLOAT_BYTES = 4
OPS = ("embedding", "qkv", "attention", "o_proj", "mlp", "head")

RMSNORM_FLOPS_PER_ELEMENT = 4
ROPE_FLOPS_PER_ELEMENT = 3
SWIGLU_FLOPS_PER_ELEMENT = 5
SOFTMAX_FLOPS_PER_SCORE = 5
QUANT_FLOPS_PER_VALUE = 3  # |x| into the max, x / scale, round
DEQUANT_FLOPS_PER_VALUE = 1  # q * scale


@dataclass
class Cost:
    """FLOPs and bytes of one engine step. ``by_op``: ``{op: {"flops", "bytes"}}`` for the ops
    in :data:`OPS`; ``flops`` and ``bytes`` are their sums. Breakdown of the bytes (each also
    inside ``by_op``): ``weight_bytes``, ``kv_read_bytes``, ``kv_write_bytes``;
    ``kv_resident_bytes`` is the cache footprint the step's attention reads from (distinct
    bytes: with sharing, half the layers' worth); ``tokens`` is ``batch * new tokens per row``."""

    by_op: dict = field(default_factory=lambda: {op: {"flops": 0, "bytes": 0} for op in OPS})
    weight_bytes: float = 0
    kv_read_bytes: float = 0
    kv_write_bytes: float = 0
    kv_resident_bytes: float = 0
    tokens: float = 0

    @property
    def flops(self):
        return sum(v["flops"] for v in self.by_op.values())

    @property
    def bytes(self):
        return sum(v["bytes"] for v in self.by_op.values())

    @property
    def arithmetic_intensity(self) -> float:
        """FLOPs per byte of memory traffic."""
        total = self.bytes
        return float(self.flops) / float(total) if total else float("inf")

    def add(self, op: str, flops=0, nbytes=0) -> None:
        entry = self.by_op[op]
        entry["flops"] += flops
        entry["bytes"] += nbytes

    def __repr__(self) -> str:
        return (f"Cost(flops={self.flops:.6g}, bytes={self.bytes:.6g}, "
                f"arithmetic_intensity={self.arithmetic_intensity:.4g}, tokens={self.tokens})")

    def to_dict(self) -> dict:
        return {"flops": self.flops, "bytes": self.bytes, "arithmetic_intensity": self.arithmetic_intensity,
                "by_op": {op: dict(v) for op, v in self.by_op.items()}, "weight_bytes": self.weight_bytes,
                "kv_read_bytes": self.kv_read_bytes, "kv_write_bytes": self.kv_write_bytes,
                "kv_resident_bytes": self.kv_resident_bytes, "tokens": self.tokens}


_SCALARS = ("weight_bytes", "kv_read_bytes", "kv_write_bytes", "kv_resident_bytes", "tokens")


def mean_cost(costs) -> Cost:
    """The average of several steps' costs (e.g. the decode steps of one generation)."""
    costs = list(costs)
    if not costs:
        raise ValueError("mean_cost needs at least one Cost")
    out = Cost()
    n = len(costs)
    for op in OPS:
        out.by_op[op] = {k: sum(c.by_op[op][k] for c in costs) / n for k in ("flops", "bytes")}
    for name in _SCALARS:
        setattr(out, name, sum(getattr(c, name) for c in costs) / n)
    return out


# -- inputs -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Dims:
    H: int
    L: int
    heads: int
    kv_heads: int
    D: int
    I: int
    V: int
    mlp_mats: int = 3  # gate, up, down; gpt2's ungated MLP: up, down

    @property
    def Q(self) -> int:
        return self.heads * self.D

    @property
    def KV(self) -> int:
        return self.kv_heads * self.D


def _dims(config) -> _Dims:
    get = (lambda k: config.get(k)) if isinstance(config, dict) else (lambda k: getattr(config, k, None))
    H, heads = int(get("hidden_size")), int(get("num_attention_heads"))
    kv_heads = get("num_key_value_heads")
    kv_heads = heads if kv_heads is None else int(kv_heads)
    inter = int(get("intermediate_size") or 0)
    if inter <= 0:  # the seed rule
        inter = 64 * ((4 * H + 63) // 64)
    dims = _Dims(H=H, L=int(get("num_hidden_layers")), heads=heads, kv_heads=kv_heads, D=H // heads, I=inter,
                 V=int(get("vocab_size")), mlp_mats=2 if get("architecture") == "gpt2" else 3)
    if min(dims.H, dims.L, dims.heads, dims.kv_heads, dims.D, dims.V) < 1 or heads % kv_heads:
        raise ValueError(f"not a valid llama config: {dims}")
    return dims


@dataclass(frozen=True)
class _Version:
    setting: object     # the name or dict, as _core.kv_layout takes it
    use_cache: bool
    quantized: bool     # K or V stored as integers: quantized when written, dequantized when read


def _version(version) -> _Version:
    if isinstance(version, str):
        found = [v for v in versions() if v["name"] == version]
        if not found:
            raise ValueError(f"unknown version {version!r}")
        version = found[0]
    spec = _core.version_spec(version) if isinstance(version, dict) else version
    quantized = any(spec.get(f"{which}_storage", "fp32") not in ("fp32", "fp16") for which in ("key", "value"))
    return _Version(version, bool(spec["use_cache"]), quantized)


def _layout(d: _Dims, v: _Version, batch: int, written: int) -> dict:
    """The engine's own cache layout (KVLayout): bytes, tokens held, storage layers."""
    return _core.kv_layout(v.setting, d.L, d.kv_heads, d.D, batch, written)


def kv_cache_bytes(config, version, batch: int, tokens: int) -> int:
    """The cache's bytes for `tokens` positions of `batch` rows (scales, the exact residual
    window and a merged pair's norms included; a MiniCache pair counted as merged, the vectors it
    keeps whole not): what the engine reports as ``kv_cache_bytes`` (0 without a cache)."""
    d, v = _dims(config), _version(version)
    return _layout(d, v, batch, tokens)["bytes"] if v.use_cache else 0


# -- the model walk -----------------------------------------------------------------------------

def _step_cost(d: _Dims, v: _Version, B: int, n: int, p0: int, head_rows: int, W: float) -> Cost:
    """One engine step: n new tokens in each of B rows at positions p0.., head on head_rows rows;
    W bytes per value of the linear layers' weights (norm weights and activations are fp32)."""
    if B < 1 or n < 1 or p0 < 0:
        raise ValueError(f"batch and tokens must be >= 1 and the cached length >= 0 (got {B}, {n}, {p0})")
    F = FLOAT_BYTES
    H, Q, KV, I, V, D = d.H, d.Q, d.KV, d.I, d.V, d.D
    M, keys = B * n, p0 + n
    c = Cost(tokens=M)
    weights = 0

    # embedding: gather M rows, write them
    c.add("embedding", 0, 2 * M * H * F)
    weights += M * H * F

    # what one layer's attention reads from its cache layer, and (if it computes K/V) writes.
    # An evicting cache attends over what it held before the step plus the new tokens.
    kv_values_new = 2 * M * KV  # K and V values of the new tokens
    if v.use_cache:
        before, after = _layout(d, v, B, p0), _layout(d, v, B, keys)
        layers = after["storage_layers"]
        attended = before["held"] + n
        kv_read = _layout(d, v, B, attended)["bytes"] // layers
        fresh = _layout(d, v, B, n)["bytes"] // layers  # n tokens as stored (residual: exact)
        kv_write = max((after["bytes"] - before["bytes"]) // layers, fresh)
        computes = after["computes_kv"]
    else:  # v0: one fp32 scratch layer of the whole sequence
        layers, attended, computes = 0, keys, [True] * d.L
        kv_read = kv_write = B * d.kv_heads * keys * 2 * F * D
    quant_values = kv_values_new if v.quantized else 0
    dequant_values = B * d.kv_heads * attended * 2 * D if v.quantized else 0
    kv_read_total = kv_write_total = 0

    for layer in range(d.L):
        owns = computes[layer]
        # qkv: rmsnorm, q (and k, v) projections, rope
        flops = RMSNORM_FLOPS_PER_ELEMENT * M * H + 2 * M * H * Q + ROPE_FLOPS_PER_ELEMENT * M * Q
        nbytes = (2 * M * H + H) * F + Q * H * W + (M * H + M * Q) * F + 2 * M * Q * F
        weights += H * F + Q * H * W
        if owns:
            flops += 2 * (2 * M * H * KV) + ROPE_FLOPS_PER_ELEMENT * M * KV
            nbytes += 2 * KV * H * W + 2 * (M * H + M * KV) * F + 2 * M * KV * F
            weights += 2 * KV * H * W
        c.add("qkv", flops, nbytes)

        # attention over the cache (dense n x keys scores per query head), cache write
        flops = M * d.heads * (4 * D * attended + SOFTMAX_FLOPS_PER_SCORE * attended + D)
        flops += DEQUANT_FLOPS_PER_VALUE * dequant_values
        nbytes = 2 * M * Q * F + kv_read
        kv_read_total += kv_read
        if owns:
            flops += QUANT_FLOPS_PER_VALUE * quant_values
            nbytes += kv_values_new * F + kv_write
            kv_write_total += kv_write
        c.add("attention", flops, nbytes)

        # o_proj + residual
        c.add("o_proj", 2 * M * Q * H + M * H, H * Q * W + (M * Q + 2 * M * H) * F)
        weights += H * Q * W

        # mlp: rmsnorm, gate/up, swiglu, down + residual
        up = d.mlp_mats - 1  # projections from h: gate and up, or up alone
        flops = (RMSNORM_FLOPS_PER_ELEMENT * M * H + up * (2 * M * H * I) + SWIGLU_FLOPS_PER_ELEMENT * M * I
                 + 2 * M * I * H + M * H)
        nbytes = ((2 * M * H + H) + (2 * M * H + up * M * I) + 3 * M * I + (M * I + 2 * M * H)) * F + d.mlp_mats * I * H * W
        weights += H * F + d.mlp_mats * I * H * W
        c.add("mlp", flops, nbytes)

    # head: final rmsnorm and lm_head on head_rows rows, logits written
    R = head_rows
    c.add("head", RMSNORM_FLOPS_PER_ELEMENT * R * H + 2 * R * H * V, ((2 * R * H + H) + (R * H + R * V)) * F + V * H * W)
    weights += H * F + V * H * W

    c.weight_bytes = weights
    c.kv_read_bytes = kv_read_total
    c.kv_write_bytes = kv_write_total
    c.kv_resident_bytes = layers * kv_read if v.use_cache else kv_read
    return c


def weight_value_bytes(weight_dtype: str) -> float:
    """Bytes per weight value of the engine's weight formats, from the C++ table (int8: one
    byte plus an fp16 scale per block of 32 values)."""
    return weight_format(weight_dtype).bytes_per_weight


def prefill_cost(config, version, batch: int, prompt_length: int, all_positions: bool = False,
                 weight_dtype: str = "f32") -> Cost:
    """The prefill of `prompt_length` tokens in each of `batch` rows. The head runs on each
    row's last position as in generation; ``all_positions=True`` models ``Engine.forward``."""
    d, v = _dims(config), _version(version)
    return _step_cost(d, v, int(batch), int(prompt_length), 0, int(batch) * (int(prompt_length) if all_positions else 1),
                      weight_value_bytes(weight_dtype))


def decode_cost(config, version, batch: int, context_length: int, weight_dtype: str = "f32") -> Cost:
    """One decode step: one new token per row attending over `context_length` cached positions
    plus itself. Without a cache (v0) the step recomputes the whole sequence: a prefill of
    ``context_length + 1`` tokens with the head on the last position."""
    d, v, W = _dims(config), _version(version), weight_value_bytes(weight_dtype)
    B, ctx = int(batch), int(context_length)
    if ctx < 0:
        raise ValueError(f"context_length must be >= 0, got {ctx}")
    if not v.use_cache:
        return _step_cost(d, v, B, ctx + 1, 0, B, W)
    return _step_cost(d, v, B, 1, ctx, B, W)


def achieved(cost: Cost, time_s: float, peak_gflops: float, peak_gbps: float) -> dict:
    """A measured step time against the roofs.

    achieved_gflops / achieved_gbps: the cost's flops and bytes over the time; ridge_point:
    peak_gflops / peak_gbps (flop/byte); bound: "memory" when the arithmetic intensity is below
    the ridge, else "compute"; attainable_gflops: min(peak_gflops, AI * peak_gbps), the roof
    over this intensity; fraction_of_peak_flops / fraction_of_bandwidth: achieved over the peaks.
    """
    time_s, peak_gflops, peak_gbps = float(time_s), float(peak_gflops), float(peak_gbps)  # numpy scalars too
    if not time_s > 0:
        raise ValueError(f"time_s must be > 0, got {time_s}")
    if not (peak_gflops > 0 and peak_gbps > 0):
        raise ValueError(f"peaks must be > 0, got {peak_gflops} GFLOP/s and {peak_gbps} GB/s")
    ai = cost.arithmetic_intensity
    gflops = float(cost.flops) / time_s / 1e9
    gbps = float(cost.bytes) / time_s / 1e9
    ridge = peak_gflops / peak_gbps
    return {
        "arithmetic_intensity": ai,
        "achieved_gflops": gflops,
        "achieved_gbps": gbps,
        "peak_gflops": peak_gflops,
        "peak_gbps": peak_gbps,
        "ridge_point": ridge,
        "bound": "memory" if ai < ridge else "compute",
        "attainable_gflops": min(peak_gflops, ai * peak_gbps),
        "fraction_of_peak_flops": gflops / peak_gflops,
        "fraction_of_bandwidth": gbps / peak_gbps,
    }
