"""Hugging Face Llama checkpoints: transformers -> celerinfer (single file and shards, GQA / MHA,
tied / untied), engine logits and greedy tokens against transformers, and celerinfer ->
transformers. fp32 throughout: max relative error <= 1e-4."""

import json

import numpy as np
import pytest

import celerinfer
from conftest import max_rel_err
from hf_helpers import hf_greedy, hf_logits, hf_model, llama_config, load_hf, save

CASES = {
    "gqa": dict(num_key_value_heads=2),
    "mha": dict(num_key_value_heads=4),
    "tied": dict(num_key_value_heads=2, tie_word_embeddings=True),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_engine_matches_transformers(tmp_path, rng, case):
    hf = hf_model(llama_config(**CASES[case]), seed=len(case))
    folder = save(hf, tmp_path / "ckpt")
    model = celerinfer.load(folder)
    assert model.config.tie_word_embeddings == CASES[case].get("tie_word_embeddings", False)
    ids = rng.integers(0, 300, size=(2, 12))
    want = hf_logits(hf, ids)
    assert max_rel_err(celerinfer.Engine(model).forward(ids), want) <= 1e-4
    prompt = ids[:1, :5]
    gen = celerinfer.Engine(model, "v1").generate(prompt, 10)
    np.testing.assert_array_equal(gen.tokens, hf_greedy(hf, prompt, 10))


def test_sharded_checkpoint(tmp_path, rng):
    hf = hf_model(llama_config(), seed=3)
    folder = save(hf, tmp_path / "sharded", max_shard_size="20KB")
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1, "the test needs several shards"
    ids = rng.integers(0, 300, size=(1, 9))
    want = hf_logits(hf, ids)
    for path in (folder, folder / "model.safetensors.index.json"):
        assert max_rel_err(celerinfer.Engine(celerinfer.load(path)).forward(ids), want) <= 1e-4


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_files_convert_to_float32(tmp_path, rng, dtype):
    import torch

    hf = hf_model(llama_config(), seed=4).to(getattr(torch, dtype))
    folder = save(hf, tmp_path / dtype)
    model = celerinfer.load(folder)
    sd = model.state_dict()
    assert all(v.dtype == np.float32 for v in sd.values())
    want = hf.model.embed_tokens.weight.detach().float().numpy()
    np.testing.assert_array_equal(sd["model.embed_tokens.weight"], want)


@pytest.mark.parametrize("tied", [False, True])
def test_saved_folder_loads_in_transformers(tmp_path, rng, tied):
    model = celerinfer.random_model(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                    vocab_size=300, max_position_embeddings=64, tie_word_embeddings=tied, seed=5)
    model.save(tmp_path / "out")
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["model_type"] == "llama"
    assert config["torch_dtype"] == "float32"
    hf = load_hf(tmp_path / "out")
    ids = rng.integers(0, 300, size=(2, 10))
    assert max_rel_err(hf_logits(hf, ids), celerinfer.Engine(model).forward(ids)) <= 1e-4
    back = celerinfer.load(tmp_path / "out")
    assert back.config == model.config
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[name], value)


def test_seed_model_with_its_rope_tables_saves_to_a_folder(tmp_path):
    model = celerinfer.random_model(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, vocab_size=50,
                                    max_position_embeddings=16)
    model.save(tmp_path / "seed.json")  # the seed format carries the RoPE tables
    seeded = celerinfer.load(tmp_path / "seed.json")
    assert seeded.rope is not None
    seeded.save(tmp_path / "folder")  # they equal the computed ones: nothing is lost
    ids = np.arange(10)[None]
    np.testing.assert_allclose(celerinfer.load(tmp_path / "folder").forward(ids), seeded.forward(ids), rtol=0, atol=1e-5)


def test_sliding_window_caps_the_positions(tmp_path):
    hf = hf_model(llama_config(), seed=6)
    folder = save(hf, tmp_path / "ckpt")
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="mistral", architectures=["MistralForCausalLM"], sliding_window=24)
    (folder / "config.json").write_text(json.dumps(config))
    assert celerinfer.load(folder).config.max_position_embeddings == 24
