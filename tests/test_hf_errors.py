"""Malformed Hugging Face folders and unsupported options: a clear FormatError / ValueError
naming the problem, never a crash. The folders are written by celerinfer (no transformers)."""

import json
import re

import numpy as np
import pytest

import celerinfer
from celerinfer import FormatError


@pytest.fixture
def folder(tmp_path):
    model = celerinfer.random_model(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                    vocab_size=100, max_position_embeddings=32, seed=2)
    model.save(tmp_path / "ckpt")
    return tmp_path / "ckpt"


def _edit_config(folder, **changes):
    config = json.loads((folder / "config.json").read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    (folder / "config.json").write_text(json.dumps(config))


CONFIG_EDITS = {
    "missing key": (dict(hidden_size=None), "missing key 'hidden_size'"),
    "unknown model_type": (dict(model_type="mamba", architectures=None), "model_type 'mamba' is not supported"),
    "unknown architecture": (dict(architectures=["LlamaForSequenceClassification"]),
                             "architecture 'LlamaForSequenceClassification' is not supported"),
    "rope scaling": (dict(rope_scaling={"rope_type": "yarn", "factor": 4.0}), "rope_scaling of type 'yarn'"),
    "rope parameters": (dict(rope_parameters={"rope_type": "llama3", "rope_theta": 5e5}), "rope_parameters of type"),
    "activation": (dict(hidden_act="gelu"), "hidden_act 'gelu' is not supported for llama"),
    "attention bias": (dict(attention_bias=True), "attention_bias = true"),
    "mlp bias": (dict(mlp_bias=True), "mlp_bias = true"),
    "moe": (dict(use_moe=True), "use_moe = true"),
    "head_dim": (dict(head_dim=16), "head_dim 16 differs"),
    "heads": (dict(num_key_value_heads=3), "must be a multiple of num_key_value_heads"),
    "wrong type": (dict(vocab_size="many"), "vocab_size: expected an integer"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_EDITS))
def test_bad_config_names_the_problem(folder, case):
    changes, message = CONFIG_EDITS[case]
    _edit_config(folder, **changes)
    with pytest.raises(FormatError, match=r"config\.json.*" + re.escape(message)):
        celerinfer.load(folder)


def test_bad_json(folder):
    (folder / "config.json").write_text('{"model_type": "llama", "hidden_size": 32,')
    with pytest.raises(FormatError, match="config.json"):
        celerinfer.load(folder)


def test_missing_config(folder):
    (folder / "config.json").unlink()
    with pytest.raises(FormatError, match="no config.json beside it"):
        celerinfer.load(folder)


def _rewrite_tensors(folder, edit):
    """Rewrites model.safetensors with `edit` applied to its {name: array} dict."""
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    tensors = safetensors_numpy.load_file(folder / "model.safetensors")
    edit(tensors)
    safetensors_numpy.save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})


def test_missing_tensor(folder):
    _rewrite_tensors(folder, lambda t: t.pop("model.layers.1.mlp.up_proj.weight"))
    with pytest.raises(FormatError, match="missing tensor 'model.layers.1.mlp.up_proj.weight'"):
        celerinfer.load(folder)


def test_misshapen_tensor(folder):
    _rewrite_tensors(folder, lambda t: t.update({"model.norm.weight": np.ones(31, np.float32)}))
    with pytest.raises(FormatError, match=r"tensor 'model.norm.weight' has shape \(31,\) but the config implies \(32,\)"):
        celerinfer.load(folder)


def test_unexpected_tensor(folder):
    _rewrite_tensors(folder, lambda t: t.update({"model.layers.0.self_attn.q_proj.bias": np.ones(32, np.float32)}))
    with pytest.raises(FormatError, match="unexpected tensor 'model.layers.0.self_attn.q_proj.bias'"):
        celerinfer.load(folder)


def test_integer_weight(folder):
    _rewrite_tensors(folder, lambda t: t.update({"model.norm.weight": np.ones(32, np.int32)}))
    with pytest.raises(FormatError, match="model.norm.weight.*not a floating-point type"):
        celerinfer.load(folder)


@pytest.mark.parametrize("keep", [4, 100, -16])
def test_truncated_safetensors(folder, keep):
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[:keep])
    with pytest.raises(FormatError, match="model.safetensors"):
        celerinfer.load(folder)


def test_untied_without_lm_head(folder):
    _edit_config(folder, tie_word_embeddings=True)
    celerinfer.load(folder)  # tied: a stored lm_head is ignored
    _rewrite_tensors(folder, lambda t: t.pop("lm_head.weight"))
    _edit_config(folder, tie_word_embeddings=False)
    with pytest.raises(FormatError, match="missing tensor 'lm_head.weight'"):
        celerinfer.load(folder)


def test_empty_folder_and_bad_index(tmp_path, folder):
    (tmp_path / "empty").mkdir()
    with pytest.raises(OSError, match="without model.safetensors"):
        celerinfer.load(tmp_path / "empty")
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"model.norm.weight": "../x"}}))
    with pytest.raises(FormatError, match="is not a file name in this folder"):
        celerinfer.load(folder)


def test_gpt2_options_refused(tmp_path):
    model = celerinfer.random_model(architecture="gpt2", hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                    vocab_size=50, max_position_embeddings=16, seed=1)
    model.save(tmp_path / "g")
    for changes, message in [(dict(scale_attn_weights=False), "scale_attn_weights = false"),
                             (dict(scale_attn_by_inverse_layer_idx=True), "scale_attn_by_inverse_layer_idx"),
                             (dict(activation_function="relu"), "hidden_act 'relu' is not supported for gpt2")]:
        _edit_config(tmp_path / "g", **changes)
        with pytest.raises(FormatError, match=message):
            celerinfer.load(tmp_path / "g")
        model.save(tmp_path / "g")
