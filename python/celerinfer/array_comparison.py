"""How far one array (logits, say) is from another: the metric behind `celerinfer compare`
and the parity tests."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ArrayComparison:
    """How far `actual` is from `expected`.

    max_rel_err is norm-wise: max|actual - expected| / max|expected|, which stays meaningful
    where individual logits are near zero. ok: shapes match, everything is finite, and
    max_abs_err <= atol + rtol * max|expected|.
    """

    shape_actual: tuple
    shape_expected: tuple
    max_abs_err: float
    max_rel_err: float
    max_abs_expected: float
    rtol: float
    atol: float
    finite: bool

    @property
    def ok(self) -> bool:
        return (
            self.shape_actual == self.shape_expected
            and self.finite
            and self.max_abs_err <= self.atol + self.rtol * self.max_abs_expected
        )

    def __str__(self) -> str:
        if self.shape_actual != self.shape_expected:
            return f"shape mismatch: {self.shape_actual} vs {self.shape_expected}"
        verdict = "MATCH" if self.ok else "MISMATCH"
        return (
            f"{verdict}: max abs err {self.max_abs_err:.3e}, max rel err {self.max_rel_err:.3e} "
            f"(rtol {self.rtol:g}, atol {self.atol:g}{'' if self.finite else ', non-finite values'})"
        )


def compare_arrays(actual, expected, rtol: float = 1e-4, atol: float = 0.0) -> ArrayComparison:
    """Compare two arrays (see :class:`ArrayComparison` for the metric)."""
    a = np.asarray(actual, dtype=np.float64)
    b = np.asarray(expected, dtype=np.float64)
    if a.shape != b.shape:
        return ArrayComparison(a.shape, b.shape, float("inf"), float("inf"), 0.0, rtol, atol, True)
    finite = bool(np.isfinite(a).all() and np.isfinite(b).all())
    if a.size == 0:
        return ArrayComparison(a.shape, b.shape, 0.0, 0.0, 0.0, rtol, atol, finite)
    diff = np.abs(a - b)
    max_abs = float(np.nanmax(diff)) if finite else float("inf")
    scale = float(np.max(np.abs(b))) if finite else float("inf")
    max_rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
    return ArrayComparison(a.shape, b.shape, max_abs, max_rel, scale, rtol, atol, finite)
