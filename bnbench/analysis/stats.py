"""Statistics over seeds: means with 95% CIs, paired differences, Holm correction, and the
verdict's exact test against a smallest effect `delta`.

Pure functions on arrays, so the report and the claim verdicts share one implementation
(bnbench.analysis.run_stats applies them to the `runs` table of bnbench.analysis.tables).

Rules, stated once:
- CI of a mean over seeds: Student t-interval, mean +/- t(0.975, n-1) * sd / sqrt(n).
- CI of a mean paired difference: the t-interval, except when n >= 10 and the differences
  are skewed (|sample skewness| > 1, as when a few seeds diverge): then a percentile
  bootstrap (10,000 resamples, fixed rng seed). Below 10 pairs the percentile bootstrap
  undercovers badly (with 3 pairs it has only 10 distinct resample means), so small n keeps
  the t-interval. The p-value follows the method: one-sample t-test, or the bootstrap
  p-value that matches the percentile interval (CI excludes 0 about when p < 0.05).
- Holm's step-down correction across every comparison in a table.
"""

from __future__ import annotations

import numpy as np
from scipy import stats as sps

CONFIDENCE = 0.95
BOOTSTRAP_MIN_N = 10  # below this, the t-interval is the honest choice
SKEW_LIMIT = 1.0
N_RESAMPLES = 10_000
RNG_SEED = 0


# --- one sample ----------------------------------------------------------------------------


def t_half_width(sd, n, confidence: float = CONFIDENCE):
    """Half the t-interval's width; NaN where n < 2. Works on scalars and arrays."""
    n = np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        dof = np.where(n > 1, n - 1, np.nan)
        return sps.t.ppf(0.5 + confidence / 2, dof) * np.asarray(sd, dtype=float) / np.sqrt(n)


def _clean(values) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    return values[~np.isnan(values)]


def ci_mean(values, confidence: float = CONFIDENCE) -> tuple[float, float, float, int]:
    """(mean, lo, hi, n) with the t-interval; NaNs dropped; lo = hi = NaN when n < 2."""
    x = _clean(values)
    if len(x) == 0:
        return np.nan, np.nan, np.nan, 0
    mean = float(x.mean())
    half = float(t_half_width(x.std(ddof=1) if len(x) > 1 else np.nan, len(x), confidence))
    return mean, mean - half, mean + half, len(x)


