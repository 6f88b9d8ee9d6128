"""The KV-cache methods as the reference implements them, written from each method's definition
(not from the C++): the reference's own copy of the registry's settings (VERSIONS, checked
against ``celerinfer.versions()`` by the tests), the quantizers, and the caches.

A method is a set of knobs:

* storage of K and of V: ``fp32``, ``fp16``, ``int8`` (symmetric: scale = max|x| / 127),
  ``int4`` / ``int2`` (asymmetric, KIVI's: min and scale = (max - min) / (2^bits - 1));
  scale groups along a token's channels (``token``: ``group`` channels, 0 or the head size: the
  whole head) or along a channel's tokens (``channel``: ``group`` tokens);
* ``residual``: the newest tokens stay exact until ``residual`` of them are quantized together;
* eviction: ``window`` (StreamingLLM: the first ``sinks`` tokens and the newest ``window``) or
  ``heavy_hitters`` (H2O: the newest ``window`` and the ``heavy`` older tokens that received the
  most attention, summed over queries and the query heads of their KV head), applied after each
  step once a layer holds more than it keeps;
* sharing of layer pairs (l, l + 1), l >= share_from (-1: the deeper half): ``reuse`` (the odd
  layer attends over the even one's K/V) or ``merge`` (MiniCache: each token's two vectors stored
  as the SLERP midpoint of their directions and each layer's norm; a pair more than
  ``merge_angle`` radians apart is kept whole).

Rounding: half to even, in float32, as torch.round does.
"""

from __future__ import annotations

import torch

# ------------------------------------------------------------------------------- versions ---

FP32 = dict(storage="fp32", along="token", group=0)
FP16 = dict(storage="fp16", along="token", group=0)
INT8_TOKEN = dict(storage="int8", along="token", group=0)


def _method(use_cache=True, key=FP32, value=FP32, residual=0, eviction="none", sinks=0, window=0, heavy=0,
            sharing="none", share_from=0, merge_angle=0.0) -> dict:
    return dict(use_cache=use_cache, key=dict(key), value=dict(value), residual=residual, eviction=eviction,
                sinks=sinks, window=window, heavy=heavy, sharing=sharing, share_from=share_from,
                merge_angle=merge_angle)


#: The reference's own table of the registry's methods (the tests hold the C++ one to it).
VERSIONS = {
    "v0": _method(use_cache=False),
    "v1": _method(),
    "v2": _method(key=INT8_TOKEN, value=INT8_TOKEN),
    "v3": _method(sharing="reuse"),
    "v4": _method(key=INT8_TOKEN, value=INT8_TOKEN, sharing="reuse"),
    "v5": _method(key=FP16, value=FP16),
    "v6": _method(key=dict(storage="int8", along="channel", group=32), value=INT8_TOKEN, residual=32),
    "v7": _method(key=dict(storage="int4", along="channel", group=32), value=dict(storage="int4", along="token", group=32),
                  residual=128),
    "v8": _method(key=dict(storage="int2", along="channel", group=32), value=dict(storage="int2", along="token", group=32),
                  residual=128),
    "v9": _method(eviction="window", sinks=4, window=508),
    "v10": _method(eviction="heavy_hitters", window=256, heavy=256),
    "v11": _method(sharing="merge", share_from=-1, merge_angle=0.8),
}
BITS = {"fp32": 32, "fp16": 16, "int8": 8, "int4": 4, "int2": 2}
_KNOBS = ("use_cache", "residual", "eviction", "sinks", "window", "heavy", "sharing", "share_from", "merge_angle")


def version_spec(version) -> dict:
    """A version name or a dict of settings (the keys celerinfer.versions() entries have:
    key_storage, key_along, key_group, value_*, residual, eviction, ...) -> the method dict
    {name, use_cache, key: {storage, along, group}, value: {...}, residual, eviction, sinks,
    window, heavy, sharing, share_from, merge_angle}."""
    if isinstance(version, str):
        if version not in VERSIONS:
            raise ValueError(f"unknown version {version!r} (known: {', '.join(VERSIONS)})")
        return {**VERSIONS[version], "key": dict(VERSIONS[version]["key"]), "value": dict(VERSIONS[version]["value"]),
                "name": version}
    if not isinstance(version, dict):
        raise TypeError(f"version must be a name or a dict, got {type(version).__name__}")
    if isinstance(version.get("key"), dict):  # already a method dict (from version_spec)
        spec = {**_method(), **version, "key": dict(version["key"]), "value": dict(version["value"])}
        spec.setdefault("name", "custom")
        _check_choices(spec)
        return spec
    base = version_spec(version.get("base", "v1")) if "base" in version or "key_storage" in version else None
    spec = base or _method()
    spec["name"] = version.get("name", "custom")
    for knob in _KNOBS:
        if knob in version:
            spec[knob] = version[knob]
    for which in ("key", "value"):
        for part in ("storage", "along", "group"):
            if f"{which}_{part}" in version:
                spec[which][part] = version[f"{which}_{part}"]
    _check_choices(spec)
    return spec


