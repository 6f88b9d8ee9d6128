"""The engine's weight formats, as the C++ table defines them (``_core.weight_formats()``).

Python keeps no table of its own: the names, block layouts and bytes per weight come from here,
and :func:`matrix_bytes` gives a matrix's exact size in a format (``_core.weight_format_bytes``).
The PyTorch twins of the formats (:mod:`celerinfer.reference.weight_formats`) are written from
the formats' definitions instead, on purpose: they check the engine, so they must not share
its code.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from . import _core


@dataclass(frozen=True)
class WeightFormat:
    """One row of the C++ table. A block holds ``block_values`` values of ``value_bits`` bits
    and ``scale_bytes`` of scale; ``padded_blocks``: a row's last block is padded to a whole
    block; ``gguf_type``: the GGUF type of the same layout (e.g. Q8_0)."""

    name: str
    block_values: int
    value_bits: int
    scale_bytes: int
    padded_blocks: bool
    bits_per_weight: float
    gguf_type: str
    description: str

    @property
    def bytes_per_weight(self) -> float:
        """Bytes per weight value, scales included (int8: 1 + 2/32)."""
        return self.bits_per_weight / 8


_FIELDS = tuple(f.name for f in fields(WeightFormat))
#: name -> WeightFormat, in the C++ table's order (f32, bf16, int8)
WEIGHT_FORMATS: dict[str, WeightFormat] = {
    row["name"]: WeightFormat(**{k: row[k] for k in _FIELDS}) for row in _core.weight_formats()}
FORMAT_NAMES: tuple[str, ...] = tuple(WEIGHT_FORMATS)


def weight_format(name: str) -> WeightFormat:
    """The format called `name`; ValueError listing the known names."""
    try:
        return WEIGHT_FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown weight_dtype {name!r}; known: {', '.join(FORMAT_NAMES)}") from None


def matrix_bytes(name: str, rows: int, cols: int) -> int:
    """The exact bytes of a (rows, cols) matrix stored in format `name` (scales included)."""
    weight_format(name)
    return int(_core.weight_format_bytes(name, int(rows), int(cols)))


def format_of_gguf_type(gguf_type: str) -> WeightFormat | None:
    """The engine format with this GGUF type (case-insensitive: "q8_0" -> int8), or None."""
    return next((f for f in WEIGHT_FORMATS.values() if f.gguf_type.lower() == gguf_type.lower()), None)
