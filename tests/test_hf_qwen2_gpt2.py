"""Qwen2 and GPT-2: the reference (celerinfer.reference) and the C++ engine against
transformers (logits rel err <= 1e-4 in fp32, greedy tokens identical), every KV-cache version
and weight format of the engine against the reference's cache path, load / save round trips,
random models and presets."""

import json

import numpy as np
import pytest

import celerinfer
from conftest import assert_matches_twin, fitting_version, max_rel_err
from hf_helpers import gpt2_config, hf_greedy, hf_logits, hf_model, load_hf, qwen2_config, save

reference = pytest.importorskip("celerinfer.reference")
import torch  # noqa: E402  (celerinfer.reference needs it)

CASES = {
    "qwen2": (qwen2_config, {}),
    "qwen2-tied-mha": (qwen2_config, dict(tie_word_embeddings=True, num_key_value_heads=4)),
    "gpt2": (gpt2_config, {}),
    "gpt2-erf-gelu-untied": (gpt2_config, dict(activation_function="gelu", tie_word_embeddings=False)),
}


def _checkpoint(tmp_path, case):
    make, overrides = CASES[case]
    hf = hf_model(make(**overrides), seed=len(case))
    return hf, save(hf, tmp_path / case)


@pytest.mark.parametrize("case", sorted(CASES))
def test_reference_matches_transformers(tmp_path, rng, case):
    hf, folder = _checkpoint(tmp_path, case)
    model = celerinfer.load(folder)
    assert model.config.architecture == case.split("-")[0]
    ids = rng.integers(0, 300, size=(2, 12))
    assert max_rel_err(reference.logits(model, ids), hf_logits(hf, ids)) <= 1e-4


@pytest.mark.parametrize("case", sorted(CASES))
def test_round_trip_through_a_folder(tmp_path, rng, case):
    hf, folder = _checkpoint(tmp_path, case)
    model = celerinfer.load(folder)
    model.save(tmp_path / "again")
    config = json.loads((tmp_path / "again" / "config.json").read_text())
    assert config["model_type"] == model.config.architecture
    back = load_hf(tmp_path / "again")
    ids = rng.integers(0, 300, size=(1, 9))
    np.testing.assert_array_equal(hf_logits(back, ids), hf_logits(hf, ids))
    assert celerinfer.load(tmp_path / "again").config == model.config


@pytest.mark.parametrize("architecture", ["qwen2", "gpt2"])
def test_random_models_save_load_and_run_in_transformers(tmp_path, rng, architecture):
    model = celerinfer.random_model(architecture=architecture, hidden_size=32, num_hidden_layers=2,
                                    num_attention_heads=4, vocab_size=300, max_position_embeddings=64, seed=1)
    assert sum(v.size for v in model.state_dict().values()) == model.config.num_parameters
    model.save(tmp_path / "m.safetensors")
    again = celerinfer.load(tmp_path / "m.safetensors")
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(again.state_dict()[name], value)
    model.save(tmp_path / "folder")
    ids = rng.integers(0, 300, size=(2, 8))
    assert max_rel_err(reference.logits(model, ids), hf_logits(load_hf(tmp_path / "folder"), ids)) <= 1e-4
    assert max_rel_err(model.forward(ids), reference.logits(model, ids)) <= 1e-4
    with pytest.raises(ValueError, match="seed JSON format holds llama models only"):
        model.save(tmp_path / "m.json")


def test_gpt2_presets():
    sizes = {"gpt2": 124_439_808, "gpt2-medium": 354_823_168, "gpt2-large": 774_030_080, "gpt2-xl": 1_557_611_200}
    assert {name: celerinfer.preset_config(name).num_parameters for name in sizes} == sizes
    with pytest.raises(ValueError, match="unknown model preset"):
        celerinfer.preset_config("gpt5")


@pytest.mark.parametrize("case", sorted(CASES))
def test_engine_matches_transformers(tmp_path, rng, case):
    hf, folder = _checkpoint(tmp_path, case)
    ids = rng.integers(0, 300, size=(2, 12))
    assert max_rel_err(celerinfer.Engine(celerinfer.load(folder)).forward(ids), hf_logits(hf, ids)) <= 1e-4
    prompt = ids[:1, :5]
    gen = celerinfer.Engine(celerinfer.load(folder), "v1").generate(prompt, 10)
    np.testing.assert_array_equal(gen.tokens, hf_greedy(hf, prompt, 10))


@pytest.mark.parametrize("weight_dtype", celerinfer.WEIGHT_DTYPES)
@pytest.mark.parametrize("architecture", ["qwen2", "gpt2"])
def test_every_version_runs_the_architecture(rng, architecture, weight_dtype):
    """The engine's step logits of every version against the reference's cache path of the
    same version (on the weights as the format rounds them), fed the engine's tokens. INT8
    caches may flip a rounding: 2e-4 as in test_generation_parity.py; others 1e-4."""
    from celerinfer.reference import weight_formats

    model = celerinfer.random_model(architecture=architecture, hidden_size=40, num_hidden_layers=2,
                                    num_attention_heads=4, vocab_size=90, max_position_embeddings=64, seed=2)
    ref = weight_formats.reference_model(model, weight_dtype)
    ids = rng.integers(0, 90, size=(2, 7))
    for flags in celerinfer.versions():
        version = fitting_version(flags["name"], 64)
        gen = celerinfer.Engine(model, version, weight_dtype=weight_dtype).generate(ids, 6, return_logits=True)
        with torch.no_grad():
            want = ref.score(torch.from_numpy(ids), torch.from_numpy(gen.new_tokens[:, :-1].copy()), version).numpy()
        tol = 2e-4 if flags["kv_dtype"] == "int8" else 1e-4
        assert_matches_twin(gen.logits[:, : want.shape[1]], want, weight_dtype, tol)
