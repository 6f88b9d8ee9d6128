"""The C++ sampler through celerinfer._core.sample: seeds, top-k, top-p, temperature, the
repetition penalty and argument checks. Frequencies are measured over thousands of draws done in
C++ (num_draws); the seeds are fixed, so every statistical check is deterministic, and the
tolerances are several standard deviations wide (stated at each check). The exact distribution
the sampler draws from (_core.sampling_distribution) is compared with a numpy reference."""

import math

import numpy as np
import pytest

from celerinfer import _core

sample = _core.sample


def log_probs(probs):
    """float32 logits whose softmax is `probs`."""
    return np.log(np.asarray(probs, dtype=np.float64)).astype(np.float32)


def counts(tokens, vocab):
    return np.bincount(np.asarray(tokens).ravel(), minlength=vocab)


def softmax(x):
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x.max())
    return e / e.sum()


def chi_square(observed, expected_probs):
    """Pearson's statistic over the tokens with expected probability > 0."""
    n = observed.sum()
    keep = expected_probs > 0
    exp = n * expected_probs[keep]
    return float(((observed[keep] - exp) ** 2 / exp).sum()), int(keep.sum()) - 1


# chi-square critical values at p = 0.001 (a fixed seed makes the test deterministic; the wide
# level only guards against having picked an unlucky seed when the test was written)
CHI2_999 = {2: 13.82, 3: 16.27, 4: 18.47, 5: 20.52, 6: 22.46, 7: 24.32}


# ---------------------------------------------------------------------------------- basics


def test_returns_int64_batch_by_draws_and_accepts_1d_logits():
    logits = np.zeros((3, 10), dtype=np.float32)
    out = sample(logits, temperature=1.0, seed=1, num_draws=7)
    assert out.dtype == np.int64
    assert out.shape == (3, 7)
    assert ((out >= 0) & (out < 10)).all()
    one = sample(np.zeros(10, dtype=np.float32), temperature=1.0, seed=1, num_draws=7)
    assert one.shape == (1, 7)
    # a 1-D row is row 0 of a batch: the same stream
    assert np.array_equal(one[0], out[0])


def test_default_is_greedy():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((4, 50)).astype(np.float32)
    out = sample(logits, num_draws=3)
    assert (out == logits.argmax(axis=1)[:, None]).all()


def test_greedy_ties_go_to_the_lowest_id():
    logits = np.array([[0.0, 3.0, 1.0, 3.0, 3.0], [2.0, 2.0, 2.0, 2.0, 2.0]], dtype=np.float32)
    assert sample(logits)[:, 0].tolist() == [1, 0]


def test_non_contiguous_logits_are_read_correctly():
    rng = np.random.default_rng(1)
    big = rng.standard_normal((6, 40)).astype(np.float32)
    view = big[::2, ::2]  # strided view
    assert not view.flags.c_contiguous
    assert sample(view)[:, 0].tolist() == view.argmax(axis=1).tolist()


# ------------------------------------------------------------------- the whole distribution


def reference_distribution(logits, temperature, top_k, top_p, penalty, history):
    """What the sampler should draw from, for one row, written plainly with numpy (float64)."""
    x = np.asarray(logits, dtype=np.float64).copy()
    if penalty != 1.0 and history is not None:
        for token in set(int(h) for h in history if h >= 0):
            x[token] = x[token] / penalty if x[token] > 0 else x[token] * penalty
    vocab = x.size
    if temperature == 0.0:
        out = np.zeros(vocab)
        out[int(np.argmax(x))] = 1.0  # np.argmax: the first maximum
        return out
    order = np.lexsort((np.arange(vocab), -x))  # most likely first, ties by lower id
    order = order[np.isfinite(x[order]) | (x[order] > 0)]  # drop -inf
    if top_k > 0:
        order = order[:top_k]
    z = x[order] / temperature
    p = np.exp(z - z.max())
    if top_p < 1.0:
        cum = np.cumsum(p) / p.sum()
        n = int(np.argmax(cum >= top_p - 1e-6)) + 1
        order, p = order[:n], p[:n]
    out = np.zeros(vocab)
    out[order] = p / p.sum()
    return out


