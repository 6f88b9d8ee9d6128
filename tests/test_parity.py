"""Parity: the C++ engine's forward pass against the PyTorch reference (celerinfer.reference).

Metric and tolerance, for every case below: over the query positions whose attention_mask is 1
(all positions when there is no mask),

    max relative error = max|cpp - ref| / max|ref|   must be <= 1e-4,

where ref is the reference computed in float64 (so the error measured is the engine's) and cpp
is the engine's float32 logits. Logits at padded query positions are unspecified and ignored.

Inputs are fresh random token ids and masks from a numpy Generator seeded from the test id (the
seed is in every failure message); each model is `celerinfer.random_model(config, seed)` with a
seed derived the same way.
"""

import base64
import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import make_inputs, max_rel_err, seed_for, valid_positions

torch = pytest.importorskip("torch", reason="parity tests compare against the PyTorch reference")
celerinfer = pytest.importorskip("celerinfer", reason="the celerinfer package is not built")
from celerinfer import reference  # noqa: E402

TOLERANCE = 1e-4


def small_config(**fields):
    base = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                vocab_size=128, max_position_embeddings=64)
    base.update(fields)
    return base


# (id, config fields, batch, seq_len, padding)
CASES = [
    ("mha", small_config(num_attention_heads=4, num_key_value_heads=4), 2, 12, "none"),
    ("gqa1-head_dim8", small_config(num_attention_heads=8, num_key_value_heads=8), 2, 12, "none"),
    ("gqa2", small_config(num_attention_heads=8, num_key_value_heads=4), 2, 12, "none"),
    ("gqa4", small_config(num_attention_heads=8, num_key_value_heads=2), 2, 12, "none"),
    ("gqa8", small_config(hidden_size=128, num_attention_heads=16, num_key_value_heads=2),
     2, 12, "none"),
    ("mqa", small_config(hidden_size=32, num_attention_heads=4, num_key_value_heads=1),
     2, 12, "none"),
    ("mqa-head_dim32", small_config(hidden_size=128, num_attention_heads=4, num_key_value_heads=1),
     2, 12, "none"),
    ("S1", small_config(), 3, 1, "none"),
    ("S1-B1", small_config(), 1, 1, "none"),
    ("B1-S24", small_config(), 1, 24, "none"),
    ("B4-right-pad", small_config(), 4, 20, "right"),
    ("B4-left-pad", small_config(), 4, 20, "left"),
    ("B5-left-pad-mqa", small_config(num_attention_heads=8, num_key_value_heads=1), 5, 16, "left"),
    ("vocab97", small_config(vocab_size=97), 2, 10, "none"),
    ("vocab131-tied", small_config(vocab_size=131, tie_word_embeddings=True), 2, 10, "right"),
    ("vocab257-separate", small_config(vocab_size=257, tie_word_embeddings=False), 2, 10, "left"),
    ("tied", small_config(tie_word_embeddings=True), 2, 12, "none"),
    ("theta1e4-eps1e-6", small_config(rope_theta=1e4, rms_norm_eps=1e-6), 2, 24, "left"),
    ("theta500-eps1e-3", small_config(rope_theta=500.0, rms_norm_eps=1e-3), 2, 24, "right"),
    ("intermediate100", small_config(intermediate_size=100), 2, 8, "none"),
    ("layers1", small_config(num_hidden_layers=1), 2, 12, "none"),
    ("layers3", small_config(num_hidden_layers=3, hidden_size=96, num_attention_heads=6,
                             num_key_value_heads=3), 3, 16, "right"),
]


def build_model(config_fields, nodeid):
    config = celerinfer.ModelConfig(**config_fields)
    return celerinfer.random_model(config, seed=seed_for(nodeid) % 2**31)


def check_parity(model, ids, mask, what):
    got = model.forward(ids, mask)
    B, S = ids.shape
    assert got.shape == (B, S, model.config.vocab_size) and got.dtype == np.float32
    expected = reference.logits(model, ids, mask, dtype=torch.float64)
    valid = valid_positions(mask, B, S)
    assert np.all(np.isfinite(got[valid])), f"{what}: non-finite logits at valid positions"
    err = max_rel_err(got[valid], expected[valid])
    assert err <= TOLERANCE, f"{what}: max rel err {err:.3g} > {TOLERANCE}"
    return got


