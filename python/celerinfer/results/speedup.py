"""The one definition of speedup every console line and plot uses: the ratio of medians
(candidate over baseline for rates such as tokens/s, baseline over candidate for times), with
the bootstrap 95% CI of that ratio (``stats.compare_samples``).

Not the mean of per-prompt ratios: with a few slow prompts that mean drifts far from what the
throughput plot shows (seed 001 printed 24.9x while its plot showed 18.1x). A ratio of medians
is what a reader compares on a plot of medians, and it does not change when the roles swap
(1 / speedup is the slowdown).
"""

from __future__ import annotations

from dataclasses import dataclass

from .stats import compare_samples


@dataclass(frozen=True)
class Speedup:
    ratio: float               # > 1: the candidate is faster
    ci95: tuple[float, float]  # bootstrap 95% CI of the ratio
    n_baseline: int
    n_candidate: int
    enough_samples: bool       # the rank test can call a difference at these sizes
    outcome: str               # 'beyond noise', 'within noise' or 'too few samples' (SampleComparison's)

    def text(self, digits: int = 2) -> str:
        """'1.85x (95% CI 1.70-2.01)'; a single pair of samples has no interval."""
        head = f"{self.ratio:.{digits}f}x"
        if self.n_baseline < 2 and self.n_candidate < 2:
            return head
        return f"{head} (95% CI {self.ci95[0]:.{digits}f}-{self.ci95[1]:.{digits}f})"

    def to_dict(self) -> dict:
        return {"ratio": self.ratio, "ci95": list(self.ci95), "n_baseline": self.n_baseline,
                "n_candidate": self.n_candidate, "definition": "ratio of medians"}


def speedup(baseline, candidate, *, higher_is_better: bool = True) -> Speedup:
    """How much faster `candidate` is than `baseline`, from their samples: median(candidate) /
    median(baseline) for rates (``higher_is_better``), median(baseline) / median(candidate) for
    times. ValueError when a sample set is empty or the divisor's median is 0."""
    if higher_is_better:
        c = compare_samples(baseline, candidate, lower_is_better=False)
        ratio, ci = c.ratio, c.ratio_ci95
    else:  # times: candidate's median / baseline's is the slowdown
        c = compare_samples(candidate, baseline)
        ratio, ci = c.ratio, c.ratio_ci95
    return Speedup(ratio=ratio, ci95=(float(ci[0]), float(ci[1])), n_baseline=c.n_a if higher_is_better else c.n_b,
                   n_candidate=c.n_b if higher_is_better else c.n_a, enough_samples=c.enough_samples,
                   outcome=c.outcome)