@pytest.mark.parametrize("case", range(24))
def test_distribution_matches_a_numpy_reference(case):
    """sampling_distribution against the numpy reference on random settings: the same kept tokens
    and probabilities within 1e-12."""
    rng = np.random.default_rng(1000 + case)
    batch, vocab = 3, int(rng.integers(2, 400))
    logits = (rng.standard_normal((batch, vocab)) * rng.uniform(0.5, 8.0)).astype(np.float32)
    if case % 3 == 0:  # ties
        logits = np.round(logits * 2) / 2
    if case % 4 == 1:  # impossible tokens (but not all)
        logits[rng.random((batch, vocab)) < 0.2] = -np.inf
        logits[:, 0] = 0.0
    temperature = [0.0, 0.3, 1.0, 2.5][case % 4]
    top_k = int([0, 1, 5, vocab // 2, vocab + 3][case % 5])
    top_p = [1.0, 0.9, 0.5, 0.99, 0.05, 1.0][case % 6]
    penalty = [1.0, 1.3, 0.7][case % 3]
    history = rng.integers(-3, vocab, size=(batch, 6))
    got = _core.sampling_distribution(
        logits, temperature=temperature, top_k=top_k, top_p=top_p, repetition_penalty=penalty, history=history
    )
    assert got.shape == (batch, vocab) and got.dtype == np.float64
    for b in range(batch):
        want = reference_distribution(logits[b], temperature, top_k, top_p, penalty, history[b])
        assert np.array_equal(got[b] > 0, want > 0), f"row {b}: kept tokens differ"
        np.testing.assert_allclose(got[b], want, rtol=0, atol=1e-12)
        assert abs(got[b].sum() - 1.0) < 1e-12


def test_distribution_on_a_large_vocabulary_matches_the_reference():
    """150k tokens: the vectorised paths, the top-p binning and the heap top-k against the reference."""
    rng = np.random.default_rng(7)
    vocab = 151_936
    logits = (rng.standard_normal(vocab) * 3).astype(np.float32)
    history = rng.integers(0, vocab, size=300)
    for kwargs in (
        dict(temperature=1.0),
        dict(temperature=0.8, top_p=0.9),
        dict(temperature=0.8, top_k=50),
        dict(temperature=1.2, top_k=40_000, top_p=0.95, repetition_penalty=1.2),
        dict(temperature=0.0, repetition_penalty=1.5),
    ):
        got = _core.sampling_distribution(logits, history=history, **kwargs)[0]
        want = reference_distribution(
            logits,
            kwargs["temperature"],
            kwargs.get("top_k", 0),
            kwargs.get("top_p", 1.0),
            kwargs.get("repetition_penalty", 1.0),
            history,
        )
        assert np.array_equal(got > 0, want > 0), kwargs
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12, err_msg=str(kwargs))


def test_draws_follow_the_reported_distribution():
    """top_k=6, top_p=0.9, penalty 1.4, T=0.9 on 30 tokens: 40000 draws against sampling_distribution
    (chi-square below the p = 0.001 critical value)."""
    rng = np.random.default_rng(3)
    logits = (rng.standard_normal((1, 30)) * 1.5).astype(np.float32)
    history = np.argsort(-logits[0])[:2][None, :]  # penalise the two most likely tokens
    kwargs = dict(temperature=0.9, top_k=6, top_p=0.9, repetition_penalty=1.4, history=history)
    probs = _core.sampling_distribution(logits, **kwargs)[0]
    out = sample(logits, seed=12, num_draws=40000, **kwargs)
    observed = counts(out, 30)
    assert observed[probs == 0].sum() == 0
    stat, dof = chi_square(observed, probs)
    assert 2 <= dof <= 5
    assert stat < CHI2_999[dof], f"chi2 = {stat:.1f} with {dof} dof"


# ------------------------------------------------------------------------------------ seeds


def test_same_seed_gives_the_same_tokens():
    logits = np.zeros((2, 1000), dtype=np.float32)
    a = sample(logits, temperature=1.0, top_p=0.9, seed=1234, num_draws=500)
    b = sample(logits, temperature=1.0, top_p=0.9, seed=1234, num_draws=500)
    assert np.array_equal(a, b)
    # 1000 equally likely tokens: the draws really vary
    assert len(np.unique(a[0])) > 300


def test_different_seeds_give_different_draws():
    logits = np.zeros((1, 1000), dtype=np.float32)  # flat: two seeds agree with p = 1/1000
    a = sample(logits, temperature=1.0, seed=1, num_draws=2000)
    b = sample(logits, temperature=1.0, seed=2, num_draws=2000)
    agree = int((a == b).sum())
    # expected agreement 2 of 2000; allow up to 20
    assert agree <= 20, f"{agree} of 2000 draws agree between seeds 1 and 2"


def test_rows_have_independent_streams():
    logits = np.zeros((2, 1000), dtype=np.float32)  # identical rows
    out = sample(logits, temperature=1.0, seed=5, num_draws=2000)
    agree = int((out[0] == out[1]).sum())
    assert agree <= 20, f"rows 0 and 1 agree on {agree} of 2000 draws"


def test_num_draws_are_successive_draws_of_one_stream():
    logits = np.zeros((1, 64), dtype=np.float32)
    many = sample(logits, temperature=1.0, seed=9, num_draws=50)
    assert np.array_equal(sample(logits, temperature=1.0, seed=9, num_draws=10)[0], many[0, :10])


# ------------------------------------------------------------------------------------ top-k


def top_k_logits(rng, vocab, k):
    """Random logits where k tokens (random ids) stand clearly above the rest; returns (logits, set)."""
    logits = rng.uniform(-2.0, 0.0, size=vocab).astype(np.float32)
    top = rng.choice(vocab, size=k, replace=False)
    logits[top] = rng.uniform(1.0, 1.5, size=k).astype(np.float32)
    return logits, set(top.tolist())


@pytest.mark.parametrize("k", [1, 3, 10])
def test_top_k_never_samples_outside_the_k_largest(k):
    rng = np.random.default_rng(100 + k)
    logits, top = top_k_logits(rng, 500, k)
    out = sample(logits, temperature=1.0, top_k=k, seed=k, num_draws=5000)
    drawn = set(out.ravel().tolist())
    assert drawn <= top, f"drew {sorted(drawn - top)} outside the top {k}"
    # with 5000 draws every member (probability >= e^1/(k e^1.5) >= 0.06) appears
    assert drawn == top


def test_top_k_without_it_the_tail_is_sampled():
    """The check above can fail: without top-k the same logits do draw outside the set."""
    rng = np.random.default_rng(103)
    logits, top = top_k_logits(rng, 500, 3)
    out = sample(logits, temperature=1.0, seed=3, num_draws=5000)
    assert not set(out.ravel().tolist()) <= top


def test_top_k_ties_at_the_boundary_keep_the_lower_id():
    logits = np.array([0.0, 5.0, 2.0, 2.0, 2.0, 1.0], dtype=np.float32)
    out = sample(logits, temperature=1.0, top_k=2, seed=0, num_draws=3000)
    assert set(out.ravel().tolist()) == {1, 2}


def test_top_k_larger_than_vocab_is_no_filter():
    logits = np.zeros(8, dtype=np.float32)
    out = sample(logits, temperature=1.0, top_k=1000, seed=0, num_draws=2000)
    assert set(out.ravel().tolist()) == set(range(8))


def test_top_k_keeps_relative_probabilities():
    """Within the kept set, frequencies follow the renormalised softmax (chi-square, p = 0.001)."""
    logits = np.array([2.0, -5.0, 1.0, 0.0, -5.0, 1.5, -5.0], dtype=np.float32)
    out = sample(logits, temperature=1.0, top_k=4, seed=17, num_draws=20000)
    expected = softmax(logits)
    expected[[1, 4, 6]] = 0.0
    expected /= expected.sum()
    observed = counts(out, 7)
    assert observed[[1, 4, 6]].sum() == 0
    stat, dof = chi_square(observed, expected)
    assert stat < CHI2_999[dof], f"chi2 = {stat:.1f} with {dof} dof"


# ------------------------------------------------------------------------------------ top-p


NUCLEUS_PROBS = [0.5, 0.3, 0.15, 0.05]


@pytest.mark.parametrize(
    "top_p, nucleus",
    [
        (0.8, {0, 1}),  # 0.5 + 0.3 reaches 0.8 exactly: no third token
        (0.81, {0, 1, 2}),
        (0.5, {0}),  # the first token alone reaches 0.5
        (0.51, {0, 1}),
        (0.95, {0, 1, 2}),  # 0.5 + 0.3 + 0.15 = 0.95
        (0.96, {0, 1, 2, 3}),
        (1e-6, {0}),  # always at least one token
        (1.0, {0, 1, 2, 3}),  # off
    ],
)
def test_top_p_never_samples_outside_the_nucleus(top_p, nucleus):
    logits = log_probs(NUCLEUS_PROBS)
    out = sample(logits, temperature=1.0, top_p=top_p, seed=7, num_draws=5000)
    drawn = set(out.ravel().tolist())
    assert drawn == nucleus, f"top_p={top_p}: drew {sorted(drawn)}, nucleus {sorted(nucleus)}"


@pytest.mark.parametrize("top_p, nucleus", [(0.4, {0}), (0.7, {0, 1}), (0.9, {0, 1, 2}), (0.41, {0, 1})])
def test_top_p_exact_boundary_is_not_widened_by_rounding(top_p, nucleus):
    """log(0.4) in float32 gives the first token 0.4 - 1.6e-9 after the softmax: top_p=0.4 must
    still keep it alone (the sampler allows a slack of 1e-6 for the float32 logits)."""
    out = sample(log_probs([0.4, 0.3, 0.2, 0.1]), temperature=1.0, top_p=top_p, seed=13, num_draws=4000)
    assert set(out.ravel().tolist()) == nucleus


def test_top_p_nucleus_does_not_depend_on_token_order():
    perm = np.array([3, 0, 2, 1])  # token perm[i] gets probability NUCLEUS_PROBS[i]
    probs = np.zeros(4)
    probs[perm] = NUCLEUS_PROBS
    out = sample(log_probs(probs), temperature=1.0, top_p=0.8, seed=3, num_draws=5000)
    assert set(out.ravel().tolist()) == {3, 0}


def test_top_p_renormalises_inside_the_nucleus():
    """top_p=0.81 keeps {0, 1, 2} with probabilities 0.5/0.95, 0.3/0.95, 0.15/0.95 (chi-square, p = 0.001)."""
    out = sample(log_probs(NUCLEUS_PROBS), temperature=1.0, top_p=0.81, seed=11, num_draws=20000)
    expected = np.array([0.5, 0.3, 0.15, 0.0]) / 0.95
    observed = counts(out, 4)
    assert observed[3] == 0
    stat, dof = chi_square(observed, expected)
    assert stat < CHI2_999[dof], f"chi2 = {stat:.1f} with {dof} dof"


def test_top_p_on_a_large_vocabulary():
    """A peaked 50k vocabulary: the nucleus is the 20 boosted tokens, found without sorting everything."""
    rng = np.random.default_rng(50)
    vocab = 50_000
    logits = np.full(vocab, -20.0, dtype=np.float32)
    boosted = rng.choice(vocab, size=100, replace=False)
    logits[boosted] = np.linspace(5.0, 0.0, 100, dtype=np.float32)  # boosted[0] largest
    probs = softmax(logits)
    order = np.argsort(-probs, kind="stable")
    cum = np.cumsum(probs[order])
    top_p = 0.9
    n_keep = int(np.searchsorted(cum, top_p - 1e-6) + 1)
    nucleus = set(order[:n_keep].tolist())
    out = sample(logits, temperature=1.0, top_p=top_p, seed=2, num_draws=5000)
    drawn = set(out.ravel().tolist())
    assert drawn <= nucleus
    assert len(drawn) > n_keep // 2


def test_top_k_then_top_p():
    """top-k first, then top-p on the renormalised k tokens."""
    # probabilities 0.4, 0.3, 0.2, 0.1 and top_p=0.75. Alone: 0.4 + 0.3 = 0.7 < 0.75 -> {0, 1, 2}.
    # After top_k=3 the kept tokens have 4/9, 3/9, 2/9: 4/9 + 3/9 = 0.78 >= 0.75 -> {0, 1}.
    logits = log_probs([0.4, 0.3, 0.2, 0.1])
    alone = sample(logits, temperature=1.0, top_p=0.75, seed=1, num_draws=4000)
    both = sample(logits, temperature=1.0, top_k=3, top_p=0.75, seed=1, num_draws=4000)
    assert set(alone.ravel().tolist()) == {0, 1, 2}
    assert set(both.ravel().tolist()) == {0, 1}


# ------------------------------------------------------------------------------ temperature


def test_tiny_temperature_equals_greedy():
    rng = np.random.default_rng(8)
    logits = rng.standard_normal((5, 2000)).astype(np.float32)
    greedy = logits.argmax(axis=1)
    out = sample(logits, temperature=1e-6, seed=4, num_draws=200)
    assert (out == greedy[:, None]).all()


def test_temperature_one_follows_softmax():
    """8 tokens, 40000 draws: Pearson's chi-square below the p = 0.001 critical value, and every
    frequency within 0.01 of its probability (> 4 standard deviations, sd <= 0.0025)."""
    logits = np.array([1.0, 0.5, 0.0, -0.5, 2.0, -1.0, 0.25, 1.5], dtype=np.float32)
    out = sample(logits, temperature=1.0, seed=2024, num_draws=40000)
    observed = counts(out, 8)
    expected = softmax(logits)
    assert np.abs(observed / observed.sum() - expected).max() < 0.01
    stat, dof = chi_square(observed, expected)
    assert stat < CHI2_999[dof], f"chi2 = {stat:.1f} with {dof} dof"


def test_temperature_flattens_and_sharpens():
    """Frequencies follow softmax(logits / T): T=2 flattens, T=0.5 sharpens (chi-square, p = 0.001)."""
    logits = np.array([1.0, 0.0, -1.0, 0.5], dtype=np.float32)
    for t in (0.5, 2.0):
        out = sample(logits, temperature=t, seed=31, num_draws=30000)
        stat, dof = chi_square(counts(out, 4), softmax(logits / t))
        assert stat < CHI2_999[dof], f"T={t}: chi2 = {stat:.1f} with {dof} dof"
    # and the plain softmax (T = 1) is rejected for T = 2: the check can fail
    out = sample(logits, temperature=2.0, seed=31, num_draws=30000)
    stat, dof = chi_square(counts(out, 4), softmax(logits))
    assert stat > CHI2_999[dof]


def test_minus_infinity_is_impossible_and_plus_infinity_certain():
    logits = np.array([0.0, -np.inf, 0.0, -np.inf], dtype=np.float32)
    out = sample(logits, temperature=1.0, seed=0, num_draws=2000)
    assert set(out.ravel().tolist()) == {0, 2}
    logits = np.array([0.0, np.inf, 5.0, np.inf], dtype=np.float32)
    out = sample(logits, temperature=1.0, seed=0, num_draws=2000)
    assert set(out.ravel().tolist()) == {1, 3}
    assert sample(logits)[0, 0] == 1


# ------------------------------------------------------------------------ repetition penalty


def test_repetition_penalty_lowers_the_frequency_of_repeated_tokens():
    """Flat logits 1.0 over 8 tokens; history {2, 5}; penalty 2 -> their logit 0.5. Expected
    frequency of each: e^0.5 / (6 e + 2 e^0.5) = 0.0845 vs 0.125 without; 20000 draws (sd 0.002)."""
    logits = np.ones((1, 8), dtype=np.float32)
    history = np.array([[2, 5, 5, -1]])  # -1: padding
    plain = counts(sample(logits, temperature=1.0, seed=3, num_draws=20000, history=history), 8) / 20000
    pen = counts(
        sample(logits, temperature=1.0, seed=3, num_draws=20000, history=history, repetition_penalty=2.0), 8
    ) / 20000
    expected = math.exp(0.5) / (6 * math.e + 2 * math.exp(0.5))
    assert abs(plain[2] - 0.125) < 0.012 and abs(plain[5] - 0.125) < 0.012
    assert abs(pen[2] - expected) < 0.012 and abs(pen[5] - expected) < 0.012
    assert pen[2] < plain[2] - 0.02 and pen[5] < plain[5] - 0.02
    # the others gain
    assert pen[[0, 1, 3, 4, 6, 7]].min() > 0.125


def test_repetition_penalty_on_negative_logits_also_lowers():
    logits = np.full((1, 4), -1.0, dtype=np.float32)
    history = np.array([[0]])
    pen = counts(sample(logits, temperature=1.0, seed=8, num_draws=20000, history=history, repetition_penalty=3.0), 4)
    # token 0: logit -3 -> e^-3 / (3 e^-1 + e^-3) = 0.043 (sd 0.0015)
    expected = math.exp(-3) / (3 * math.exp(-1) + math.exp(-3))
    assert abs(pen[0] / 20000 - expected) < 0.01


def test_repetition_penalty_changes_the_greedy_choice():
    logits = np.array([[3.0, 2.0, 0.0], [-1.0, -1.5, -4.0]], dtype=np.float32)
    history = np.array([[0, -1], [0, 0]])
    assert sample(logits, history=history)[:, 0].tolist() == [0, 0]  # no penalty: unchanged
    # positive: 3 / 2 = 1.5 < 2; negative: -1 * 2 = -2 < -1.5
    assert sample(logits, history=history, repetition_penalty=2.0)[:, 0].tolist() == [1, 1]
    # only the history's tokens are touched: with token 1 in the history instead, 0 stays
    assert sample(logits, history=np.array([[1], [1]]), repetition_penalty=2.0)[:, 0].tolist() == [0, 0]
    # a 1-D history goes with 1-D logits
    assert sample(logits[0], history=np.array([0]), repetition_penalty=2.0)[0, 0] == 1


def test_padding_in_history_is_ignored():
    logits = np.array([[3.0, 2.0]], dtype=np.float32)
    assert sample(logits, history=np.array([[-1, -7]]), repetition_penalty=5.0)[0, 0] == 0
    assert sample(logits, history=np.zeros((1, 0), dtype=np.int64), repetition_penalty=5.0)[0, 0] == 0
    assert sample(logits, history=np.array([[-1, 0]], dtype=np.int32), repetition_penalty=5.0)[0, 0] == 1


# -------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(temperature=-0.5), "temperature"),
        (dict(temperature=float("nan")), "temperature"),
        (dict(temperature=float("inf")), "temperature"),
        (dict(top_p=0.0), "top_p"),
        (dict(top_p=1.5), "top_p"),
        (dict(top_p=float("nan")), "top_p"),
        (dict(top_k=-1), "top_k"),
        (dict(repetition_penalty=0.0), "repetition_penalty"),
        (dict(repetition_penalty=-2.0), "repetition_penalty"),
        (dict(num_draws=0), "num_draws"),
    ],
)
def test_bad_parameters_raise_value_error(kwargs, match):
    logits = np.zeros((2, 5), dtype=np.float32)
    with pytest.raises(ValueError, match=match):
        sample(logits, **kwargs)


