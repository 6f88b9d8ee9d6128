"""Tokenizers for text prompts.

The engine works on token ids; to run text prompts we need a tokenizer that agrees with the
model's vocabulary. Random models have no trained vocabulary, so the default is a byte-level
tokenizer: every UTF-8 byte of the text is one token id (0..255). Any model whose vocabulary
has at least 256 ids can take it. :func:`get_tokenizer` is the single place that picks a
tokenizer for a model file, so real tokenizers (a ``tokenizer.json`` beside a Hugging Face
checkpoint, say) can plug in there later without touching the callers.
"""

from __future__ import annotations

import os
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

    def encode(self, text: str) -> list[int]:
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


def get_tokenizer(model_path: str | os.PathLike | None, vocab_size: int) -> ByteTokenizer:
    """The tokenizer for the model at ``model_path``: for now always the byte-level one.

    This is the hook for real tokenizers (e.g. a tokenizer file next to the model); callers
    only rely on ``encode(text) -> list[int]``, ``decode(ids) -> str`` and ``name``.
    """
    del model_path  # no model-specific tokenizers yet
    return ByteTokenizer(vocab_size)
