"""Process-wide engine settings: the number of threads and the SIMD level the kernels use.

Both are the C++ engine's own settings; results are bitwise identical for any thread count.
"""

from __future__ import annotations

from . import _core
from ._core import get_num_threads, set_simd_level, simd_level, simd_levels
from .arguments import integer


def set_num_threads(n: int) -> None:
    """The engine's thread count for every engine of the process (>= 1; ValueError names a bad
    value, and a count the system cannot start)."""
    _core.set_num_threads(integer("threads", n, 1, 2**31))

__all__ = ["get_num_threads", "set_num_threads", "set_simd_level", "simd_level", "simd_levels"]
