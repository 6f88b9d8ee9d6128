"""Statistics objects (summarize), the bootstrap CI of the median, Mann-Whitney U and compare."""

import json
import math

import numpy as np
import pytest

from celerinfer.results import stats
from celerinfer.results.stats import compare_samples, mann_whitney_u, summarize

STAT_FIELDS = ["unit", "n", "median", "mean", "std", "min", "max", "p90", "p99", "ci95_low", "ci95_high"]


def test_summarize_known_samples_ns_to_ms():
    s = summarize([1_000_000, 2_000_000, 3_000_000, 4_000_000, 10_000_000], unit="ms", raw_unit="ns")
    assert list(s) == STAT_FIELDS + ["samples_ns"]
    assert s["unit"] == "ms" and s["n"] == 5
    assert s["median"] == pytest.approx(3.0, abs=1e-12)
    assert s["mean"] == pytest.approx(4.0, abs=1e-12)
    # deviations -3 -2 -1 0 6: sum of squares 50, ddof=1 -> 12.5
    assert s["std"] == pytest.approx(math.sqrt(12.5), rel=1e-12)
    assert s["min"] == pytest.approx(1.0) and s["max"] == pytest.approx(10.0)
    # linear interpolation: position 0.9 * 4 = 3.6 -> 4 + 0.6 * 6; 0.99 * 4 = 3.96 -> 4 + 0.96 * 6
    assert s["p90"] == pytest.approx(7.6, rel=1e-12)
    assert s["p99"] == pytest.approx(9.76, rel=1e-12)
    assert s["samples_ns"] == [1_000_000, 2_000_000, 3_000_000, 4_000_000, 10_000_000]
    assert all(type(v) is int for v in s["samples_ns"])
    assert s["ci95_low"] <= s["median"] <= s["ci95_high"]
    assert s["min"] <= s["ci95_low"] and s["ci95_high"] <= s["max"]
    # plain Python types only: the object goes straight into a JSON record
    assert all(type(s[k]) is float for k in STAT_FIELDS[2:])
    json.dumps(s, allow_nan=False)


def test_summarize_units_and_raw_units():
    s = summarize([1.5, 2.5, 3.5], unit="us", raw_unit="ms")
    assert s["samples_ns"] == [1_500_000, 2_500_000, 3_500_000]
    assert s["median"] == pytest.approx(2500.0) and s["unit"] == "us"
    s = summarize([2_000_000_000, 4_000_000_000], unit="s")
    assert s["median"] == pytest.approx(3.0) and s["min"] == pytest.approx(2.0)
    # fractional nanoseconds are rounded to integers
    assert summarize([1.4, 2.6], raw_unit="ns")["samples_ns"] == [1, 3]
    with pytest.raises(ValueError, match="unit"):
        summarize([1, 2], unit="minutes")
    with pytest.raises(ValueError, match="raw_unit"):
        summarize([1, 2], raw_unit="ps")


def test_summarize_non_time_quantity():
    s = summarize([10.0, 12.0, 11.0, 13.0], unit="GB/s", raw_unit=None)
    assert "samples_ns" not in s and s["samples"] == [10.0, 12.0, 11.0, 13.0]
    assert s["unit"] == "GB/s" and s["median"] == pytest.approx(11.5) and s["mean"] == pytest.approx(11.5)
    assert s["std"] == pytest.approx(np.std([10, 12, 11, 13], ddof=1))
    ints = summarize(np.array([3, 1, 2], dtype=np.int64), unit="bytes", raw_unit=None)
    assert ints["samples"] == [3, 1, 2] and all(type(v) is int for v in ints["samples"])


def test_summarize_single_sample():
    s = summarize([5_000_000])
    assert s["n"] == 1 and s["std"] is None
    assert s["median"] == s["mean"] == s["min"] == s["max"] == s["p90"] == s["p99"] == pytest.approx(5.0)
    assert s["ci95_low"] == s["ci95_high"] == pytest.approx(5.0)


