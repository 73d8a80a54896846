"""Statistics against hand-computed values and scipy (the reference; recbench itself never imports scipy)."""

import math

import numpy as np
import pytest

from recbench.evaluation import stats

scipy_stats = pytest.importorskip("scipy.stats")
scipy_special = pytest.importorskip("scipy.special")


# --------------------------------------------------------------------------------------------- Wilcoxon


def test_wilcoxon_by_hand_with_a_zero_and_a_tie():
    a = np.array([3.0, 0.0, 5.0, 2.0, 4.0])
    b = np.array([2.0, 2.0, 2.0, 2.0, 1.0])
    # d = [1, -2, 3, 0, 3] -> the zero is dropped; |d| = 1, 2, 3, 3 -> ranks 1, 2, 3.5, 3.5
    # W+ = 1 + 3.5 + 3.5 = 8; n = 4: mean 5; var = 4*5*9/24 - (2^3 - 2)/48 = 7.5 - 0.125 = 7.375
    z = 3 / math.sqrt(7.375)
    result = stats.wilcoxon_signed_rank(a, b)
    assert result.n == 4
    assert result.statistic == pytest.approx(z, rel=1e-12)
    assert result.p_value == pytest.approx(math.erfc(z / math.sqrt(2)), rel=1e-12)


@pytest.mark.parametrize("n", [3, 10, 57, 500, 6040])
def test_wilcoxon_matches_scipy_with_ties_and_zeros(n):
    rng = np.random.default_rng(n)
    # per-user NDCG-like values: many exact zeros and ties, as real runs give
    ranks_a = rng.integers(1, 15, n)
    ranks_b = rng.integers(1, 15, n)
    a = np.where(ranks_a <= 10, 1 / np.log2(ranks_a + 1), 0.0)
    b = np.where(ranks_b <= 10, 1 / np.log2(ranks_b + 1), 0.0)
    ours = stats.wilcoxon_signed_rank(a, b)
    ref = scipy_stats.wilcoxon(a, b, zero_method="wilcox", correction=False, method="approx")
    assert ours.p_value == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-15)
    assert abs(ours.statistic) == pytest.approx(abs(ref.zstatistic), rel=1e-9)


def test_wilcoxon_sign_and_degenerate_cases():
    a = np.array([0.5, 0.4, 0.3, 0.9])
    assert stats.wilcoxon_signed_rank(a, a - 0.1).statistic > 0
    assert stats.wilcoxon_signed_rank(a - 0.1, a).statistic < 0
    same = stats.wilcoxon_signed_rank(a, a)  # no non-zero difference: indistinguishable (scipy says NaN)
    assert same.p_value == 1.0 and same.n == 0
    with pytest.raises(ValueError, match="same users"):
        stats.wilcoxon_signed_rank(a, a[:3])
    with pytest.raises(ValueError, match="non-finite"):
        stats.wilcoxon_signed_rank(a, np.array([0.1, np.nan, 0.2, 0.3]))


# --------------------------------------------------------------------------------------------- t-test


def test_paired_t_by_hand():
    # d = [1, 2, 3, 4]: mean 2.5, sd sqrt(5/3), t = 2.5 / (sd / 2), df 3
    a = np.array([2.0, 4.0, 6.0, 8.0])
    b = np.array([1.0, 2.0, 3.0, 4.0])
    t = 2.5 / (math.sqrt(5 / 3) / 2)
    # Student t with 3 df: P(|T| >= t) = 1 - (2 / pi) (x / (1 + x^2) + atan x), x = t / sqrt(3)
    x = t / math.sqrt(3)
    p = 1 - (2 / math.pi) * (x / (1 + x * x) + math.atan(x))
    result = stats.paired_t_test(a, b)
    assert result.statistic == pytest.approx(t, rel=1e-12)
    assert result.p_value == pytest.approx(p, rel=1e-10)
    assert result.n == 4


@pytest.mark.parametrize("t", [0.0, 0.3, 1.0, 2.5, 12.0])
def test_student_t_closed_forms_for_one_and_two_df(t):
    assert stats.student_t_two_sided_p(t, 1) == pytest.approx(
        1 - 2 / math.pi * math.atan(t), rel=1e-12, abs=1e-15
    )
    assert stats.student_t_two_sided_p(t, 2) == pytest.approx(
        1 - t / math.sqrt(2 + t * t), rel=1e-10, abs=1e-15
    )


@pytest.mark.parametrize("df", [1, 2, 3, 7, 30, 99, 1000, 6039, 100_000])
def test_student_t_matches_scipy(df):
    for t in (0.0, 0.01, 0.5, 1.0, 1.96, 3.0, 6.0, 30.0, -2.2):
        assert stats.student_t_two_sided_p(t, df) == pytest.approx(
            2 * scipy_stats.t.sf(abs(t), df), rel=1e-7, abs=1e-300
        )
        assert stats.student_t_cdf(t, df) == pytest.approx(scipy_stats.t.cdf(t, df), rel=1e-7, abs=1e-300)