def _check_choices(spec: dict) -> None:
    """The named knobs take one of the values the reference implements (the engine checks the
    combinations; the reference runs what it is given)."""
    for which, letter in (("key", "K"), ("value", "V")):
        if spec[which]["storage"] not in BITS:
            raise ValueError(f"unsupported {letter} storage {spec[which]['storage']!r} (known: {', '.join(BITS)})")
        if spec[which]["along"] not in ("token", "channel"):
            raise ValueError(f"unsupported {letter} grouping {spec[which]['along']!r} (token or channel)")
    if spec["eviction"] not in ("none", "window", "heavy_hitters"):
        raise ValueError(f"unsupported eviction {spec['eviction']!r} (none, window or heavy_hitters)")
    if spec["sharing"] not in ("none", "reuse", "merge"):
        raise ValueError(f"unsupported sharing {spec['sharing']!r} (none, reuse or merge)")


def first_shared_layer(spec: dict, layers: int) -> int:
    return spec["share_from"] if spec["share_from"] >= 0 else layers // 2 // 2 * 2


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


def round_trip_asymmetric(x: torch.Tensor, bits: int, dim: int) -> torch.Tensor:
    """KIVI's asymmetric quantization along `dim` (one min and scale per slice), read back:
    q = clamp(round_half_even((x - min) / scale), 0, 2^bits - 1), x' = q * scale + min; a
    constant slice (scale 0) reads back as its min."""
    lo, hi = x.amin(dim=dim, keepdim=True), x.amax(dim=dim, keepdim=True)
    scale = (hi - lo) / (2 ** bits - 1)
    live = scale > 0
    q = torch.round((x - lo) / torch.where(live, scale, torch.ones_like(scale)))
    q = torch.where(live, q.clamp(0, 2 ** bits - 1), torch.zeros_like(q))
    return q * scale + lo


