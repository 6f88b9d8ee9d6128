"""Text shown on one line: a terminal line of the CLI, or a cell of a CSV view."""

from __future__ import annotations

import unicodedata


def printable(text: str, limit: int | None = None) -> str:
    """Text safe for one terminal line: control and other non-printable characters escaped
    (newline as \\n), cut to `limit` characters with '...'."""
    out = []
    for ch in text:
        if unicodedata.category(ch)[0] == "C" or ch in "\u2028\u2029":
            out.append({"\n": "\\n", "\t": "\\t", "\r": "\\r"}.get(ch) or
                       (f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}"))
        else:
            out.append(ch)
    result = "".join(out)
    if limit is not None and len(result) > limit:
        result = result[: max(limit - 3, 0)] + "..."
    return result
