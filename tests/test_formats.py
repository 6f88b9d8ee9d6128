"""One table of weight formats: Python reads the C++ table (celerinfer.formats) and derives
the names and bytes everywhere else from it."""

import pytest

import celerinfer
from celerinfer import _core, formats
from celerinfer.bench import backend_comparison, roofline


def test_the_table_is_the_cpp_table():
    rows = _core.weight_formats()
    assert list(formats.WEIGHT_FORMATS) == [r["name"] for r in rows] == list(_core.weight_dtypes())
    assert celerinfer.WEIGHT_DTYPES == formats.FORMAT_NAMES == tuple(_core.weight_dtypes())
    for row in rows:
        f = formats.weight_format(row["name"])
        assert (f.block_values, f.value_bits, f.scale_bytes, f.bits_per_weight, f.gguf_type) == (
            row["block_values"], row["value_bits"], row["scale_bytes"], row["bits_per_weight"], row["gguf_type"])
        assert f.bytes_per_weight == row["bits_per_weight"] / 8
    assert formats.weight_format("int8").bytes_per_weight == 1 + 2 / 32  # 32 values and an fp16 scale
    with pytest.raises(ValueError, match="unknown weight_dtype 'q4'; known: f32, bf16, int8"):
        formats.weight_format("q4")


def test_matrix_bytes_are_the_engines():
    assert formats.matrix_bytes("f32", 64, 96) == 64 * 96 * 4
    assert formats.matrix_bytes("bf16", 64, 96) == 64 * 96 * 2
    assert formats.matrix_bytes("int8", 64, 96) == 64 * (96 + 2 * 3)  # 3 blocks of 32 per row
    for name in formats.FORMAT_NAMES:
        assert formats.matrix_bytes(name, 64, 64) == _core.weight_format_bytes(name, 64, 64)


def test_the_roofline_and_the_comparison_derive_from_the_table():
    for name, f in formats.WEIGHT_FORMATS.items():
        assert roofline.weight_value_bytes(name) == f.bytes_per_weight
    # llama.cpp runs each format's GGUF type; bf16, which the export does not write, against f16
    assert backend_comparison.MATCHING_GGUF == {"f32": "f32", "bf16": "f16", "int8": "q8_0", "q4_0": "q4_0",
                                                "q4_1": "q4_1"}
    assert {w: backend_comparison.engine_format(w) for w in ("f32", "bf16", "int8", "f16", "q8_0", "q4_0", "q4_1")} == {
        "f32": "f32", "bf16": "bf16", "int8": "int8", "f16": "bf16", "q8_0": "int8", "q4_0": "q4_0", "q4_1": "q4_1"}
    assert {w: backend_comparison.format_class(w) for w in ("f32", "bf16", "f16", "int8", "q8_0", "q4_0", "q4_1")} == {
        "f32": "f32", "bf16": "16-bit", "f16": "16-bit", "int8": "8-bit", "q8_0": "8-bit", "q4_0": "4-bit",
        "q4_1": "4-bit"}
    assert formats.format_of_gguf_type("Q8_0").name == "int8" and formats.format_of_gguf_type("q4_k") is None
    with pytest.raises(ValueError, match="unknown weight format 'q4_k'"):
        backend_comparison.engine_format("q4_k")