@pytest.mark.parametrize("n", [2, 5, 80, 6040])
def test_paired_t_matches_scipy(n):
    rng = np.random.default_rng(7 + n)
    a = rng.random(n)
    b = a + rng.normal(0.02, 0.1, n)
    ours = stats.paired_t_test(a, b)
    ref = scipy_stats.ttest_rel(a, b)
    assert ours.statistic == pytest.approx(ref.statistic, rel=1e-10)
    assert ours.p_value == pytest.approx(ref.pvalue, rel=1e-7)


def test_paired_t_degenerate_cases():
    a = np.array([0.25, 0.5, 0.75])
    assert stats.paired_t_test(a, a).p_value == 1.0
    shifted = stats.paired_t_test(a + 0.5, a)  # every difference exactly 0.5: no doubt at all
    assert shifted.p_value == 0.0 and shifted.statistic == math.inf
    with pytest.raises(ValueError, match="at least 2"):
        stats.paired_t_test(a[:1], a[:1])


def test_incomplete_beta_identities_and_scipy():
    for x in (0.0, 0.1, 0.5, 0.99, 1.0):
        assert stats.regularized_incomplete_beta(1, 1, x) == pytest.approx(x, abs=1e-15)
        assert stats.regularized_incomplete_beta(3, 1, x) == pytest.approx(x**3, abs=1e-14)
    for a, b, x in [(0.5, 0.5, 0.3), (2, 3, 0.9), (50, 0.5, 0.97), (0.5, 200, 0.001), (1e4, 0.5, 0.9995)]:
        assert stats.regularized_incomplete_beta(a, b, x) == pytest.approx(
            scipy_special.betainc(a, b, x), rel=1e-8
        )
    with pytest.raises(ValueError):
        stats.regularized_incomplete_beta(1, 1, 1.5)


# --------------------------------------------------------------------------------------------- bootstrap


def test_bootstrap_is_seeded_and_independent_of_the_other_vectors():
    rng = np.random.default_rng(0)
    a, b = rng.random(300), rng.random(300)
    first = stats.bootstrap_ci(a)
    assert first == stats.bootstrap_ci(a)  # same seed, same resamples, same interval
    assert first.resamples == stats.BOOTSTRAP_RESAMPLES == 10_000 and first.seed == stats.BOOTSTRAP_SEED
    together = stats.bootstrap_means([b, a])
    alone = stats.bootstrap_means([a])
    assert np.array_equal(together[1], alone[0])
    assert stats.bootstrap_ci(a, seed=1) != first
    assert first.estimate == pytest.approx(a.mean())
    assert first.low < first.estimate < first.high


def test_bootstrap_by_hand_and_degenerate():
    constant = stats.bootstrap_ci(np.full(20, 0.25))
    assert (constant.low, constant.estimate, constant.high) == (0.25, 0.25, 0.25)
    # two users {0, 1}: a resample's mean is 0, 0.5 or 1 with probabilities 1/4, 1/2, 1/4
    means = stats.bootstrap_means([np.array([0.0, 1.0])], resamples=20_000)[0]
    assert set(np.unique(means)) == {0.0, 0.5, 1.0}
    assert np.mean(means == 0.5) == pytest.approx(0.5, abs=0.02)
    with pytest.raises(ValueError):
        stats.bootstrap_ci(np.array([]))
    with pytest.raises(ValueError, match="non-finite"):
        stats.bootstrap_ci(np.array([0.1, np.inf]))


def test_bootstrap_interval_agrees_with_theory_and_scipy():
    rng = np.random.default_rng(11)
    values = rng.normal(0.3, 0.2, 2000)
    ours = stats.bootstrap_ci(values)
    half = 1.959964 * values.std(ddof=1) / math.sqrt(len(values))
    assert ours.low == pytest.approx(values.mean() - half, abs=0.1 * half)
    assert ours.high == pytest.approx(values.mean() + half, abs=0.1 * half)
    ref = scipy_stats.bootstrap(
        (values,), np.mean, n_resamples=10_000, method="percentile", random_state=np.random.default_rng(5)
    ).confidence_interval
    assert ours.low == pytest.approx(ref.low, abs=0.05 * half)  # different draws: Monte Carlo error only
    assert ours.high == pytest.approx(ref.high, abs=0.05 * half)


def test_paired_bootstrap_is_the_bootstrap_of_the_differences():
    rng = np.random.default_rng(2)
    a, b = rng.random(100), rng.random(100)
    assert stats.paired_bootstrap_ci(a, b) == stats.bootstrap_ci(a - b)
    assert stats.paired_bootstrap_ci(a, b).estimate == pytest.approx(a.mean() - b.mean())


# --------------------------------------------------------------------------------------------- seeds


def test_seed_summary():
    s = stats.seed_summary([0.30, 0.32, 0.34])
    assert s.mean == pytest.approx(0.32) and s.std == pytest.approx(0.02) and s.n == 3  # ddof = 1
    one = stats.seed_summary([0.3])
    assert one.std is None and one.mean == 0.3
    with pytest.raises(ValueError):
        stats.seed_summary([0.3, float("nan")])
