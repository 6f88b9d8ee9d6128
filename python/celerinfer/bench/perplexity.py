"""Quality through each version's cache path: next-token perplexity of real text (with a
bootstrap confidence interval over windows), and how far a version's predictions move from the
fp32-cache baseline's (KL divergence, top-1 agreement, the NLL difference), teacher-forced on
the same tokens; and those numbers against the position in the window (quantization and
eviction errors grow with the context)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..io.corpus import CORPORA, corpus_text
from ..io.npy import load_npy
from ..model import random_tokens

BOOTSTRAP_RESAMPLES = 1000
POSITION_BUCKETS = 8


def _file_ids(path: Path, vocab_size: int, tokenizer) -> np.ndarray:
    if path.suffix == ".npy":
        ids = np.asarray(load_npy(path)).reshape(-1)
        if not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"{path}: token ids must be integers, got {ids.dtype}")
        return ids.astype(np.int64)
    return _text_ids(path.read_text(encoding="utf-8", errors="replace"), vocab_size, tokenizer)


def _text_ids(text: str, vocab_size: int, tokenizer) -> np.ndarray:
    """The model's own tokenizer where it has one, else UTF-8 bytes as ids."""
    if tokenizer is not None:
        return np.asarray(tokenizer.encode(text, add_special_tokens=False), dtype=np.int64)
    if vocab_size < 256:
        raise ValueError(f"text data needs a vocabulary of at least 256 byte tokens; this model has {vocab_size}")
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int64)


def load_windows(data: str, num_windows: int, context_length: int, vocab_size: int, stride: int | None = None,
                 tokenizer=None, seed: int = 0):
    """(windows (N, context_length) int64, first_scored, description).

    data: 'random' (uniform ids), a corpus name (:data:`celerinfer.io.corpus.CORPORA`), a .npy
    file of token ids, or a text file (tokenized by `tokenizer`, else as UTF-8 bytes). Windows
    start every `stride` tokens (default: context_length, disjoint windows), at most
    num_windows of them. With stride < context_length each window after the first scores only
    its last `stride` predictions (the tokens the windows before it did not), each with at least
    context_length - stride tokens of context: ``first_scored`` is the first scored prediction's
    position in every window but the first (its target is the window's first new token;
    0 without overlap)."""
    stride = context_length if stride is None else int(stride)
    if not 1 <= stride <= context_length:
        raise ValueError(f"stride must be in [1, context_length={context_length}], got {stride}")
    first_scored = context_length - stride - 1 if stride < context_length else 0
    if data == "random":
        ids = random_tokens(num_windows, context_length, vocab_size, seed=seed).astype(np.int64)
        return ids, first_scored, "random"
    if data in CORPORA:
        text, description = corpus_text(data)
        ids = _text_ids(text, vocab_size, tokenizer)
    else:
        path = Path(data)
        if not path.exists():
            raise FileNotFoundError(f"perplexity data not found: {data!r} (a corpus name: {', '.join(CORPORA)}; "
                                    f"'random'; a .npy or text file)")
        ids, description = _file_ids(path, vocab_size, tokenizer), str(path)
    if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
        raise ValueError(f"{description}: token ids must be in [0, {vocab_size})")
    starts = list(range(0, ids.size - context_length + 1, stride))[:num_windows]
    if not starts:
        raise ValueError(f"{description}: {ids.size} tokens is less than one window of {context_length}")
    windows = np.stack([ids[s:s + context_length] for s in starts])
    return windows, first_scored, description


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    x -= x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def scored_mask(shape: tuple[int, int], first_scored: int) -> np.ndarray:
    """(N, S - 1) bool: which predictions count (position t predicts token t + 1): all of the
    first window's, from first_scored on in the others."""
    n, s = shape
    mask = np.ones((n, s - 1), dtype=bool)
    mask[1:, :first_scored] = False
    return mask


def bootstrap_perplexity_ci(nll_sums: np.ndarray, counts: np.ndarray, seed: int = 0,
                            resamples: int = BOOTSTRAP_RESAMPLES, level: float = 0.95) -> tuple[float, float]:
    """A percentile bootstrap interval of exp(sum NLL / tokens) over windows resampled with
    replacement (the windows are the independent units: tokens within one are not)."""
    if len(nll_sums) < 2:
        p = float(np.exp(nll_sums.sum() / counts.sum()))
        return p, p
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(nll_sums), size=(resamples, len(nll_sums)))
    ppl = np.exp(nll_sums[picks].sum(axis=1) / counts[picks].sum(axis=1))
    tail = (1 - level) / 2
    return float(np.quantile(ppl, tail)), float(np.quantile(ppl, 1 - tail))


def next_token_metrics(logits: np.ndarray, baseline_logits: np.ndarray, tokens: np.ndarray,
                       first_scored: int = 0, seed: int = 0) -> dict:
    """Perplexity of `tokens` under `logits` (N, S, V) (position t predicts token t + 1) with
    its bootstrap interval over windows; KL(baseline || this) per prediction (mean, p99), top-1
    agreement with the baseline, the mean NLL difference from it; and each of these per bucket
    of positions in the window (``by_position``)."""
    logp = _log_softmax(logits[:, :-1])
    base = _log_softmax(baseline_logits[:, :-1])
    targets = tokens[:, 1:]
    nll = -np.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
    base_nll = -np.take_along_axis(base, targets[..., None], axis=-1)[..., 0]
    kl = np.maximum((np.exp(base) * (base - logp)).sum(axis=-1), 0.0)
    agree = logp.argmax(-1) == base.argmax(-1)
    mask = scored_mask(tokens.shape, first_scored)
    sums, counts = (nll * mask).sum(axis=1), mask.sum(axis=1)
    loss = float(sums.sum() / counts.sum())
    low, high = bootstrap_perplexity_ci(sums, counts, seed=seed)
    edges = np.linspace(0, tokens.shape[1] - 1, POSITION_BUCKETS + 1).round().astype(int)
    by_position = {"start": [], "end": [], "nll": [], "kl": [], "top1_agreement": []}
    for a, b in zip(edges[:-1], edges[1:]):
        m = mask[:, a:b]
        if not m.any():
            continue
        by_position["start"].append(int(a))
        by_position["end"].append(int(b))
        by_position["nll"].append(float(nll[:, a:b][m].mean()))
        by_position["kl"].append(float(kl[:, a:b][m].mean()))
        by_position["top1_agreement"].append(float(agree[:, a:b][m].mean()))
    return {"perplexity": float(np.exp(loss)), "perplexity_ci95": [low, high], "loss": loss,
            "nll_diff_vs_baseline": float(loss - (base_nll * mask).sum() / counts.sum()),
            "kl_vs_baseline": float(kl[mask].mean()), "kl_p99_vs_baseline": float(np.quantile(kl[mask], 0.99)),
            "top1_agreement": float(agree[mask].mean()), "num_tokens": int(counts.sum()),
            "num_windows": int(tokens.shape[0]), "by_position": by_position}
