"""Statistics for comparing runs: paired per-user tests, bootstrap intervals, summaries across seeds.

Pure functions over numpy arrays (scipy is only the reference in the tests). Two runs are compared on the
same users, pairing each user's metric in run A with the same user's metric in run B (d = a - b).

- :func:`wilcoxon_signed_rank`: two-sided, normal approximation, as
  ``scipy.stats.wilcoxon(a, b, zero_method="wilcox", correction=False, method="approx")``: zero differences
  are dropped, tied |d| share their average rank and shrink the variance (tie correction), no continuity
  correction. With no non-zero difference at all the runs are indistinguishable: p = 1 (scipy gives NaN).
- :func:`paired_t_test`: two-sided Student t on d with n - 1 degrees of freedom; the t CDF is computed here
  from the regularised incomplete beta function (continued fraction). All d equal: p = 1 if they are 0, else 0.
- :func:`bootstrap_ci`, :func:`paired_bootstrap_ci`: percentile bootstrap of the mean over users,
  ``BOOTSTRAP_RESAMPLES`` resamples with replacement drawn from ``numpy.random.default_rng(BOOTSTRAP_SEED)``;
  the same seed and user count give the same resamples, so every interval of one table uses the same draws.
- :func:`seed_summary`: mean and sample standard deviation (ddof = 1) over seeds.

Inputs must be finite: a NaN never becomes a statistic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
CI_LEVEL = 0.95
_CHUNK_ELEMENTS = 1 << 22  # resample-index block size (32 MiB of float64 weights); fixed: part of the stream


@dataclass(frozen=True)
class PairedTest:
    """A two-sided paired test. statistic: z (Wilcoxon, > 0 when a tends to exceed b) or t (t-test);
    n: the pairs that entered the test (Wilcoxon: the non-zero differences)."""

    name: str
    statistic: float
    p_value: float
    n: int


@dataclass(frozen=True)
class Interval:
    """A point estimate (the mean) and its percentile-bootstrap interval."""

    estimate: float
    low: float
    high: float
    level: float = CI_LEVEL
    resamples: int = BOOTSTRAP_RESAMPLES
    seed: int = BOOTSTRAP_SEED


@dataclass(frozen=True)
class SeedSummary:
    mean: float
    std: float | None  # sample std (ddof = 1); None with a single seed
    n: int


def _vector(values, what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{what} contains {int((~np.isfinite(arr)).sum())} non-finite values")
    return arr


def paired_differences(a, b) -> np.ndarray:
    """d = a - b for two equally long finite vectors of per-user values (same users, same order)."""
    a = _vector(a, "a")
    b = _vector(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"paired values need the same users: {len(a)} vs {len(b)}")
    return a - b


# --------------------------------------------------------------------------------------------- tests


def average_ranks(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ranks 1..n of x (ties share their average rank) and the sizes of the tie groups."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    ordered = x[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])  # first index of each tie group
    sizes = np.diff(np.r_[starts, len(x)])
    group_rank = starts + (sizes + 1) / 2.0  # mean of ranks start+1 .. start+size
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.repeat(group_rank, sizes)
    return ranks, sizes


def normal_two_sided_p(z: float) -> float:
    """P(|Z| >= |z|) for a standard normal Z."""
    return min(1.0, math.erfc(abs(z) / math.sqrt(2.0)))


def wilcoxon_signed_rank(a, b) -> PairedTest:
    """Two-sided Wilcoxon signed-rank test of a - b (normal approximation; see the module docstring)."""
    d = paired_differences(a, b)
    d = d[d != 0]  # zero_method="wilcox": zero differences carry no sign and are dropped
    n = len(d)
    if n == 0:
        return PairedTest("wilcoxon", 0.0, 1.0, 0)
    ranks, ties = average_ranks(np.abs(d))
    w_plus = float(ranks[d > 0].sum())
    mean = n * (n + 1) / 4.0
    var = n * (n + 1) * (2 * n + 1) / 24.0 - float((ties**3 - ties).sum()) / 48.0
    z = (w_plus - mean) / math.sqrt(var)  # var > 0 whenever n >= 1
    return PairedTest("wilcoxon", z, normal_two_sided_p(z), n)


def paired_t_test(a, b) -> PairedTest:
    """Two-sided paired t-test of a - b with n - 1 degrees of freedom."""
    d = paired_differences(a, b)
    n = len(d)
    if n < 2:
        raise ValueError(f"a paired t-test needs at least 2 pairs, got {n}")
    mean = float(d.mean())
    sd = float(d.std(ddof=1))
    if sd == 0.0:
        if mean == 0.0:
            return PairedTest("t-test", 0.0, 1.0, n)
        return PairedTest("t-test", math.copysign(math.inf, mean), 0.0, n)
    t = mean / (sd / math.sqrt(n))
    return PairedTest("t-test", t, student_t_two_sided_p(t, n - 1), n)


def student_t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with df degrees of freedom: I_{df / (df + t^2)}(df / 2, 1 / 2)."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be positive, got {df}")
    if math.isinf(t):
        return 0.0
    return regularized_incomplete_beta(df / 2.0, 0.5, df / (df + t * t))


def student_t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with df degrees of freedom."""
    tail = 0.5 * student_t_two_sided_p(t, df)
    return 1.0 - tail if t > 0 else tail


