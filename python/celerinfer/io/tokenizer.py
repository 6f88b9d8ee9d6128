"""Tokenizers for text prompts.

The engine works on token ids; to run text prompts we need a tokenizer that agrees with the
model's vocabulary. Random models have no trained vocabulary, so the default is a byte-level
tokenizer: every UTF-8 byte of the text is one token id (0..255). Any model whose vocabulary
has at least 256 ids can take it. :func:`load_tokenizer` is the single place that picks a
tokenizer for a model file (a ``tokenizer.json`` beside a Hugging Face checkpoint), and
:func:`model_tokenizer` the one for a Model (a GGUF file's own, io/gguf_tokenizer.py).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

BYTE_VOCAB = 256


class ByteTokenizer:
    """UTF-8 bytes <-> token ids 0..255, for a model with ``vocab_size`` ids.

    ``encode(text)`` needs ``vocab_size >= 256`` (otherwise a ValueError says what to do
    instead). ``decode(ids)`` turns runs of ids < 256 back into bytes, decoded as UTF-8 with
    ``errors="replace"``; any other id (>= 256, or negative) is shown as ``<id>``.
    """

    name = "byte"

    def __init__(self, vocab_size: int):
        vocab_size = int(vocab_size)
        if vocab_size < 1:
            raise ValueError(f"vocab_size must be >= 1, got {vocab_size}")
        self.vocab_size = vocab_size

    @property
    def covers_bytes(self) -> bool:
        """True when the model's vocabulary holds every byte id (text prompts work)."""
        return self.vocab_size >= BYTE_VOCAB

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """UTF-8 bytes as ids (bytes have no special tokens: add_special_tokens changes nothing)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        if not self.covers_bytes:
            raise ValueError(
                f"the model's vocab_size is {self.vocab_size}, but the byte-level tokenizer needs >= {BYTE_VOCAB} "
                "token ids for text prompts: pass token ids with --prompt-ids, or use a model with vocab_size >= 256")
        return list(text.encode("utf-8"))

    def decode(self, ids: Iterable[int]) -> str:
        parts: list[str] = []
        pending = bytearray()
        for token in ids:
            token = int(token)
            if 0 <= token < BYTE_VOCAB:
                pending.append(token)
                continue
            if pending:
                parts.append(pending.decode("utf-8", errors="replace"))
                pending.clear()
            parts.append(f"<{token}>")
        if pending:
            parts.append(pending.decode("utf-8", errors="replace"))
        return "".join(parts)

    def __repr__(self) -> str:
        return f"ByteTokenizer(vocab_size={self.vocab_size})"


class HFTokenizer:
    """A ``tokenizer.json`` (Hugging Face ``tokenizers`` format) for a model with ``vocab_size``
    ids. ``encode`` adds the special tokens the file's post-processor adds (a BOS, say) and
    refuses ids the model does not have; ``decode`` leaves special tokens out."""

    covers_bytes = True  # any text can be encoded and shown

    def __init__(self, path: str | os.PathLike, vocab_size: int):
        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise ImportError(f"{path} needs the 'tokenizers' package: pip install tokenizers") from None
        self.path = Path(path)
        try:
            self._tok = Tokenizer.from_file(str(self.path))
        except Exception as exc:  # the library raises a bare Exception on a malformed file
            raise ValueError(f"{self.path}: not a readable tokenizer.json ({exc})") from None
        self.vocab_size = int(vocab_size)
        self.name = self.path.name

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        ids = self._tok.encode(text, add_special_tokens=add_special_tokens).ids
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(f"{self.path} gives token id {bad[0]}, outside the model's vocabulary "
                             f"(vocab_size {self.vocab_size}): the tokenizer does not belong to this model")
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=True)

    def __repr__(self) -> str:
        return f"HFTokenizer({str(self.path)!r}, vocab_size={self.vocab_size})"


TOKENIZER_FILE = "tokenizer.json"


def tokenizer_file(model_path: str | os.PathLike | None) -> Path | None:
    """The tokenizer.json of a model path: inside it (a folder) or beside it (a file); None."""
    if model_path is None:
        return None
    path = Path(model_path)
    candidate = (path if path.is_dir() else path.parent) / TOKENIZER_FILE
    return candidate if candidate.is_file() else None


def model_tokenizer(gguf_metadata, model_path: str | os.PathLike | None, vocab_size: int):
    """A model's tokenizer: its GGUF metadata's when it has one (GGUFTokenizer), else
    :func:`load_tokenizer` for its path."""
    if gguf_metadata is not None and "tokenizer.ggml.model" in gguf_metadata:
        from .gguf_tokenizer import GGUFTokenizer

        return GGUFTokenizer(gguf_metadata, vocab_size, source=str(model_path or "GGUF"))
    return load_tokenizer(model_path, vocab_size)


def load_tokenizer(model_path: str | os.PathLike | None, vocab_size: int) -> HFTokenizer | ByteTokenizer:
    """The tokenizer for the model at ``model_path`` (a folder or a model file): its
    ``tokenizer.json`` when there is one, else the byte-level tokenizer.

    Both offer ``encode(text) -> list[int]``, ``decode(ids) -> str``, ``name`` and
    ``covers_bytes``. A tokenizer.json without the ``tokenizers`` package is an ImportError
    saying what to install (never a silent fallback to bytes).
    """
    found = tokenizer_file(model_path)
    return HFTokenizer(found, vocab_size) if found is not None else ByteTokenizer(vocab_size)
