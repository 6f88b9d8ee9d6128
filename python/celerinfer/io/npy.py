"""Arrays on disk as .npy, read and written through numpy, never pickled."""

from __future__ import annotations

import os

import numpy as np

from .._core import FormatError
from .atomic import atomic_file

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
        raise FormatError(f"{path}: not a regular file")
    fmt = np.lib.format
    with open(path, "rb") as f:
        try:
            version = fmt.read_magic(f)
        except ValueError as exc:
            raise FormatError(f"{path}: not a .npy file (bad magic: {exc})") from None
        read_header = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}.get(version)
        if read_header is None:
            raise FormatError(f"{path}: unsupported .npy version {version[0]}.{version[1]}")
        try:
            shape, fortran_order, dtype = read_header(f, max_header_size=MAX_HEADER_BYTES)
        except (ValueError, SyntaxError, TypeError, EOFError) as exc:
            raise FormatError(f"{path}: bad .npy header ({exc})") from None
        if dtype.hasobject:
            raise FormatError(f"{path}: refused: dtype {dtype.descr} holds Python objects (needs pickle)")
        if any(int(dim) < 0 for dim in shape):
            raise FormatError(f"{path}: bad .npy header (negative dimension in shape {tuple(shape)})")
        count = 1
        for dim in shape:
            count *= int(dim)
        need, have = count * dtype.itemsize, os.fstat(f.fileno()).st_size - f.tell()
        if need != have:
            raise FormatError(f"{path}: the data of shape {tuple(shape)} {dtype} needs {need} bytes, "
                                    f"the file holds {have} after its header")
        data = np.frombuffer(f.read(need), dtype=dtype, count=count)
    return data.reshape(shape, order="F" if fortran_order else "C").copy()
