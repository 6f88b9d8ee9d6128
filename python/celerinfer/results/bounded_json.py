"""JSON text parsed with a nesting bound: the package's one way to read JSON a user or a damaged
file may have written (result logs, the run mode's metrics file, calibration caches, inline
--config). Python's decoder recurses once per level, so a line of 100,000 ``[`` raises
RecursionError (not a ValueError) and deep values break every recursive reader after it;
here both are a ValueError that says so."""

from __future__ import annotations

import json

#: deeper than any record, config or cache the package writes (records nest about 6 levels)
MAX_DEPTH = 64


def depth(value) -> int:
    """How many containers deep `value` nests (a scalar: 0), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


def loads(text: str | bytes, max_depth: int = MAX_DEPTH):
    """json.loads, refusing (ValueError) text that nests deeper than max_depth levels."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise ValueError(f"JSON nested deeper than {max_depth} levels") from None
    if depth(value) > max_depth:
        raise ValueError(f"JSON nested deeper than {max_depth} levels")
    return value