def test_nan_logits_raise_naming_the_row():
    logits = np.zeros((3, 5), dtype=np.float32)
    logits[2, 3] = np.nan
    for t in (0.0, 1.0):
        with pytest.raises(ValueError, match="row 2"):
            sample(logits, temperature=t)


def test_all_impossible_tokens_raise():
    logits = np.full((1, 5), -np.inf, dtype=np.float32)
    for t in (0.0, 1.0):
        with pytest.raises(ValueError, match="-inf"):
            sample(logits, temperature=t)


@pytest.mark.parametrize(
    "logits",
    [
        np.zeros((2, 3, 4), dtype=np.float32),  # 3-D
        np.zeros((), dtype=np.float32),  # scalar
        np.zeros((2, 0), dtype=np.float32),  # empty vocabulary
        np.zeros((2, 4), dtype=np.float64),  # not float32
        np.zeros((2, 4), dtype=np.int32),
    ],
)
def test_bad_logits_raise_value_error(logits):
    with pytest.raises(ValueError, match="logits"):
        sample(logits)


@pytest.mark.parametrize(
    "history, match",
    [
        (np.array([[0, 5], [1, 2]]), "vocab"),  # id == vocab size
        (np.array([[0, 1], [2, 99]]), "row 1"),  # the second row has the bad id
        (np.array([[0, 1, 2]]), "shape"),  # batch 1 for logits of batch 2
        (np.array([0, 1]), "shape"),  # 1-D history with 2-D logits of batch 2
        (np.zeros((2, 2, 2), dtype=np.int64), "shape"),
        (np.array([[0.0, 1.0], [1.0, 2.0]]), "integer"),  # float ids
    ],
)
def test_bad_history_raises_value_error(history, match):
    logits = np.zeros((2, 5), dtype=np.float32)
    with pytest.raises(ValueError, match=match):
        sample(logits, history=history, repetition_penalty=1.5)
