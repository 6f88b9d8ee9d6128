"""Process-wide engine settings: the number of threads and the SIMD level the kernels use.

Both are the C++ engine's own settings; results are bitwise identical for any thread count.
"""

from __future__ import annotations

from ._core import get_num_threads, set_num_threads, set_simd_level, simd_level, simd_levels

__all__ = ["get_num_threads", "set_num_threads", "set_simd_level", "simd_level", "simd_levels"]