def regularized_incomplete_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b) for a, b > 0 and 0 <= x <= 1.

    I_x(a, b) = x^a (1 - x)^b / (a B(a, b)) * 1 / (1 + d1 / (1 + d2 / (1 + ...))) with
    d_{2m+1} = -(a + m)(a + b + m) x / ((a + 2m)(a + 2m + 1)) and d_{2m} = m (b - m) x / ((a + 2m - 1)(a + 2m)),
    a continued fraction that converges quickly for x < (a + 1) / (a + b + 2); above that point the symmetry
    I_x(a, b) = 1 - I_{1-x}(b, a) is used. Evaluated with the modified Lentz method.
    """
    if a <= 0 or b <= 0:
        raise ValueError(f"a and b must be positive, got a={a}, b={b}")
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"x must lie in [0, 1], got {x}")
    if x == 0.0 or x == 1.0:
        return x
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(b, a, 1.0 - x) / b


def _beta_fraction(a: float, b: float, x: float, tol: float = 1e-15, max_terms: int = 1_000_000) -> float:
    """The continued fraction 1 / (1 + d1 / (1 + d2 / ...)) of :func:`regularized_incomplete_beta`."""
    tiny = 1e-300
    c = 1.0
    d = 1.0 - (a + b) * x / (a + 1.0)  # first term d1 = -(a + b) x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, max_terms):
        for coef in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),  # even term d_{2m}
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),  # odd term d_{2m+1}
        ):
            d = 1.0 + coef * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + coef / c
            c = c if abs(c) > tiny else tiny
            step = c * d
            h *= step
        if abs(step - 1.0) < tol:
            return h
    raise ArithmeticError(f"incomplete beta did not converge for a={a}, b={b}, x={x}")


# --------------------------------------------------------------------------------------------- bootstrap


def bootstrap_means(
    vectors: Sequence[np.ndarray], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> list[np.ndarray]:
    """For each (n,) vector over the same n users: the means of `resamples` resamples of the users drawn
    with replacement, (resamples,) each. Every vector sees the same resamples, and a vector's means do not
    depend on the other vectors passed with it."""
    vectors = [_vector(v, "bootstrap values") for v in vectors]
    if not vectors:
        return []
    n = len(vectors[0])
    if n == 0 or any(len(v) != n for v in vectors):
        raise ValueError(
            f"bootstrap needs non-empty vectors over the same users, got {[len(v) for v in vectors]}"
        )
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    rng = np.random.default_rng(seed)
    out = [np.empty(resamples, dtype=np.float64) for _ in vectors]
    rows = max(1, _CHUNK_ELEMENTS // n)
    for start in range(0, resamples, rows):
        m = min(rows, resamples - start)
        idx = rng.integers(0, n, size=(m, n))  # (m, n) user indices of m resamples
        flat = (idx + (np.arange(m) * n)[:, None]).ravel()  # (m * n,) offsets into an (m, n) grid
        counts = np.bincount(flat, minlength=m * n).reshape(m, n).astype(np.float64)  # (m, n) draws per user
        for vec, dst in zip(vectors, out):
            dst[start : start + m] = (counts @ vec) / n  # (m,)
    return out


def percentile_interval(
    estimate: float, means: np.ndarray, level: float = CI_LEVEL, seed: int = BOOTSTRAP_SEED
) -> Interval:
    """The percentile interval of bootstrap means (numpy's default linear quantile interpolation)."""
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return Interval(float(estimate), float(low), float(high), level, len(means), seed)


def bootstrap_ci(
    values, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED, level: float = CI_LEVEL
) -> Interval:
    """Percentile-bootstrap interval of the mean of per-user values."""
    values = _vector(values, "values")
    (means,) = bootstrap_means([values], resamples, seed)
    return percentile_interval(float(values.mean()), means, level, seed)


def paired_bootstrap_ci(
    a, b, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED, level: float = CI_LEVEL
) -> Interval:
    """Percentile-bootstrap interval of the mean paired difference mean(a - b) (users resampled as pairs)."""
    return bootstrap_ci(paired_differences(a, b), resamples, seed, level)


# --------------------------------------------------------------------------------------------- seeds


def seed_summary(values) -> SeedSummary:
    """Mean and sample standard deviation (ddof = 1) of one value per seed."""
    arr = _vector(values, "per-seed values")
    if len(arr) == 0:
        raise ValueError("no seeds to summarise")
    std = float(arr.std(ddof=1)) if len(arr) > 1 else None
    return SeedSummary(float(arr.mean()), std, len(arr))
