"""The KV-cache versions registry, read from the C++ engine: one dict of flags per version
(name, description, use_cache, kv_dtype, kv_quant, cross_layer_sharing, kivi_block), in the
registry's order. Python keeps no list of its own."""

from __future__ import annotations

from . import _core


def versions() -> list[dict]:
    """The versions registry (one dict of flags per KV-cache strategy), from the C++ engine."""
    return _core.versions()


def version_names() -> list[str]:
    return [v["name"] for v in versions()]
