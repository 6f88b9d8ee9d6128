"""The KV-cache versions registry, read from the C++ engine: one dict per version, in the
registry's order: name, method, description, the knobs (use_cache; key_/value_ storage, bits,
along, group; residual; eviction, sinks, window, heavy, budget; sharing, share_from,
merge_angle) and the summaries older records use (kv_dtype, kv_quant, cross_layer_sharing,
kivi_block). Python keeps no list of its own."""

from __future__ import annotations

from . import _core


def versions() -> list[dict]:
    """The versions registry (one dict of flags per KV-cache strategy), from the C++ engine."""
    return _core.versions()


def version_names() -> list[str]:
    return [v["name"] for v in versions()]
