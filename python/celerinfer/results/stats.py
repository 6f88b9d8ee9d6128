"""Statistics of repeated measurements: the statistics object of the results schema
(``docs/results_schema.md``), the comparison of two sets of samples (:func:`compare_samples`),
and the best-of-N timing of a call (:func:`best_seconds`).

Everything is deterministic: bootstrap resampling uses a fixed seed, so the same samples always
give the same confidence intervals.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

import numpy as np

#: nanoseconds per unit, for the time units a statistics object may use
TIME_UNITS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 20260101  # fixed: the same samples give the same intervals
_CHUNK_ELEMENTS = 2_000_000  # bootstrap memory bound: resamples * n per chunk


def _as_values(samples, what: str = "samples") -> np.ndarray:
    """A 1-D float64 array of finite values; ValueError naming the problem otherwise."""
    try:
        values = np.asarray(samples, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} must be numbers: {exc}") from None
    if values.ndim != 1:
        raise ValueError(f"{what} must be a flat sequence of numbers, got shape {values.shape}")
    if values.size == 0:
        raise ValueError(f"{what} is empty: nothing to summarize")
    bad = ~np.isfinite(values)
    if bad.any():
        kinds = sorted({"nan" if math.isnan(v) else ("+inf" if v > 0 else "-inf") for v in values[bad]})
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{what} contain {int(bad.sum())} non-finite value(s) ({', '.join(kinds)}; "
                         f"first at index {first}) out of {values.size}")
    return values


def _bootstrap_medians(values: np.ndarray, rng: np.random.Generator, resamples: int) -> np.ndarray:
    n = values.size
    out = np.empty(resamples)
    chunk = max(1, _CHUNK_ELEMENTS // n)
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        out[start:stop] = np.median(values[idx], axis=1)
    return out


def bootstrap_median_ci(samples, confidence: float = 0.95, resamples: int = BOOTSTRAP_RESAMPLES,
                        seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the median (deterministic for a given seed).

    The interval always contains the sample median (it is widened to it in the rare case the
    percentiles of the resampled medians miss it); n = 1 gives (value, value).
    """
    values = _as_values(samples)
    median = float(np.median(values))
    if values.size == 1:
        return median, median
    meds = _bootstrap_medians(values, np.random.default_rng(seed), resamples)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.percentile(meds, [100.0 * alpha, 100.0 * (1.0 - alpha)])
    return min(float(low), median), max(float(high), median)


def summarize(samples, unit: str = "ms", raw_unit: str | None = "ns") -> dict:
    """The statistics object of the results schema for repeated measurements of one quantity.

    Times: ``samples`` are in ``raw_unit`` ("ns", "us", "ms" or "s"); they are stored as integer
    nanoseconds in ``samples_ns`` and every statistic is computed from those and reported in
    ``unit``. Other quantities: ``raw_unit=None``; ``samples`` are stored as given (``samples``)
    and the statistics are in the same unit (``unit`` is only a label, e.g. "GB/s").

    Fields: unit, n, median, mean, std (ddof=1, None for n = 1), min, max, p90, p99 (linear
    interpolation), ci95_low / ci95_high (bootstrap CI of the median, see
    :func:`bootstrap_median_ci`). Empty or non-finite samples raise ValueError.
    """
    values = _as_values(samples)
    if raw_unit is not None:
        if raw_unit not in TIME_UNITS:
            raise ValueError(f"raw_unit must be one of {sorted(TIME_UNITS)} or None, got {raw_unit!r}")
        if unit not in TIME_UNITS:
            raise ValueError(f"unit must be one of {sorted(TIME_UNITS)} for time samples, got {unit!r}")
        raw_ns = np.rint(values * TIME_UNITS[raw_unit]).astype(np.int64)
        stored_key, stored = "samples_ns", [int(v) for v in raw_ns]
        values = raw_ns.astype(np.float64) / TIME_UNITS[unit]
    else:
        stored_key = "samples"
        stored = np.asarray(samples).tolist()  # Python ints / floats
    n = int(values.size)
    low, high = bootstrap_median_ci(values)
    p90, p99 = np.percentile(values, [90.0, 99.0])
    return {
        "unit": unit,
        "n": n,
        "median": float(np.median(values)),
        "mean": float(np.mean(values)),
        "std": float(np.std(values, ddof=1)) if n > 1 else None,
        "min": float(np.min(values)),
        "max": float(np.max(values)),
        "p90": float(p90),
        "p99": float(p99),
        "ci95_low": low,
        "ci95_high": high,
        stored_key: stored,
    }