@pytest.mark.parametrize("bad, message", [
    ([], "empty"),
    ([1.0, float("nan"), 2.0], "non-finite.*nan.*index 1"),
    ([1.0, float("inf")], r"non-finite.*\+inf"),
    ([[1.0, 2.0], [3.0, 4.0]], "flat"),
    (["a", "b"], "numbers"),
])
def test_summarize_rejects_bad_samples(bad, message):
    with pytest.raises(ValueError, match=message):
        summarize(bad, raw_unit=None, unit="x")


def test_median_ci_is_deterministic_and_sized_like_a_median_ci(rng):
    values = rng.normal(10.0, 1.0, size=400)
    a = summarize(values, unit="ms", raw_unit="ms")
    b = summarize(list(values), unit="ms", raw_unit="ms")
    assert (a["ci95_low"], a["ci95_high"]) == (b["ci95_low"], b["ci95_high"])
    assert a["ci95_low"] < a["median"] < a["ci95_high"]
    # standard error of a normal sample's median: sqrt(pi / 2) * sigma / sqrt(n) = 0.0627;
    # a 95% interval is about +-1.96 of that: 0.12 each side (far narrower than the data's range)
    half = (a["ci95_high"] - a["ci95_low"]) / 2
    assert 0.08 < half < 0.17
    # the low and high bounds come from the lower and upper tail of the resampled medians
    lo, hi = stats.bootstrap_median_ci(values, confidence=0.5)
    assert a["ci95_low"] < lo < a["median"] < hi < a["ci95_high"]


def test_mann_whitney_hand_computed():
    # a = 1 2 3, b = 4 5 6: ranks of a 1+2+3 = 6, U = 6 - 3*4/2 = 0; mu = 4.5;
    # sigma^2 = 3*3/12 * 7 = 5.25; z = (4.5 - 0.5) / sqrt(5.25); p = erfc(z / sqrt 2)
    u, p = mann_whitney_u([1, 2, 3], [4, 5, 6])
    assert u == 0.0
    assert p == pytest.approx(math.erfc(4.0 / math.sqrt(5.25) / math.sqrt(2.0)), rel=1e-12)
    assert p == pytest.approx(0.08086, abs=1e-5)
    # with ties: a = 1 2 2, b = 2 3 4: ranks 1, 3, 3 | 3, 5, 6 -> R_a = 7, U = 1; one tie group of 3:
    # sigma^2 = 9/12 * (7 - (27 - 3) / (6 * 5)) = 4.65; z = (3.5 - 0.5) / sqrt(4.65)
    u, p = mann_whitney_u([1, 2, 2], [2, 3, 4])
    assert u == 1.0
    assert p == pytest.approx(math.erfc(3.0 / math.sqrt(4.65) / math.sqrt(2.0)), rel=1e-12)
    assert p == pytest.approx(0.16416, abs=1e-5)


def test_mann_whitney_properties(rng):
    a, b = rng.normal(0, 1, 30), rng.normal(0.5, 1, 25)
    ua, pa = mann_whitney_u(a, b)
    ub, pb = mann_whitney_u(b, a)
    assert ua + ub == pytest.approx(30 * 25)
    assert pa == pytest.approx(pb)
    assert mann_whitney_u([2.0] * 5, [2.0] * 7) == (17.5, 1.0)  # all tied: no evidence at all
    assert mann_whitney_u(np.arange(50.0), np.arange(50.0) + 100)[1] < 1e-15


def test_compare_identical_distributions_not_significant(rng):
    a = rng.normal(1.0, 0.05, 20)
    c = compare_samples(a, rng.permutation(a))
    assert c.ratio == pytest.approx(1.0) and c.p_value == pytest.approx(1.0, abs=0.02)
    assert not c.significant and c.verdict.endswith("within noise")
    assert c.ratio_ci95[0] < 1.0 < c.ratio_ci95[1]
    c2 = compare_samples(rng.normal(1.0, 0.05, 20), rng.normal(1.0, 0.05, 20))
    assert not c2.significant and c2.p_value > 0.05


