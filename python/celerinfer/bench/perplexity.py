"""Quality through each version's cache path: next-token perplexity and the KL divergence of a
version's predictions from the fp32 no-sharing baseline's, teacher-forced on the same tokens."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..io.npy import load_npy
from ..model import random_tokens


def load_tokens(data: str, num_sequences: int, sequence_length: int, vocab_size: int, seed: int = 0):
    """(num_sequences, sequence_length) int64 token ids and a description of where they came from.

    data: 'random' (uniform ids), a .npy file of token ids, or a text file (UTF-8 bytes as
    token ids, which needs vocab_size >= 256). A file is cut into consecutive sequences; it
    must hold at least one full sequence."""
    if data == "random":
        return random_tokens(num_sequences, sequence_length, vocab_size, seed=seed).astype(np.int64), "random"
    path = Path(data)
    if not path.exists():
        raise FileNotFoundError(f"perplexity data file not found: {path}")
    if path.suffix == ".npy":
        ids = np.asarray(load_npy(path)).reshape(-1)
        if not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"{path}: token ids must be integers, got {ids.dtype}")
    else:
        if vocab_size < 256:
            raise ValueError(f"text data needs a vocabulary of at least 256 byte tokens; this model has {vocab_size}")
        ids = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    ids = ids.astype(np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
        raise ValueError(f"{path}: token ids must be in [0, {vocab_size})")
    usable = min(num_sequences, ids.size // sequence_length)
    if usable < 1:
        raise ValueError(f"{path}: {ids.size} tokens is less than one sequence of {sequence_length}")
    return ids[: usable * sequence_length].reshape(usable, sequence_length), str(path)


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    x -= x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def next_token_metrics(logits: np.ndarray, baseline_logits: np.ndarray, tokens: np.ndarray) -> dict:
    """Perplexity of `tokens` under `logits` (B, S, V) (position t predicts token t + 1), and
    KL(baseline || this) and top-1 agreement with the baseline over the same positions."""
    logp = _log_softmax(logits[:, :-1])
    base = _log_softmax(baseline_logits[:, :-1])
    targets = tokens[:, 1:]
    nll = -np.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
    kl = (np.exp(base) * (base - logp)).sum(axis=-1)
    loss = float(nll.mean())
    return {"perplexity": float(np.exp(loss)), "loss": loss, "kl_vs_baseline": float(max(kl.mean(), 0.0)),
            "top1_agreement": float((logp.argmax(-1) == base.argmax(-1)).mean()), "num_tokens": int(targets.size)}
