"""Text in, text out with a model folder's tokenizer.json (built here with the `tokenizers`
library: a word-level vocabulary of a few sentences), and the byte-level fallback."""

import sys

import pytest

import celerinfer
from celerinfer.io.tokenizer import ByteTokenizer, HFTokenizer, load_tokenizer

tokenizers = pytest.importorskip("tokenizers", reason="the tokenizers library is an optional dependency")

SENTENCES = ["the cache keeps the keys and values", "a model predicts the next token",
             "quantized keys and values take less memory"]


def _tokenizer_json(path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(SENTENCES, trainers.WordLevelTrainer(special_tokens=["[UNK]"]))
    tok.save(str(path))
    return tok.get_vocab_size()


@pytest.fixture
def folder(tmp_path):
    model = celerinfer.random_model(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                    vocab_size=64, max_position_embeddings=64, seed=11)
    model.save(tmp_path / "tiny")
    assert _tokenizer_json(tmp_path / "tiny" / "tokenizer.json") <= 64
    return tmp_path / "tiny"


def test_load_tokenizer_round_trip(folder):
    tok = load_tokenizer(folder, 64)
    assert isinstance(tok, HFTokenizer) and tok.name == "tokenizer.json"
    ids = tok.encode("the keys and values")
    assert len(ids) == 4 and tok.decode(ids) == "the keys and values"
    assert load_tokenizer(folder / "model.safetensors", 64).encode("the cache") == tok.encode("the cache")  # beside
    assert isinstance(load_tokenizer(folder.parent, 300), ByteTokenizer)  # no tokenizer.json: bytes
    with pytest.raises(ValueError, match="outside the model's vocabulary"):
        load_tokenizer(folder, 4).encode("values")


def test_run_prints_text(folder, capsys):
    from celerinfer.cli import main

    assert main(["run", "--model", str(folder), "--prompt", "the cache keeps", "--max-new-tokens", "5",
                 "--greedy"]) == 0
    out = capsys.readouterr().out
    tok = load_tokenizer(folder, 64)
    ids = tok.encode("the cache keeps")
    new = celerinfer.Engine(celerinfer.load(folder)).generate([ids], 5).new_tokens[0]
    assert f"Generated text: {tok.decode(new)}" in out
    assert "Full text: the cache keeps" in out


def test_missing_library_is_a_clear_error(folder, monkeypatch):
    monkeypatch.setitem(sys.modules, "tokenizers", None)
    with pytest.raises(ImportError, match="pip install tokenizers"):
        load_tokenizer(folder, 64)


def test_malformed_tokenizer_json(folder):
    (folder / "tokenizer.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a readable tokenizer.json"):
        load_tokenizer(folder, 64)
