"""Model files round-trip exactly: random model -> JSON / safetensors -> load -> same logits,
and the same seed gives identical bytes twice."""

import hashlib
import json

import numpy as np
import pytest

import celerinfer
from celerinfer import ModelConfig
from conftest import max_rel_err

CONFIGS = {
    "gqa": ModelConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=8, num_key_value_heads=2,
                       vocab_size=131, max_position_embeddings=64),
    "tied-mha": ModelConfig(hidden_size=48, num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=4,
                            vocab_size=97, max_position_embeddings=32, tie_word_embeddings=True,
                            rope_theta=10000.0, rms_norm_eps=1e-6, intermediate_size=100),
}


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("suffix", [".json", ".safetensors"])
def test_save_load_gives_identical_weights_and_logits(tmp_path, rng, name, suffix):
    config = CONFIGS[name]
    model = celerinfer.random_model(config, seed=int(rng.integers(1 << 31)))
    ids = rng.integers(0, config.vocab_size, size=(2, 7))
    mask = np.ones_like(ids)
    model.set_inputs(ids, mask)
    path = tmp_path / f"model{suffix}"
    model.save(path)
    loaded = celerinfer.load(path)

    assert loaded.config == config
    original, restored = model.state_dict(), loaded.state_dict()
    assert original.keys() == restored.keys()
    for key in original:
        np.testing.assert_array_equal(restored[key], original[key], err_msg=key)
    np.testing.assert_array_equal(loaded.inputs["input_ids"], ids)
    np.testing.assert_array_equal(loaded.inputs["attention_mask"], mask)
    np.testing.assert_array_equal(loaded.forward(ids, mask), model.forward(ids, mask))


def test_json_then_safetensors_chain_keeps_logits(tmp_path, rng):
    model = celerinfer.random_model(CONFIGS["gqa"], seed=3)
    model.save(tmp_path / "a.json")
    celerinfer.load(tmp_path / "a.json").save(tmp_path / "b.safetensors")
    final = celerinfer.load(tmp_path / "b.safetensors")
    ids = rng.integers(0, 131, size=(1, 9))
    np.testing.assert_array_equal(final.forward(ids), model.forward(ids))


@pytest.mark.parametrize("suffix", [".json", ".safetensors"])
def test_same_seed_same_bytes_different_seed_different_bytes(tmp_path, suffix):
    config = CONFIGS["gqa"]
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        celerinfer.random_model(config, seed=seed).save(tmp_path / f"{name}{suffix}")
    assert _digest(tmp_path / f"a{suffix}") == _digest(tmp_path / f"b{suffix}")
    assert _digest(tmp_path / f"a{suffix}") != _digest(tmp_path / f"c{suffix}")


def test_seed_json_has_the_seed_format_keys(tmp_path):
    model = celerinfer.random_model(CONFIGS["gqa"], seed=1)
    model.set_inputs(np.zeros((2, 5), dtype=np.int32))
    model.save(tmp_path / "m.json")
    doc = json.loads((tmp_path / "m.json").read_text())
    assert set(doc) >= {"meta", "config", "inputs", "rope", "weights"}
    assert doc["meta"] == {"B": 2, "S": 5, "head_dim": 8}
    assert doc["config"]["intermediate_size"] == 256  # the seed rule for hidden 64
    layer = doc["weights"]["layers"][0]
    assert set(layer) == {"rms_attn", "rms_ffn", "wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down"}
    assert layer["wk"]["shape"] == [16, 64]  # (kvh * head_dim, hidden): torch.nn.Linear's (out, in)
    assert doc["rope"]["cos"]["shape"] == [64, 8]
    assert set(doc["weights"]["tok_embedding"]) >= {"data", "shape", "dtype", "preview"}


def test_file_from_another_writer_loads(tmp_path, rng):
    """A seed JSON written by plain Python (as the seed's generator does) loads and runs; its
    RoPE tables are the ones used."""
    import base64

    def enc(a):
        a = np.ascontiguousarray(a)
        return {"data": base64.b64encode(a.tobytes()).decode(), "shape": list(a.shape),
                "dtype": str(a.dtype), "preview": a.ravel()[:4].tolist()}

    h, heads, kvh, vocab, inter, maxpos, d = 32, 4, 2, 50, 64, 16, 8
    w = lambda *shape: rng.standard_normal(shape).astype(np.float32) * 0.2  # noqa: E731
    layer = {"rms_attn": np.ones(h, np.float32), "rms_ffn": np.ones(h, np.float32), "wq": w(h, h),
             "wk": w(kvh * d, h), "wv": w(kvh * d, h), "wo": w(h, h), "w_gate": w(inter, h),
             "w_up": w(inter, h), "w_down": w(h, inter)}
    cos = np.ones((maxpos, d), np.float32)  # identity rotation: RoPE switched off on purpose
    sin = np.zeros((maxpos, d), np.float32)
    doc = {
        "meta": {"B": 1, "S": 4, "head_dim": d},
        "config": {"hidden_size": h, "num_hidden_layers": 1, "num_attention_heads": heads,
                   "num_key_value_heads": kvh, "vocab_size": vocab, "max_position_embeddings": maxpos,
                   "intermediate_size": inter, "rms_norm_eps": 1e-5, "rope_theta": 1e6},
        "inputs": {"input_ids": enc(np.array([[1, 2, 3, 4]], np.int32)),
                   "attention_mask": enc(np.ones((1, 4), np.int32))},
        "rope": {"cos": enc(cos), "sin": enc(sin)},
        "weights": {"tok_embedding": enc(w(vocab, h)), "final_rms": enc(np.ones(h, np.float32)),
                    "lm_head": enc(w(vocab, h)), "layers": [{k: enc(v) for k, v in layer.items()}]},
    }
    path = tmp_path / "foreign.json"
    path.write_text(json.dumps(doc))
    model = celerinfer.load(path)
    cos_loaded, sin_loaded = model.rope
    np.testing.assert_array_equal(cos_loaded, cos)
    np.testing.assert_array_equal(sin_loaded, sin)
    ids = model.inputs["input_ids"]
    logits = model.forward(ids)
    # The identity rotation removes all position information, so attention at the last
    # position cannot tell the order of the tokens before it: permuting them changes nothing.
    permuted = model.forward(ids[:, [2, 0, 1, 3]])
    assert max_rel_err(permuted[0, 3], logits[0, 3]) < 1e-5
    # With RoPE computed from rope_theta (no tables in the file), order matters again.
    del doc["rope"]
    path.write_text(json.dumps(doc))
    computed = celerinfer.load(path)
    assert max_rel_err(computed.forward(ids[:, [2, 0, 1, 3]])[0, 3], computed.forward(ids)[0, 3]) > 1e-3
