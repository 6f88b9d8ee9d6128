"""Bad input gets a clear Python exception naming the problem, never a crash: every case here
runs in this process, so a segfault or abort would take the whole test run down."""

import base64
import json
import struct

import numpy as np
import pytest

import celerinfer
from celerinfer import FormatError, ModelConfig

SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, vocab_size=50,
             max_position_embeddings=16)


@pytest.fixture(scope="module")
def model():
    return celerinfer.random_model(ModelConfig(**SMALL), seed=11)


@pytest.fixture(scope="module")
def seed_doc(tmp_path_factory, model):
    path = tmp_path_factory.mktemp("good") / "m.json"
    model.save(path)
    return json.loads(path.read_text())


def _write_json(tmp_path, doc):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    return path


def _edited(doc, edit):
    doc = json.loads(json.dumps(doc))  # deep copy
    edit(doc)
    return doc


# ---- seed JSON ---------------------------------------------------------------------------

def test_truncated_json(tmp_path, seed_doc):
    text = json.dumps(seed_doc)
    path = tmp_path / "cut.json"
    path.write_text(text[: len(text) // 2])
    with pytest.raises(FormatError, match="JSON"):
        celerinfer.load(path)


def test_not_json_at_all(tmp_path):
    path = tmp_path / "x.json"
    path.write_bytes(b"\x00\x01garbage")
    with pytest.raises(FormatError):
        celerinfer.load(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.json"
    path.write_bytes(b"")
    with pytest.raises(FormatError):
        celerinfer.load(path)


BAD_EDITS = {
    "invalid base64": (lambda d: d["weights"]["final_rms"].update(data="!!!!" + d["weights"]["final_rms"]["data"][4:]),
                       "base64"),
    "base64 length": (lambda d: d["weights"]["final_rms"].update(data=d["weights"]["final_rms"]["data"][:-4]),
                      "final_rms"),
    "shape vs data length": (lambda d: d["weights"]["layers"][0]["wq"].update(shape=[32, 31]), "wq"),
    "shape vs config": (lambda d: d["weights"]["layers"][1].update(
        wq=d["weights"]["layers"][1]["wk"]), r"layers\[1\]\.wq"),
    "unknown dtype": (lambda d: d["weights"]["tok_embedding"].update(dtype="complex64"), "complex64"),
    "dtype vs data length": (lambda d: d["weights"]["tok_embedding"].update(dtype="float64"), "tok_embedding"),
    "negative dim": (lambda d: d["weights"]["final_rms"].update(shape=[-32]), "final_rms"),
    "missing tensor": (lambda d: d["weights"]["layers"][1].pop("w_up"), "w_up"),
    "missing lm_head": (lambda d: d["weights"].pop("lm_head"), "lm_head"),
    "missing layer": (lambda d: d["weights"]["layers"].pop(), "layers"),
    "missing config key": (lambda d: d["config"].pop("hidden_size"), "hidden_size"),
    "config inconsistent with itself": (lambda d: d["config"].update(num_key_value_heads=3), "num_key_value_heads"),
    "config inconsistent with weights": (lambda d: d["config"].update(vocab_size=51), "tok_embedding"),
    "head_dim in meta": (lambda d: d["meta"].update(head_dim=4), "head_dim"),
    "non-integer size": (lambda d: d["config"].update(hidden_size=32.5), "hidden_size"),
    "string size": (lambda d: d["config"].update(num_hidden_layers="two"), "num_hidden_layers"),
    "shape not a list": (lambda d: d["weights"]["final_rms"].update(shape=32), "shape"),
    "absurd shape": (lambda d: d["weights"]["final_rms"].update(shape=[1 << 40, 1 << 20]), "final_rms"),
}


@pytest.mark.parametrize("case", sorted(BAD_EDITS))
def test_malformed_seed_json_names_the_problem(tmp_path, seed_doc, case):
    edit, expected_in_message = BAD_EDITS[case]
    path = _write_json(tmp_path, _edited(seed_doc, edit))
    with pytest.raises(FormatError, match=expected_in_message):
        celerinfer.load(path)


def test_missing_file_and_unknown_suffix(tmp_path):
    with pytest.raises(FileNotFoundError):
        celerinfer.load(tmp_path / "nope.json")
    other = tmp_path / "model.bin"
    other.write_bytes(b"1234")
    with pytest.raises(ValueError, match="suffix|format"):
        celerinfer.load(other)


# ---- safetensors --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def st_bytes(tmp_path_factory, model):
    path = tmp_path_factory.mktemp("good") / "m.safetensors"
    model.save(path)
    return path.read_bytes()


def _split(raw):
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def _join(header, data):
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def _edit_header(raw, edit):
    header, data = _split(raw)
    edit(header)
    return _join(header, data)


NAME = "model.layers.0.self_attn.q_proj.weight"
BAD_SAFETENSORS = {
    "header length beyond file": lambda raw: struct.pack("<Q", len(raw) * 10) + raw[8:],
    "header length overflow": lambda raw: struct.pack("<Q", (1 << 64) - 1) + raw[8:],
    "shorter than the length field": lambda raw: raw[:5],
    "truncated data": lambda raw: raw[: len(raw) - 100],
    "header not json": lambda raw: struct.pack("<Q", 10) + b"{not json}" + raw[18:],
    "offsets past the end": lambda raw: _edit_header(raw, lambda h: h[NAME].update(data_offsets=[0, 1 << 40])),
    "offsets reversed": lambda raw: _edit_header(raw, lambda h: h[NAME].update(
        data_offsets=h[NAME]["data_offsets"][::-1])),
    "size vs shape": lambda raw: _edit_header(raw, lambda h: h[NAME].update(shape=[32, 33])),
    "shape overflow": lambda raw: _edit_header(raw, lambda h: h[NAME].update(shape=[1 << 62, 1 << 62])),
    "overlapping tensors": lambda raw: _edit_header(raw, lambda h: h["model.layers.0.self_attn.k_proj.weight"].update(
        data_offsets=[h[NAME]["data_offsets"][0], h[NAME]["data_offsets"][0] + 16 * 32 * 4])),
    "unknown dtype": lambda raw: _edit_header(raw, lambda h: h[NAME].update(dtype="F8_E4M3X")),
    "missing tensor": lambda raw: _edit_header(raw, lambda h: h.pop("model.norm.weight")),
    "metadata not strings": lambda raw: _edit_header(raw, lambda h: h["__metadata__"].update(x=1)),
    "no config anywhere": lambda raw: _edit_header(raw, lambda h: h["__metadata__"].pop("celerinfer.config")),
}


@pytest.mark.parametrize("case", sorted(BAD_SAFETENSORS))
def test_malformed_safetensors_raises_format_error(tmp_path, st_bytes, case):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(BAD_SAFETENSORS[case](st_bytes))
    with pytest.raises(FormatError):
        celerinfer.load(path)


def test_safetensors_error_names_the_tensor(tmp_path, st_bytes):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(_edit_header(st_bytes, lambda h: h[NAME].update(shape=[32, 33])))
    with pytest.raises(FormatError, match="q_proj"):
        celerinfer.load(path)


# ---- forward inputs -----------------------------------------------------------------------

@pytest.mark.parametrize(
    "ids, message",
    [
        (np.array([[1, 2, 50]]), "out of range"),
        (np.array([[-1, 2]]), "out of range"),
        (np.zeros((1, 0), dtype=np.int64), "empty"),
        (np.zeros((0, 3), dtype=np.int64), "empty"),
        (np.zeros((1, 17), dtype=np.int64), "max_position_embeddings"),
        (np.zeros((1, 2, 3), dtype=np.int64), "2-D"),
    ],
    ids=["too-large-id", "negative-id", "empty-seq", "empty-batch", "too-long", "3-d"],
)
def test_bad_token_ids(model, ids, message):
    with pytest.raises(ValueError, match=message):
        model.forward(ids)


def test_float_ids_and_bad_masks(model):
    with pytest.raises(TypeError, match="integers"):
        model.forward(np.array([[1.5, 2.0]]))
    with pytest.raises(ValueError, match="attention_mask has shape"):
        model.forward(np.array([[1, 2, 3]]), np.ones((1, 2), dtype=np.int32))
    with pytest.raises(ValueError, match="only 0 and 1"):
        model.forward(np.array([[1, 2]]), np.array([[1, 2]]))


def test_nan_weight_is_named(tmp_path, seed_doc):
    def poison(d):
        t = d["weights"]["layers"][1]["w_down"]
        arr = np.frombuffer(base64.b64decode(t["data"]), dtype=np.float32).copy()
        arr[7] = np.nan
        t["data"] = base64.b64encode(arr.tobytes()).decode()

    model = celerinfer.load(_write_json(tmp_path, _edited(seed_doc, poison)))
    with pytest.raises(ValueError, match=r"model\.layers\.1\.mlp\.down_proj\.weight.*NaN"):
        model.forward(np.array([[1, 2, 3]]))


# ---- configs ------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "change, message",
    [
        ({"hidden_size": 30}, "divisible"),
        ({"num_key_value_heads": 3}, "multiple of num_key_value_heads"),
        ({"hidden_size": 0}, "hidden_size"),
        ({"vocab_size": -5}, "vocab_size"),
        ({"rms_norm_eps": 0.0}, "rms_norm_eps"),
        ({"rope_theta": float("nan")}, "rope_theta"),
        ({"hidden_size": 36, "num_attention_heads": 4, "num_key_value_heads": 4}, "even"),
        ({"architecture": "rwkv"}, "not supported"),
    ],
)
def test_impossible_configs(change, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**{**SMALL, **change})


def test_absurd_size_is_refused_before_allocating():
    huge = ModelConfig(hidden_size=65536, num_hidden_layers=512, num_attention_heads=512, num_key_value_heads=512,
                       vocab_size=1 << 20, max_position_embeddings=128)
    with pytest.raises(ValueError, match="GiB"):
        celerinfer.random_model(huge)
