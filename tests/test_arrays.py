"""celerinfer.save_npy / load_npy: .npy through numpy, never pickled, malformed files refused
with a FormatError naming the problem (the checks the C++ parser made before numpy took over)."""

import struct

import numpy as np
import pytest

import celerinfer


@pytest.mark.parametrize("dtype, shape", [("<f4", (2, 5, 3)), ("<f8", ()), ("<i4", (7,)), ("<i8", (2, 0)),
                                          ("|u1", (3, 1)), ("|b1", (4,)), ("|i1", (2, 2)), ("<f2", (3,)),
                                          (">f4", (2, 3)), (">i8", (5,))])
def test_round_trip_keeps_values_and_byte_order(tmp_path, dtype, shape):
    array = (np.arange(int(np.prod(shape)), dtype=np.int64) % 7).astype(dtype).reshape(shape)
    celerinfer.save_npy(tmp_path / "a.npy", array)
    back = celerinfer.load_npy(tmp_path / "a.npy")
    assert back.dtype == np.dtype(dtype) and back.shape == shape
    np.testing.assert_array_equal(back, array)
    assert np.array_equal(np.load(tmp_path / "a.npy"), array)  # numpy reads what we wrote


def test_big_endian_values_are_values_not_bytes(tmp_path):
    celerinfer.save_npy(tmp_path / "be.npy", np.arange(6, dtype=">f4"))
    assert celerinfer.load_npy(tmp_path / "be.npy").astype(np.float64).tolist() == [0, 1, 2, 3, 4, 5]


def test_foreign_files_version_2_and_fortran_order(tmp_path):
    ints = np.arange(6, dtype="<i4").reshape(3, 2)
    header = "{'shape': (3, 2), 'fortran_order': False, 'descr': '<i4'}"
    header += " " * ((64 - (12 + len(header) + 1) % 64) % 64) + "\n"
    (tmp_path / "v2.npy").write_bytes(b"\x93NUMPY\x02\x00" + struct.pack("<I", len(header)) + header.encode()
                                      + ints.tobytes())
    np.testing.assert_array_equal(celerinfer.load_npy(tmp_path / "v2.npy"), ints)
    fortran = np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3))
    np.save(tmp_path / "f.npy", fortran)
    np.testing.assert_array_equal(celerinfer.load_npy(tmp_path / "f.npy"), fortran)


def _npy(tmp_path, header: str, data: bytes) -> str:
    raw = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + data
    (tmp_path / "x.npy").write_bytes(raw)
    return str(tmp_path / "x.npy")


@pytest.mark.parametrize("header, data, message", [
    ("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", b"\0" * 12, "needs 8 bytes"),
    ("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", b"\0" * 4, "needs 8 bytes"),
    ("{'descr': '|O', 'fortran_order': False, 'shape': (2,), }", b"\0" * 16, "Python objects"),
    ("{'descr': '<f4', 'fortran_order': False}", b"\0" * 8, "bad .npy header"),
    ("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}", b"\0" * 8, "bad .npy header"),
    ("{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }", b"\0" * 8, "bad .npy header"),
    ("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999, 99999999999, 99999999999), }", b"\0" * 8,
     "needs"),
    ("__import__('os').system('echo pwned')", b"", "bad .npy header"),
])
def test_malformed_files_are_refused_naming_the_problem(tmp_path, header, data, message):
    with pytest.raises(celerinfer.FormatError, match=message):
        celerinfer.load_npy(_npy(tmp_path, header, data))


def test_not_numpy_truncated_and_missing(tmp_path):
    (tmp_path / "zip.npy").write_bytes(b"PK\x03\x04 not numpy")
    with pytest.raises(celerinfer.FormatError, match="bad magic"):
        celerinfer.load_npy(tmp_path / "zip.npy")
    (tmp_path / "short.npy").write_bytes(b"\x93NUMPY\x01\x00\xff\x00{")
    with pytest.raises(celerinfer.FormatError, match="bad .npy header"):
        celerinfer.load_npy(tmp_path / "short.npy")
    with pytest.raises(FileNotFoundError):
        celerinfer.load_npy(tmp_path / "none.npy")
    with pytest.raises(celerinfer.FormatError, match="not a regular file"):
        celerinfer.load_npy(tmp_path)


def test_object_arrays_are_not_saved(tmp_path):
    with pytest.raises(ValueError, match="pickle"):
        celerinfer.save_npy(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object))
    assert not (tmp_path / "o.npy").exists()