def test_compare_clear_shift_is_significant_with_direction(rng):
    a = 1.0 + rng.normal(0, 0.02, 20)
    b = 1.3 + rng.normal(0, 0.02, 20)
    c = compare_samples(a, b)
    assert c.n_a == c.n_b == 20
    assert c.median_a == pytest.approx(np.median(a)) and c.median_b == pytest.approx(np.median(b))
    assert c.ratio == pytest.approx(np.median(b) / np.median(a))
    assert 1.25 < c.ratio < 1.35
    assert 1.0 < c.ratio_ci95[0] <= c.ratio <= c.ratio_ci95[1] < 1.4
    assert c.p_value < 1e-6 and c.significant
    assert c.verdict.startswith(f"b is {c.ratio:.2f}x slower than a (95% CI ")
    assert c.verdict.endswith("p<0.001): beyond noise")
    back = compare_samples(b, a)
    assert back.ratio == pytest.approx(1 / c.ratio) and back.significant
    assert back.verdict.startswith(f"b is {c.ratio:.2f}x faster than a")
    up = compare_samples(a, b, lower_is_better=False, label_a="v1", label_b="v2")
    assert up.verdict.startswith("v2 is") and "x larger than v1" in up.verdict
    # deterministic
    assert compare_samples(a, b) == c


def test_compare_needs_both_ci_and_p():
    # 3 vs 3 fully separated: the ratio CI excludes 1 but p = 0.08 cannot reach 0.05
    c = compare_samples([1.0, 1.01, 1.02], [2.0, 2.01, 2.02])
    assert c.ratio_ci95[0] > 1.0
    assert c.p_value > 0.05 and not c.significant
    # and 3 a side can never reach it: "too few samples", not "within noise"
    assert "p=0.081" in c.verdict and "too few samples" in c.verdict and not c.enough_samples


def test_compare_rejects_bad_input():
    with pytest.raises(ValueError, match="median of a is 0"):
        compare_samples([0.0, 0.0, 1.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="empty"):
        compare_samples([], [1.0])
    with pytest.raises(ValueError, match="non-finite"):
        compare_samples([1.0, 2.0], [1.0, float("nan")])


def test_best_seconds_warms_up_then_keeps_the_shortest_call(monkeypatch):
    clock = iter([0.0, 5.0, 10.0, 12.0, 20.0, 23.0])  # the timed calls take 5, 2 and 3 s
    monkeypatch.setattr(stats.time, "perf_counter", lambda: next(clock))
    calls = []
    assert stats.best_seconds(lambda: calls.append(1), 3) == 2.0
    assert len(calls) == 4  # the warm-up call is not timed


def test_the_one_speedup_is_the_ratio_of_medians():
    from celerinfer.results.speedup import speedup

    base_rates = [10.0, 11.0, 9.0, 100.0]  # one prompt ran very fast without the cache
    opt_rates = [200.0, 220.0, 180.0, 300.0]
    s = speedup(base_rates, opt_rates)
    assert s.ratio == pytest.approx(np.median(opt_rates) / np.median(base_rates))
    assert s.ratio != pytest.approx(np.mean(np.array(opt_rates) / np.array(base_rates)))  # not a mean of ratios
    assert s.ci95[0] <= s.ratio <= s.ci95[1] and s.n_baseline == s.n_candidate == 4
    # the same runs as times give the same speedup: it does not depend on the unit
    times = speedup([1 / r for r in base_rates], [1 / r for r in opt_rates], higher_is_better=False)
    assert times.ratio == pytest.approx(s.ratio)
    assert "x (95% CI" in s.text() and speedup([2.0], [4.0]).text() == "2.00x"
    with pytest.raises(ValueError):
        speedup([], [1.0])