def _bootstrap_means(x: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return x[rng.integers(0, len(x), size=(n_resamples, len(x)))].mean(axis=1)


def bootstrap_ci(
    values, confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES, seed: int = RNG_SEED
) -> tuple[float, float, float, int]:
    """(mean, lo, hi, n) with the percentile bootstrap; deterministic for a given seed."""
    x = _clean(values)
    if len(x) == 0:
        return np.nan, np.nan, np.nan, 0
    means = _bootstrap_means(x, n_resamples, seed)
    tail = (1 - confidence) / 2
    lo, hi = np.quantile(means, [tail, 1 - tail])
    return float(x.mean()), float(lo), float(hi), len(x)


def bootstrap_pvalue(values, n_resamples: int = N_RESAMPLES, seed: int = RNG_SEED) -> float:
    """Two-sided p for mean = 0 by inverting the percentile interval (same resamples)."""
    x = _clean(values)
    if len(x) == 0:
        return np.nan
    means = _bootstrap_means(x, n_resamples, seed)
    tail = min((means <= 0).sum(), (means >= 0).sum())
    return float(min(1.0, 2 * (tail + 1) / (n_resamples + 1)))


def ttest_pvalue(values) -> float:
    """Two-sided one-sample t-test of mean = 0; a zero-spread sample is decided exactly."""
    x = _clean(values)
    if len(x) < 2:
        return np.nan
    if np.ptp(x) == 0:
        return 1.0 if x[0] == 0 else 0.0
    return float(sps.ttest_1samp(x, 0.0).pvalue)


def mean_difference(diffs, confidence: float = CONFIDENCE) -> dict:
    """Mean paired difference with CI and p; the method follows the rule in the docstring."""
    x = _clean(diffs)
    skewed = len(x) >= 3 and np.ptp(x) > 0 and abs(sps.skew(x)) > SKEW_LIMIT
    if len(x) >= BOOTSTRAP_MIN_N and skewed:
        mean, lo, hi, n = bootstrap_ci(x, confidence)
        return dict(mean=mean, lo=lo, hi=hi, n=n, p=bootstrap_pvalue(x), method="bootstrap")
    mean, lo, hi, n = ci_mean(x, confidence)
    return dict(mean=mean, lo=lo, hi=hi, n=n, p=ttest_pvalue(x), method="t")


def holm(pvalues) -> np.ndarray:
    """Holm-adjusted p-values in the input order; NaNs stay NaN and do not count."""
    p = np.asarray(pvalues, dtype=float)
    adjusted = np.full_like(p, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    order = valid[np.argsort(p[valid], kind="stable")]
    m = len(order)
    steps = (m - np.arange(m)) * p[order]
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(steps))
    return adjusted


# --- the verdict's test: one paired comparison, judged against a smallest effect `delta` ----
#
# A claim's primary measure is a set of paired differences treatment - control, one per seed.
# p: exact sign-flip permutation test (every 2^n sign pattern up to n = EXACT_MAX_N, a seeded
# Monte Carlo beyond), two-sided, on the mean. CI: the t-interval, or scipy's BCa bootstrap
# where the claim declares it (skewed measures such as censored step counts). Equivalence
# (no effect): both one-sided tests against +-delta reject at 5%, i.e. the 90% CI lies inside
# (-delta, +delta). Power: the minimum detectable effect at this n (80% power, two-sided 5%)
# and the seeds that would detect delta, both from the observed spread (normal theory).

ALPHA = 0.05
POWER = 0.8
EXACT_MAX_N = 16
MONTE_CARLO_PATTERNS = 100_000
OUTCOMES = ("supported", "contradicted", "no effect", "inconclusive")


def sign_flip_pvalue(diffs, seed: int = RNG_SEED) -> float:
    """Two-sided p of mean = 0 under random signs: the share of sign patterns whose |mean|
    is at least the observed one. Exact for n <= EXACT_MAX_N (the smallest p is 2 / 2^n);
    equal differences get that smallest p, never 0."""
    x = _clean(diffs)
    n = len(x)
    if n == 0:
        return np.nan
    if n <= EXACT_MAX_N:
        patterns = 1 - 2 * ((np.arange(2**n)[:, None] >> np.arange(n)) & 1)
    else:
        rng = np.random.default_rng(seed)
        patterns = rng.choice([-1, 1], size=(MONTE_CARLO_PATTERNS, n))
    observed = abs(x.sum())
    sums = np.abs(patterns @ x)
    extreme = (sums >= observed * (1 - 1e-12) - 1e-12).sum()  # ties within rounding count
    if n > EXACT_MAX_N:  # Monte Carlo: count the observed pattern itself (never p = 0)
        return float((extreme + 1) / (MONTE_CARLO_PATTERNS + 1))
    return float(extreme / len(patterns))


def interval(diffs, confidence: float, method: str = "t") -> tuple[float, float]:
    """The CI of the mean difference: t-interval, or BCa bootstrap (falls back to t where
    the bootstrap cannot run: fewer than 3 values or no spread)."""
    x = _clean(diffs)
    if method == "bca" and len(x) >= 3 and np.ptp(x) > 0:
        result = sps.bootstrap(
            (x,),
            np.mean,
            confidence_level=confidence,
            method="BCa",
            n_resamples=N_RESAMPLES,
            random_state=RNG_SEED,
        )
        lo, hi = result.confidence_interval
        if np.isfinite(lo) and np.isfinite(hi):
            return float(lo), float(hi)
    _, lo, hi, _ = ci_mean(x, confidence)
    return lo, hi


# The exact sign-flip test's smallest two-sided p is 2 / 2^n: below this many seeds no
# difference, however large, can be significant at ALPHA.
MIN_DECISIVE_N = next(n for n in range(1, 64) if 2 / 2**n < ALPHA)


def detectable(sd: float, n: int) -> float:
    """Smallest true mean difference a two-sided 5% test detects with 80% power at n seeds
    (infinite below MIN_DECISIVE_N seeds, where the exact test cannot reject at all)."""
    if n < 2 or not np.isfinite(sd):
        return np.nan
    if n < MIN_DECISIVE_N:
        return np.inf
    dof = n - 1
    return float((sps.t.ppf(1 - ALPHA / 2, dof) + sps.t.ppf(POWER, dof)) * sd / np.sqrt(n))


def seeds_needed(sd: float, delta: float, cap: int = 10_000) -> float:
    """Seeds at which an effect of size delta is detected with 80% power (NaN if no spread)."""
    if not np.isfinite(sd) or sd <= 0 or delta <= 0:
        return np.nan
    n = MIN_DECISIVE_N
    while n < cap and detectable(sd, n) > delta:
        n += 1
    return float(n)


def within_delta(n: int, lo90: float, hi90: float, delta: float) -> bool:
    """Equivalence: the 90% CI lies inside +-delta (two one-sided tests), from enough seeds
    that it does not come from a couple of equal values."""
    return n >= MIN_DECISIVE_N and -delta < lo90 and hi90 < delta


def judge_paired(diffs, direction: str, delta: float, ci: str = "t") -> dict:
    """A claim's outcome from its paired differences (see the rule above): mean, 95% CI,
    90% CI, n, exact p, outcome, and the power figures."""
    x = _clean(diffs)
    n = len(x)
    mean = float(x.mean()) if n else np.nan
    sd = float(x.std(ddof=1)) if n > 1 else np.nan
    lo, hi = interval(x, 1 - ALPHA, ci) if n else (np.nan, np.nan)
    lo90, hi90 = interval(x, 1 - 2 * ALPHA, ci) if n else (np.nan, np.nan)
    p = sign_flip_pvalue(x)
    sign = 1 if direction == "higher" else -1
    if n and p < ALPHA and sign * mean > 0:
        outcome = "supported"
    elif n and p < ALPHA and sign * mean < 0:
        outcome = "contradicted"
    elif within_delta(n, lo90, hi90, delta):
        outcome = "no effect"
    else:
        outcome = "inconclusive"
    return dict(
        mean=mean,
        lo=lo,
        hi=hi,
        lo90=lo90,
        hi90=hi90,
        n=n,
        sd=sd,
        p=p,
        method=f"sign-flip, {ci} CI",
        delta=delta,
        outcome=outcome,
        mde=detectable(sd, n),
        seeds_for_delta=seeds_needed(sd, delta),
    )