def round_trip(x: torch.Tensor, quant: dict, head_dim: int) -> torch.Tensor:
    """x (B, KVH, T, D) as `quant` stores it, read back. Per token: groups of channels of each
    token; per channel: each channel over groups of `group` tokens (T a multiple of it)."""
    storage, along, group = quant["storage"], quant["along"], quant["group"]
    if storage == "fp32":
        return x
    if storage == "fp16":
        return fp16_round_trip(x)
    B, H, T, D = x.shape
    if along == "token":
        g = D if group == 0 or group >= D else group
        grouped = x.reshape(B, H, T, D // g, g)
        dim = -1
    else:
        grouped = x.reshape(B, H, T // group, group, D)
        dim = -2
    if storage == "int8":
        q, scale = _quantize_int8(grouped, dim)
        out = dequantize_int8(q, scale)
    else:
        out = round_trip_asymmetric(grouped, BITS[storage], dim)
    return out.reshape(B, H, T, D)


def stored_bytes(quant: dict, tokens: int, head_dim: int, quantized_tokens: int) -> int:
    """Bytes one (row, head) of K or V takes for `tokens` tokens, `quantized_tokens` of them in
    the quantized store (the rest exact float32), scales (and minimums) float32."""
    D, bits = head_dim, BITS[quant["storage"]]
    if quant["storage"] in ("fp32", "fp16"):
        return tokens * D * bits // 8
    per_scale = 4 if quant["storage"] == "int8" else 8
    exact = (tokens - quantized_tokens) * D * 4
    if quant["along"] == "token":
        groups = 1 if quant["group"] in (0,) or quant["group"] >= D else D // quant["group"]
        return exact + quantized_tokens * ((D * bits + 7) // 8 + groups * per_scale)
    G = quant["group"]
    return exact + quantized_tokens // G * D * ((G * bits + 7) // 8 + per_scale)


# ---------------------------------------------------------------------------------- caches ---

class KVCache:
    """One layer's K/V, stored as the method says, with its positions and padding flags.

    write(k, v, positions, valid): the step's new tokens, k and v (B, KVH, S, D), at `positions`
    (S,) with `valid` (B, S) (False: padding). read(query_positions) -> (k, v, allowed): the kept
    tokens in position order, read back, and allowed (B, KVH, S, L): which key each query sees
    (earlier or equal positions, not padding). observe(probs): the attention probabilities of the
    step (B, H, S, L), for H2O. end_step(): evicts what the method gives up.
    """

    def __init__(self, spec: dict, head_dim: int):
        self.spec, self.D = spec, head_dim
        self.k_exact = self.v_exact = None  # (B, KVH, T, D) as computed: what storage rounds
        self.k = self.v = None              # (B, KVH, T, D) as read back
        self.positions = None               # (B, KVH, T) long
        self.valid = None                   # (B, KVH, T) bool
        self.scores = None                  # (B, KVH, T): attention received (H2O)
        self.quantized = 0                  # tokens in the quantized store (the rest: the residual window)

    def write(self, k, v, positions, valid):
        B, H, S, _ = k.shape
        pos = positions.view(1, 1, S).expand(B, H, S)
        ok = valid.view(B, 1, S).expand(B, H, S)
        cat = (lambda old, new: new if old is None else torch.cat([old, new], dim=2))
        self.k_exact, self.v_exact = cat(self.k_exact, k), cat(self.v_exact, v)
        self.positions, self.valid = cat(self.positions, pos), cat(self.valid, ok)
        self.scores = cat(self.scores, torch.zeros(B, H, S, dtype=torch.float64))
        self._store()

    def _store(self):
        """What the cache holds now, read back. Without a residual window every token is stored
        as it arrives; with one (R tokens), the tokens are stored R at a time once R of them are
        complete, and the newest T mod R wait exact."""
        T = self.k_exact.shape[2]
        R = self.spec["residual"]
        self.quantized = T - T % R if R > 0 else T
        chunk = R if R > 0 else max(T, 1)
        parts = []
        for exact, quant in ((self.k_exact, self.spec["key"]), (self.v_exact, self.spec["value"])):
            stored = [round_trip(exact[:, :, c:c + chunk], quant, self.D) for c in range(0, self.quantized, chunk)]
            parts.append(torch.cat(stored + [exact[:, :, self.quantized:]], dim=2))
        self.k, self.v = parts

    def read(self, query_positions):
        qpos = query_positions.view(1, 1, -1, 1)
        allowed = self.valid.unsqueeze(2) & (self.positions.unsqueeze(2) <= qpos)   # (B, KVH, S, L)
        return self.k, self.v, allowed

    def observe(self, probs: torch.Tensor):
        """probs (B, H, S, L): added to each key's attention received, summed over queries and
        the query heads of its KV head."""
        if self.spec["eviction"] != "heavy_hitters":
            return
        B, H, S, L = probs.shape
        KVH = self.k.shape[1]
        self.scores += probs.double().reshape(B, KVH, H // KVH, S, L).sum(dim=(2, 3))

    def end_step(self):
        spec = self.spec
        keep_n = spec["sinks"] + spec["window"] + spec["heavy"]
        T = self.k.shape[2]
        if spec["eviction"] == "none" or T <= keep_n:
            return
        B, H = self.k.shape[:2]
        recent = T - spec["window"]
        keep = torch.zeros(B, H, T, dtype=torch.bool)
        keep[:, :, recent:] = True
        if spec["eviction"] == "window":
            keep[:, :, :spec["sinks"]] = True
        else:  # the heavy hitters among the older tokens; on a tie the older one
            older = self.scores[:, :, :recent]
            order = torch.argsort(-older, dim=-1, stable=True)[:, :, :spec["heavy"]]
            keep.scatter_(2, order, True)
        index = keep.nonzero(as_tuple=True)

        def take(t):
            return t[index].view(B, H, keep_n, *t.shape[3:])

        self.k_exact, self.v_exact, self.k, self.v = map(take, (self.k_exact, self.v_exact, self.k, self.v))
        self.positions, self.valid, self.scores = map(take, (self.positions, self.valid, self.scores))

    def nbytes(self, rows: int) -> int:
        """Bytes held for rows (batch rows) of every head: K and V, scales, the exact window."""
        T, H = self.k.shape[2], self.k.shape[1]
        per = sum(stored_bytes(q, T, self.D, self.quantized) for q in (self.spec["key"], self.spec["value"]))
        return per * H * rows


class MergedPair:
    """MiniCache: the K/V of layers (l, l + 1), l the pair's first. The first layer's new tokens
    wait (exact) until the second layer's arrive; then each token's two vectors become one
    direction, the SLERP midpoint of their unit vectors (at t = 1/2: the normalized sum), and
    each layer's norm, unless they are more than `angle` radians apart (kept whole).
    view(0) / view(1): the caches each layer reads."""

    def __init__(self, spec: dict, head_dim: int):
        self.spec, self.D, self.angle = spec, head_dim, spec["merge_angle"]
        self.store = spec["key"]["storage"]
        self.merged = {0: None, 1: None}  # layer -> (k, v) rebuilt, (B, KVH, T, D)
        self.held = None
        self.positions = self.valid = None
        self.retained = 0

    def _rebuild(self, a, b):
        """(a', b'): what each layer reads of vectors a, b (B, KVH, S, D) after merging."""
        a64, b64 = a.double(), b.double()
        na, nb = a64.norm(dim=-1, keepdim=True), b64.norm(dim=-1, keepdim=True)
        cos = ((a64 * b64).sum(-1, keepdim=True) / (na * nb)).clamp(-1, 1)
        apart = (torch.arccos(cos) > self.angle) | (na == 0) | (nb == 0)
        mid = a64 / na + b64 / nb
        mid = (mid / mid.norm(dim=-1, keepdim=True)).float()
        mid = fp16_round_trip(mid) if self.store == "fp16" else mid
        keep_a = fp16_round_trip(a) if self.store == "fp16" else a
        keep_b = fp16_round_trip(b) if self.store == "fp16" else b
        ra = torch.where(apart, keep_a, mid * na.float())
        rb = torch.where(apart, keep_b, mid * nb.float())
        return ra, rb, int(apart.sum())

    def write(self, layer: int, k, v, positions, valid):
        B, H, S, _ = k.shape
        if layer == 0:
            self.held = (k, v)
            pos = positions.view(1, 1, S).expand(B, H, S)
            ok = valid.view(B, 1, S).expand(B, H, S)
            cat = (lambda old, new: new if old is None else torch.cat([old, new], dim=2))
            self.positions, self.valid = cat(self.positions, pos), cat(self.valid, ok)
            return
        (ka, va), kb, vb = self.held, k, v
        k0, k1, rk = self._rebuild(ka, kb)
        v0, v1, rv = self._rebuild(va, vb)
        self.retained += rk + rv
        cat = (lambda old, new: new if old is None else torch.cat([old, new], dim=2))
        for which, (kk, vv) in ((0, (k0, v0)), (1, (k1, v1))):
            old = self.merged[which]
            self.merged[which] = (kk, vv) if old is None else (cat(old[0], kk), cat(old[1], vv))
        self.held = None

    def read(self, layer: int, query_positions):
        qpos = query_positions.view(1, 1, -1, 1)
        allowed = self.valid.unsqueeze(2) & (self.positions.unsqueeze(2) <= qpos)
        merged = self.merged[layer]
        if layer == 0 and self.held is not None:  # the step's own tokens, not merged yet
            k, v = self.held
            if merged is not None:
                k, v = torch.cat([merged[0], k], dim=2), torch.cat([merged[1], v], dim=2)
            return k, v, allowed
        return merged[0], merged[1], allowed

    def nbytes(self, rows: int) -> int:
        T, H = self.positions.shape[2], self.positions.shape[1]
        elem = 4 if self.store == "fp32" else 2
        direction = T * self.D * elem + T * 2 * 4  # the direction and the two norms
        return 2 * direction * H * rows + self.retained * self.D * elem  # retained: over every row

    def view(self, layer: int) -> "PairLayer":
        return PairLayer(self, layer)


class PairLayer:
    """One layer's side of a MergedPair, with a KVCache's interface."""

    def __init__(self, pair: MergedPair, which: int):
        self.pair, self.which = pair, which

    def write(self, k, v, positions, valid):
        self.pair.write(self.which, k, v, positions, valid)

    def read(self, query_positions):
        return self.pair.read(self.which, query_positions)

    def observe(self, probs):
        pass

    def end_step(self):
        pass

    def nbytes(self, rows: int) -> int:
        return self.pair.nbytes(rows) if self.which == 0 else 0


def new_caches(spec: dict, layers: int, head_dim: int) -> list:
    """One cache per layer of a model of `layers` layers: None for a Reuse pair's odd layer
    (it attends over the layer before), a PairLayer for each side of a merged pair."""
    if not spec["use_cache"]:
        return [None] * layers
    first = first_shared_layer(spec, layers)
    caches = []
    for l in range(layers):
        paired = spec["sharing"] != "none" and l >= first and (l - first) % 2 == 1
        if paired and spec["sharing"] == "reuse":
            caches.append(None)
        elif paired:
            caches.append(caches[-1].pair.view(1))
        elif spec["sharing"] == "merge" and l >= first and l + 1 < layers:
            caches.append(MergedPair(spec, head_dim).view(0))
        else:
            caches.append(KVCache(spec, head_dim))
    return caches


def cache_bytes(caches: list, rows: int) -> int:
    """Bytes every cache holds (the engine's kv_cache_bytes)."""
    return sum(c.nbytes(rows) for c in caches if c is not None)


__all__ = ["BITS", "KVCache", "MergedPair", "VERSIONS", "cache_bytes", "dequantize_int8", "first_shared_layer",
           "fp16_round_trip", "new_caches", "quantize_int8_per_channel", "quantize_int8_per_token", "round_trip",
           "round_trip_asymmetric", "stored_bytes", "version_spec"]
