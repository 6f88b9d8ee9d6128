"""PyTorch checkpoints (best.pt): state_dicts nested and prefixed as trainers save them, read
only with torch.load(weights_only=True); a pickle that needs more is refused."""

import collections
import json

import numpy as np
import pytest

import celerinfer
from conftest import max_rel_err

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def model():
    return celerinfer.random_model(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                   vocab_size=100, max_position_embeddings=32, seed=7)


def _state(model, dtype=torch.float32, prefix=""):
    return {prefix + k: torch.from_numpy(np.array(v)).to(dtype) for k, v in model.state_dict().items()}


def _config_dict(model):
    return json.loads(celerinfer._core.hf_config_json(model.config))


LAYOUTS = {
    "plain": lambda sd: sd,
    "nested under model": lambda sd: {"model": sd, "optimizer": {}, "step": 10},
    "nested under state_dict": lambda sd: {"state_dict": {"model": sd}, "epoch": 3},
    "torch.compile prefix": lambda sd: {"model": {"_orig_mod." + k: v for k, v in sd.items()}},
    "wrapper model. prefix": lambda sd: {"model." + k: v for k, v in sd.items()},
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_state_dict_layouts(tmp_path, model, layout):
    torch.save(LAYOUTS[layout](_state(model)), tmp_path / "best.pt")
    loaded = celerinfer.load_checkpoint(tmp_path / "best.pt", model.config)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[name], value)


def test_bfloat16_and_config_sources(tmp_path, model):
    torch.save({"model": _state(model, torch.bfloat16)}, tmp_path / "best.pt")
    ids = np.arange(12)[None]
    want = model.forward(ids)
    (tmp_path / "cfg.json").write_text(json.dumps(_config_dict(model)))
    for config in (model.config, _config_dict(model), tmp_path / "cfg.json", str(tmp_path / "cfg.json")):
        loaded = celerinfer.load_checkpoint(tmp_path / "best.pt", config)
        assert max_rel_err(loaded.forward(ids), want) < 2e-2  # bfloat16 weights
    with pytest.raises(ValueError, match="no model config"):
        celerinfer.load_checkpoint(tmp_path / "best.pt")
    (tmp_path / "config.json").write_text(json.dumps(_config_dict(model)))  # beside it: found by load()
    assert celerinfer.load(tmp_path / "best.pt").config == model.config


def test_cli_run_with_a_checkpoint(tmp_path, model, capsys):
    from celerinfer.cli import main

    torch.save({"model": _state(model)}, tmp_path / "best.pt")
    config = json.dumps(_config_dict(model))
    assert main(["run", "--checkpoint", str(tmp_path / "best.pt"), "--config", config, "--prompt-ids", "1", "2",
                 "--max-new-tokens", "4", "--greedy"]) == 0
    engine = celerinfer.Engine(model)
    want = engine.generate([[1, 2]], 4).new_tokens[0]
    assert "Generated ids: " + " ".join(map(str, want)) in capsys.readouterr().out


def test_nanogpt_checkpoint_reads_as_gpt2(tmp_path):
    pytest.importorskip("celerinfer.reference")
    from celerinfer import reference

    gpt2 = celerinfer.random_model(architecture="gpt2", hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                   vocab_size=100, max_position_embeddings=32, tie_word_embeddings=True, seed=3)
    # nanoGPT: GPT-2 names, nn.Linear weights (out, in), a tied lm_head, model_args
    sd = {}
    for name, value in gpt2.hf_state_dict().items():
        t = torch.from_numpy(np.array(value))
        sd[name] = t.t().contiguous() if name.endswith(("c_attn.weight", "c_proj.weight", "c_fc.weight")) else t
    sd["lm_head.weight"] = sd["transformer.wte.weight"]
    args = dict(n_layer=2, n_head=4, n_embd=32, block_size=32, bias=True, vocab_size=100, dropout=0.0)
    torch.save({"model": {"_orig_mod." + k: v for k, v in sd.items()}, "model_args": args, "iter_num": 5},
               tmp_path / "ckpt.pt")
    loaded = celerinfer.load(tmp_path / "ckpt.pt")
    ids = np.arange(10)[None]
    np.testing.assert_array_equal(reference.logits(loaded, ids), reference.logits(gpt2, ids))


class NotATensor:
    pass


def test_pickles_weights_only_refuses(tmp_path, model):
    torch.save({"model": _state(model), "extra": NotATensor()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match=r"refused: torch.load\(weights_only=True\)"):
        celerinfer.load_checkpoint(tmp_path / "evil.pt", model.config)


def test_not_a_checkpoint(tmp_path, model):
    (tmp_path / "junk.pt").write_bytes(b"not a zip file at all")
    with pytest.raises(ValueError, match="junk.pt"):
        celerinfer.load_checkpoint(tmp_path / "junk.pt", model.config)
    torch.save({"weights": [1, 2, 3]}, tmp_path / "nostate.pt")
    with pytest.raises(ValueError, match="no state_dict found"):
        celerinfer.load_checkpoint(tmp_path / "nostate.pt", model.config)
    torch.save(collections.OrderedDict(_state(model, prefix="encoder.")), tmp_path / "renamed.pt")
    with pytest.raises(celerinfer.FormatError, match="missing tensor 'model.embed_tokens.weight'"):
        celerinfer.load_checkpoint(tmp_path / "renamed.pt", model.config)