@pytest.mark.parametrize("fields,batch,seq,padding", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_forward_matches_reference(request, rng, fields, batch, seq, padding):
    model = build_model(fields, request.node.nodeid)
    ids, mask = make_inputs(rng, batch, seq, model.config.vocab_size, padding=padding)
    what = (f"config {fields}, B={batch} S={seq} padding={padding}, "
            f"input seed {rng.bit_generator.seed_seq.entropy}")
    check_parity(model, ids, mask, what)


@pytest.mark.parametrize("ids_dtype", [np.int32, np.int64])
def test_mask_of_ones_equals_no_mask(request, rng, ids_dtype):
    model = build_model(small_config(), request.node.nodeid)
    ids, _ = make_inputs(rng, 3, 9, model.config.vocab_size, dtype=ids_dtype)
    no_mask = model.forward(ids)
    ones = model.forward(ids, np.ones(ids.shape, dtype=np.int32))
    assert max_rel_err(ones, no_mask) <= 1e-6


@pytest.mark.parametrize("padding", ["right", "left"])
def test_masked_tokens_have_no_influence(request, rng, padding):
    """Changing the token ids at masked positions leaves the engine's valid logits unchanged."""
    model = build_model(small_config(), request.node.nodeid)
    vocab = model.config.vocab_size
    ids, mask = make_inputs(rng, 4, 14, vocab, padding=padding, min_len=3)
    other = np.where(mask == 0, rng.integers(0, vocab, size=ids.shape), ids)
    valid = mask != 0
    a = model.forward(ids, mask)
    b = model.forward(other, mask)
    assert max_rel_err(b[valid], a[valid]) <= 1e-6


# ------------------------------------------------------------------ RoPE tables from a file ---

def _seed_tensor(array):
    array = np.ascontiguousarray(array)
    little = array.astype(array.dtype.newbyteorder("<"), copy=False)
    return {"data": base64.b64encode(little.tobytes()).decode("ascii"),
            "shape": list(array.shape), "dtype": str(array.dtype),
            "preview": array.reshape(-1)[:8].tolist()}


def write_seed_json(path, config_fields, state_dict, rope, ids, mask):
    """A seed JSON file (DESIGN.md §3), written here independently of the package's writer."""
    cfg = dict(config_fields)
    n_layers, heads = cfg["num_hidden_layers"], cfg["num_attention_heads"]
    layer_names = {"rms_attn": "input_layernorm", "rms_ffn": "post_attention_layernorm",
                   "wq": "self_attn.q_proj", "wk": "self_attn.k_proj", "wv": "self_attn.v_proj",
                   "wo": "self_attn.o_proj", "w_gate": "mlp.gate_proj", "w_up": "mlp.up_proj",
                   "w_down": "mlp.down_proj"}
    weights = {"tok_embedding": _seed_tensor(state_dict["model.embed_tokens.weight"]),
               "final_rms": _seed_tensor(state_dict["model.norm.weight"]),
               "lm_head": _seed_tensor(state_dict["lm_head.weight"]),
               "layers": [{short: _seed_tensor(state_dict[f"model.layers.{i}.{hf}.weight"])
                           for short, hf in layer_names.items()} for i in range(n_layers)]}
    doc = {"meta": {"B": int(ids.shape[0]), "S": int(ids.shape[1]),
                    "head_dim": cfg["hidden_size"] // heads},
           "config": cfg,
           "inputs": {"input_ids": _seed_tensor(ids.astype(np.int32)),
                      "attention_mask": _seed_tensor(mask.astype(np.int32))},
           "rope": {"cos": _seed_tensor(rope[0]), "sin": _seed_tensor(rope[1])},
           "weights": weights}
    path.write_text(json.dumps(doc))


def test_rope_tables_from_seed_file_are_used(request, rng, tmp_path):
    """A seed file's RoPE tables drive the engine, even when they disagree with rope_theta.

    The file carries tables computed from theta=50 while its config says rope_theta=1e6: the
    engine must match the reference fed the same tables, and differ from the theta tables.
    """
    fields = small_config(rope_theta=1e6, intermediate_size=256, tie_word_embeddings=False)
    source = build_model(fields, request.node.nodeid)
    head_dim = fields["hidden_size"] // fields["num_attention_heads"]
    cos, sin = (t.numpy().astype(np.float32)
                for t in reference.rope_tables(head_dim, fields["max_position_embeddings"], 50.0))
    ids, mask = make_inputs(rng, 3, 16, fields["vocab_size"], padding="left", dtype=np.int32)
    path = tmp_path / "seed.json"
    write_seed_json(path, fields, source.state_dict(), (cos, sin), ids, mask)

    model = celerinfer.load(path)
    assert model.rope is not None, "the loaded model dropped the file's RoPE tables"
    np.testing.assert_array_equal(model.rope[0], cos)
    np.testing.assert_array_equal(model.rope[1], sin)
    got = check_parity(model, ids, mask, "seed-file rope tables")

    valid = mask != 0
    from_theta = reference.ReferenceModel(fields, source.state_dict(), rope=None,
                                          dtype=torch.float64)
    with torch.no_grad():
        theta_logits = from_theta(torch.from_numpy(ids.astype(np.int64)),
                                  torch.from_numpy(mask)).numpy()
    assert max_rel_err(got[valid], theta_logits[valid]) > 1e-2, \
        "the engine's logits do not depend on the file's RoPE tables"


# --------------------------------------------------------------------------- packaging ---

def test_import_does_not_import_torch():
    """torch is optional: importing celerinfer (and running a model) must not import it."""
    code = ("import sys, celerinfer\n"
            "m = celerinfer.random_model(celerinfer.ModelConfig(hidden_size=32, "
            "num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2, vocab_size=50, "
            "max_position_embeddings=16))\n"
            "m.forward([[1, 2, 3]])\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
