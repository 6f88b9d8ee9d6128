"""How a version looks in every plot: its colour, marker and label, derived from the registry.

The registry (``celerinfer.versions()``) is passed in as data, never imported: the plots do not
depend on the engine. The i-th version of the registry takes the i-th colour of
:data:`PALETTE` and the i-th marker of :data:`MARKERS`, so a version added to the registry gets
a style of its own without touching this file, and the same version looks the same in every
plot. Without a registry the plots assume the registry's naming (v0, v1, ...: vN takes the N-th
style), and a version outside the registry takes a later style chosen by a stable hash of its
name. Labels come from the version's flags (the registry entry, or the ``version_flags`` a
record carries): "v2 (INT8 cache)".
"""

from __future__ import annotations

import re
import zlib
from typing import Iterable

from ..results.fields import get

#: colours in registry order; the first seven are those v0-v6 have always had
PALETTE = ("#4d4d4d",  # v0 no cache: dark gray
           "#1f77b4",  # v1 fp32 cache: blue
           "#ff7f0e",  # v2 INT8: orange
           "#2ca02c",  # v3 sharing: green
           "#d62728",  # v4 INT8 + sharing: red
           "#9467bd",  # v5 fp16: purple
           "#8c564b",  # v6 INT8 KIVI: brown
           "#e377c2", "#17becf", "#bcbd22", "#7f7f7f", "#393b79", "#637939", "#8c6d31",
           "#843c39", "#7b4173", "#3182bd", "#e6550d", "#31a354")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">", "p", "H", "d", "8", "+", "x", "1", "2")
#: without a registry, names that are not vN hash into the styles after this many (v0-v6's)
UNNAMED_START = 7
PHASE_COLORS = {"embedding": "#8dd3c7", "attention": "#fb8072", "mlp": "#80b1d3", "head": "#fdb462",
                "other": "#bebada"}
ROOFLINE_PHASE_MARKERS = {"prefill": "s", "decode": "o"}
#: the cache storage in a few words, by the registry's kv_dtype (records written by hand may
#: spell the dtypes out)
_KV_WORDS = {"fp32": "fp32", "float32": "fp32", "fp16": "fp16", "float16": "fp16", "bf16": "bf16", "int8": "INT8",
             "int4": "INT4", "int2": "INT2"}

_VERSION_RE = re.compile(r"^v(\d+)$")


def version_key(version: str):
    m = _VERSION_RE.match(str(version))
    return (0, int(m.group(1)), "") if m else (1, 0, str(version))


def versions_order(records_or_versions: Iterable) -> list[str]:
    """The distinct versions of records (dicts with a "version") or of version names, sorted
    numerically: v0, v1, ..., v9, v10; names not of the form vN come after, alphabetically."""
    found = set()
    for item in records_or_versions:
        v = item.get("version") if isinstance(item, dict) else item
        if v is not None:
            found.add(str(v))
    return sorted(found, key=version_key)


def registry_names(registry) -> list[str]:
    """The version names of a registry: ``celerinfer.versions()`` (dicts) or names."""
    return [v["name"] if isinstance(v, dict) else str(v) for v in registry or ()]


def style_index(version: str, registry=None, size: int = len(PALETTE)) -> int:
    """Which of `size` styles `version` takes (see the module docstring)."""
    names = registry_names(registry)
    if version in names:
        return names.index(version) % size
    m = _VERSION_RE.match(str(version))
    if m and not names:
        return int(m.group(1)) % size
    start = len(names) if names else UNNAMED_START
    h = zlib.crc32(str(version).encode())
    return start + h % (size - start) if start < size else h % size


def version_color(version: str, registry=None) -> str:
    return PALETTE[style_index(version, registry, len(PALETTE))]


def version_marker(version: str, registry=None) -> str:
    return MARKERS[style_index(version, registry, len(MARKERS))]


def short_description(flags) -> str | None:
    """A version's cache in a few words from its flags ("no cache", "INT8 cache", "fp32 +
    sharing", "INT8 KIVI"); None when the flags do not say (no use_cache)."""
    if not isinstance(flags, dict) or "use_cache" not in flags:
        return None
    if not flags["use_cache"]:
        return "no cache"
    if flags.get("eviction", "none") != "none" or flags.get("sharing") == "merge":
        return flags.get("method") or flags.get("description")  # StreamingLLM, H2O, MiniCache: the method's name
    words = _KV_WORDS.get(str(flags.get("kv_dtype")), str(flags.get("kv_dtype")))
    kivi = flags.get("kv_quant") == "per_channel_kivi"
    if kivi:
        words += " KIVI"
    if flags.get("cross_layer_sharing"):
        return words + " + sharing"
    return words if kivi else words + " cache"


def _flags(version: str, records: Iterable[dict], registry) -> dict | None:
    """The version's flags: the registry's entry, else the first record's that has them."""
    for entry in registry or ():
        if isinstance(entry, dict) and entry.get("name") == version:
            return entry
    for r in records:
        if isinstance(r, dict) and r.get("version") == version and isinstance(r.get("version_flags"), dict):
            return r["version_flags"]
    return None


def version_label(version: str, records: Iterable[dict] = (), registry=None) -> str:
    """'v2 (INT8 cache)': the version and a short description of its cache, from its flags (the
    registry's or the records'); the flags' description when they do not say; else the name."""
    flags = _flags(version, records, registry)
    desc = short_description(flags)
    if desc is None:
        d = get(flags, "description")
        if isinstance(d, str) and d:
            desc = d if len(d) <= 28 else d[:27] + "…"
    return f"{version} ({desc})" if desc else str(version)