def best_seconds(fn, reps: int) -> float:
    """The shortest wall time of `reps` calls of fn() after one warm-up call: a kernel's speed
    with the least interference from the rest of a shared machine."""
    fn()
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _average_ranks(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """1-based ranks with ties given their average rank, and the sizes of the tie groups."""
    order = np.argsort(values, kind="mergesort")
    sorted_vals = values[order]
    # start of each run of equal values
    starts = np.flatnonzero(np.r_[True, sorted_vals[1:] != sorted_vals[:-1]])
    sizes = np.diff(np.r_[starts, values.size])
    avg = starts + (sizes + 1) / 2.0  # average of ranks starts+1 .. starts+size
    ranks = np.empty(values.size)
    ranks[order] = np.repeat(avg, sizes)
    return ranks, sizes


def mann_whitney_u(a_samples, b_samples) -> tuple[float, float]:
    """Two-sided Mann-Whitney U test: (U of a, p-value).

    Normal approximation with tie correction and continuity correction (0.5). There is no exact
    small-sample distribution: for n_a, n_b below ~8 the p-value is only approximate (and with
    3 vs 3 samples it can never go below ~0.08). All values tied gives p = 1.
    """
    a = _as_values(a_samples, "a samples")
    b = _as_values(b_samples, "b samples")
    n1, n2 = a.size, b.size
    n = n1 + n2
    ranks, ties = _average_ranks(np.concatenate([a, b]))
    u1 = float(ranks[:n1].sum() - n1 * (n1 + 1) / 2.0)
    mu = n1 * n2 / 2.0
    tie_term = float(np.sum(ties.astype(np.float64) ** 3 - ties)) / (n * (n - 1)) if n > 1 else 0.0
    var = n1 * n2 / 12.0 * ((n + 1) - tie_term)
    if var <= 0.0:
        return u1, 1.0
    z = max(abs(u1 - mu) - 0.5, 0.0) / math.sqrt(var)
    p = math.erfc(z / math.sqrt(2.0))  # = 2 * (1 - Phi(z))
    return u1, min(1.0, max(0.0, p))


def smallest_p_value(n_a: int, n_b: int) -> float:
    """The smallest p-value :func:`mann_whitney_u` gives samples of these sizes (completely
    separated ones); at or above 0.05 no difference can be called beyond noise, however large."""
    if n_a < 1 or n_b < 1:
        return 1.0
    return mann_whitney_u(np.arange(n_a, dtype=float), np.arange(n_a, n_a + n_b, dtype=float))[1]


@dataclass(frozen=True)
class SampleComparison:
    """b versus a: ``ratio`` = median_b / median_a with its bootstrap 95% CI, the Mann-Whitney
    p-value, ``significant`` (the CI excludes 1 and p < 0.05) and ``enough_samples`` (whether
    the test can reach p < 0.05 at these sample sizes at all: :func:`smallest_p_value`)."""

    median_a: float
    median_b: float
    ratio: float
    ratio_ci95: tuple[float, float]
    p_value: float
    significant: bool
    verdict: str
    n_a: int
    n_b: int
    enough_samples: bool = True

    @property
    def outcome(self) -> str:
        """'beyond noise', 'within noise' or 'too few samples' (the sizes cannot reach p < 0.05)."""
        return "beyond noise" if self.significant else "within noise" if self.enough_samples else "too few samples"

    def to_dict(self) -> dict:
        return {"median_a": self.median_a, "median_b": self.median_b, "ratio": self.ratio,
                "ratio_ci95": list(self.ratio_ci95), "p_value": self.p_value,
                "significant": self.significant, "verdict": self.verdict, "n_a": self.n_a, "n_b": self.n_b,
                "enough_samples": self.enough_samples}


def format_p(p: float) -> str:
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def compare_samples(a_samples, b_samples, *, label_a: str = "a", label_b: str = "b",
                    lower_is_better: bool = True, confidence: float = 0.95) -> SampleComparison:
    """Compare the medians of two sets of samples (b relative to a).

    The ratio CI is a percentile bootstrap of median(b*) / median(a*), resampling both sets
    independently (fixed seed). With ``lower_is_better`` (times) the verdict says "slower" /
    "faster", otherwise "larger" / "smaller". Raises ValueError when median_a is 0.
    """
    a = _as_values(a_samples, "a samples")
    b = _as_values(b_samples, "b samples")
    med_a, med_b = float(np.median(a)), float(np.median(b))
    if med_a == 0.0:
        raise ValueError("the median of a is 0: the ratio median_b / median_a is undefined")
    ratio = med_b / med_a
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    boot_a = _bootstrap_medians(a, rng, BOOTSTRAP_RESAMPLES) if a.size > 1 else np.full(BOOTSTRAP_RESAMPLES, med_a)
    boot_b = _bootstrap_medians(b, rng, BOOTSTRAP_RESAMPLES) if b.size > 1 else np.full(BOOTSTRAP_RESAMPLES, med_b)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = boot_b / boot_a
    ratios = ratios[np.isfinite(ratios)]
    alpha = (1.0 - confidence) / 2.0
    if ratios.size:
        low, high = (float(v) for v in np.percentile(ratios, [100.0 * alpha, 100.0 * (1.0 - alpha)]))
        low, high = min(low, ratio), max(high, ratio)
    else:
        low = high = ratio
    _, p = mann_whitney_u(a, b)
    significant = bool((low > 1.0 or high < 1.0) and p < 0.05)

    if ratio == 1.0:
        head = f"{label_b} and {label_a} have the same median"
        ci = f"ratio 95% CI {low:.2f}-{high:.2f}"
    else:
        up, down = ("slower", "faster") if lower_is_better else ("larger", "smaller")
        if ratio > 1.0:
            head = f"{label_b} is {ratio:.2f}x {up} than {label_a}"
            ci = f"95% CI {low:.2f}-{high:.2f}"
        else:
            head = f"{label_b} is {1.0 / ratio:.2f}x {down} than {label_a}"
            ci = f"95% CI {1.0 / high:.2f}-{1.0 / low:.2f}" if low > 0 else f"95% CI {1.0 / high:.2f}-inf"
    enough = smallest_p_value(int(a.size), int(b.size)) < 0.05
    comparison = SampleComparison(median_a=med_a, median_b=med_b, ratio=ratio, ratio_ci95=(low, high), p_value=p,
                                  significant=significant, verdict="", n_a=int(a.size), n_b=int(b.size),
                                  enough_samples=enough)
    outcome = comparison.outcome if enough else (
        f"too few samples to tell ({a.size} and {b.size}: the test cannot reach p < 0.05; measure at least 4 a side)")
    return dataclasses.replace(comparison, verdict=f"{head} ({ci}, {format_p(p)}): {outcome}")
