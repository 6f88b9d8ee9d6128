"""GenerateOptions: Engine.generate's options as one object, checked when made."""

import dataclasses

import numpy as np
import pytest

import celerinfer
from celerinfer import GenerateOptions, _core


@pytest.fixture(scope="module")
def engine():
    model = celerinfer.random_model(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2,
                                    vocab_size=64, max_position_embeddings=64)
    return celerinfer.Engine(model, "v1")


IDS = np.array([[1, 2, 3, 4]])


def test_defaults_and_the_core_object():
    options = GenerateOptions(8)
    assert (options.max_new_tokens, options.temperature, options.top_k, options.top_p, options.repetition_penalty,
            options.seed, options.eos_token_id, options.return_logits, options.timing) == (8, 0.0, 0, 1.0, 1.0, 0,
                                                                                           None, False, True)
    core = GenerateOptions(5, temperature=0.5, top_k=3, top_p=0.9, repetition_penalty=1.1, seed=7, eos_token_id=2,
                           return_logits=True, timing=False).to_core()
    assert isinstance(core, _core.GenerateOptions)
    assert (core.max_new_tokens, core.top_k, core.seed, core.eos_token_id, core.return_logits, core.timing) == (
        5, 3, 7, 2, True, False)
    assert core.temperature == pytest.approx(0.5) and core.top_p == pytest.approx(0.9)
    assert GenerateOptions(5).to_core().eos_token_id == -1  # none, as the engine spells it
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.seed = 3
    assert dataclasses.replace(options, seed=3).seed == 3
    assert GenerateOptions(np.int64(4), top_k=np.int32(2)).max_new_tokens == 4  # numpy integers are integers
    assert type(GenerateOptions(np.int64(4)).max_new_tokens) is int
    assert celerinfer.GenerateOptions is GenerateOptions and "GenerateOptions" in celerinfer.__all__


@pytest.mark.parametrize("fields, message", [
    (dict(max_new_tokens=0), "max_new_tokens must be >= 1, got 0"),
    (dict(max_new_tokens=-3), "max_new_tokens must be >= 1, got -3"),
    (dict(max_new_tokens=2.5), "max_new_tokens must be an integer, got 2.5"),
    (dict(max_new_tokens=4.0), "max_new_tokens must be an integer, got 4.0"),
    (dict(max_new_tokens=True), "max_new_tokens must be an integer, got True"),
    (dict(max_new_tokens="8"), "max_new_tokens must be an integer, got '8'"),
    (dict(max_new_tokens=4, eos_token_id=-1), "eos_token_id must be >= 0, got -1"),
    (dict(max_new_tokens=4, eos_token_id=1.5), "eos_token_id must be an integer"),
    (dict(max_new_tokens=4, top_k=-1), "top_k must be >= 0"),
    (dict(max_new_tokens=4, top_k=2.7), "top_k must be an integer"),
    (dict(max_new_tokens=4, top_p=0.0), r"top_p must be in \(0, 1\]"),
    (dict(max_new_tokens=4, top_p=1.5), r"top_p must be in \(0, 1\]"),
    (dict(max_new_tokens=4, temperature=-1.0), "temperature must be >= 0"),
    (dict(max_new_tokens=4, temperature=float("nan")), "temperature must be a finite number"),
    (dict(max_new_tokens=4, repetition_penalty=0.0), "repetition_penalty must be > 0"),
    (dict(max_new_tokens=4, seed=-1), "seed must be >= 0"),
    (dict(max_new_tokens=4, seed=2**64), "seed must be < 18446744073709551616"),
])
def test_out_of_range_values_are_a_value_error_naming_the_field(fields, message):
    with pytest.raises(ValueError, match=message):
        GenerateOptions(**fields)


def test_generate_takes_the_object_or_its_fields(engine):
    options = GenerateOptions(6, temperature=0.9, top_k=10, seed=4, return_logits=True)
    by_object = engine.generate(IDS, options)
    by_fields = engine.generate(IDS, max_new_tokens=6, temperature=0.9, top_k=10, seed=4, return_logits=True)
    short = engine.generate(IDS, 6, temperature=0.9, top_k=10, seed=4, return_logits=True)
    np.testing.assert_array_equal(by_object.tokens, by_fields.tokens)
    np.testing.assert_array_equal(by_object.tokens, short.tokens)
    np.testing.assert_array_equal(by_object.logits, by_fields.logits)
    masked = engine.generate(IDS, options, attention_mask=np.ones_like(IDS))
    np.testing.assert_array_equal(masked.tokens, by_object.tokens)


def test_options_and_fields_together_are_an_error(engine):
    with pytest.raises(TypeError, match="either a GenerateOptions or its fields"):
        engine.generate(IDS, GenerateOptions(4), seed=1)
    with pytest.raises(TypeError, match="max_new_tokens given twice"):
        engine.generate(IDS, 4, max_new_tokens=5)
    with pytest.raises(TypeError, match="options must be a GenerateOptions"):
        engine.generate(IDS, "4")
    with pytest.raises(TypeError, match="unexpected keyword argument 'temperatur'"):
        engine.generate(IDS, 4, temperatur=0.5)
    with pytest.raises(TypeError, match="max_new_tokens"):
        engine.generate(IDS)


def test_what_needs_the_model_is_checked_by_the_engine(engine):
    with pytest.raises(ValueError, match="eos_token_id"):
        engine.generate(IDS, GenerateOptions(4, eos_token_id=64))  # the vocabulary has 64 ids
    with pytest.raises(ValueError, match="exceeds max_seq_len"):
        engine.generate(IDS, GenerateOptions(61))
