"""Arrays on disk (.npy, never pickled) and how two logits arrays are compared."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from . import _core
from .fileio import atomic_file

#: Largest .npy header read (numpy's own default limit): a header is a short Python literal.
MAX_HEADER_BYTES = 10_000


def save_npy(path: str | os.PathLike, array) -> None:
    """Write an array as .npy through numpy (byte order and dtype as the array has them),
    atomically: a crash never leaves a truncated file. Object arrays are refused (they would
    need pickle)."""
    array = np.asarray(array)
    if array.dtype.hasobject:
        raise ValueError(f"{path}: refusing to save an array of Python objects (.npy would need pickle)")
    with atomic_file(path, "wb") as f:
        np.lib.format.write_array(f, array, allow_pickle=False)


def load_npy(path: str | os.PathLike) -> np.ndarray:
    """Read a .npy file through numpy, never unpickling. The header is checked before any data
    is read (magic, version, dtype, shape) and the data's size against the file's; a malformed
    or pickled file raises celerinfer.FormatError naming the problem."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path}")
    if not os.path.isfile(path):
        raise _core.FormatError(f"{path}: not a regular file")
    fmt = np.lib.format
    with open(path, "rb") as f:
        try:
            version = fmt.read_magic(f)
        except ValueError as exc:
            raise _core.FormatError(f"{path}: not a .npy file (bad magic: {exc})") from None
        read_header = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}.get(version)
        if read_header is None:
            raise _core.FormatError(f"{path}: unsupported .npy version {version[0]}.{version[1]}")
        try:
            shape, fortran_order, dtype = read_header(f, max_header_size=MAX_HEADER_BYTES)
        except (ValueError, SyntaxError, TypeError, EOFError) as exc:
            raise _core.FormatError(f"{path}: bad .npy header ({exc})") from None
        if dtype.hasobject:
            raise _core.FormatError(f"{path}: refused: dtype {dtype.descr} holds Python objects (needs pickle)")
        if any(int(dim) < 0 for dim in shape):
            raise _core.FormatError(f"{path}: bad .npy header (negative dimension in shape {tuple(shape)})")
        count = 1
        for dim in shape:
            count *= int(dim)
        need, have = count * dtype.itemsize, os.fstat(f.fileno()).st_size - f.tell()
        if need != have:
            raise _core.FormatError(f"{path}: the data of shape {tuple(shape)} {dtype} needs {need} bytes, "
                                    f"the file holds {have} after its header")
        data = np.frombuffer(f.read(need), dtype=dtype, count=count)
    return data.reshape(shape, order="F" if fortran_order else "C").copy()


@dataclass(frozen=True)
class Comparison:
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


def compare_arrays(actual, expected, rtol: float = 1e-4, atol: float = 0.0) -> Comparison:
    """Compare two arrays (see :class:`Comparison` for the metric)."""
    a = np.asarray(actual, dtype=np.float64)
    b = np.asarray(expected, dtype=np.float64)
    if a.shape != b.shape:
        return Comparison(a.shape, b.shape, float("inf"), float("inf"), 0.0, rtol, atol, True)
    finite = bool(np.isfinite(a).all() and np.isfinite(b).all())
    if a.size == 0:
        return Comparison(a.shape, b.shape, 0.0, 0.0, 0.0, rtol, atol, finite)
    diff = np.abs(a - b)
    max_abs = float(np.nanmax(diff)) if finite else float("inf")
    scale = float(np.max(np.abs(b))) if finite else float("inf")
    max_rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
    return Comparison(a.shape, b.shape, max_abs, max_rel, scale, rtol, atol, finite)
