"""The Mann-Whitney judge: the shift test against hand computations, SciPy's
``mannwhitneyu`` and a literal port of R's ``wilcox.test`` interval; then Kayenta's
classification rules (direction, effect size, critical, NaN strategy, outliers)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy import optimize, stats

from changeover.analysis.judges import classifier as mw
from changeover.analysis.judges.classifier import Classification, Direction, MetricSpec

Z98 = stats.norm.ppf(0.99)


def r_wdiff(x: NDArray[np.float64], y: NDArray[np.float64], d: float, zq: float) -> float:
    """R's ``wdiff`` from ``wilcox.test.default``, line for line (correct=TRUE, two-sided)."""
    m, n = len(x), len(y)
    dr = stats.rankdata(np.concatenate([x - d, y]))
    _, nties = np.unique(dr, return_counts=True)
    dz = dr[:m].sum() - m * (m + 1) / 2 - m * n / 2
    correction = np.sign(dz) * 0.5
    sigma = math.sqrt(
        (m * n / 12) * ((m + n + 1) - (nties**3 - nties).sum() / ((m + n) * (m + n - 1)))
    )
    return float((dz - correction) / sigma - zq)


def r_interval(x: NDArray[np.float64], y: NDArray[np.float64]) -> tuple[float, float]:
    """R's ``root`` with ``uniroot`` replaced by Brent at a tight tolerance."""

    def root(zq: float) -> float:
        lo, hi = x.min() - y.max(), x.max() - y.min()
        if r_wdiff(x, y, lo, zq) <= 0:
            return float(lo)
        if r_wdiff(x, y, hi, zq) >= 0:
            return float(hi)
        return float(optimize.brentq(lambda d: r_wdiff(x, y, d, zq), lo, hi, xtol=1e-12))

    return root(Z98), root(-Z98)


# -- the shift test -------------------------------------------------------------------


def test_hand_computed_small_samples() -> None:
    """canary 10,11,12 vs baseline 1,2,3: the 9 pairwise differences are 7,8,8,9,9,9,10,10,11
    so Hodges-Lehmann is 9. With m=n=3 the largest possible |z| is (4.5-0.5)/sqrt(5.25)
    = 1.75 < 2.33, so the 98% interval cannot be narrowed: it is the full range [7, 11].
    U = 9 (every canary value beats every baseline one); the exact two-sided p is
    2/C(6,3) = 0.1."""
    t = mw.shift_test([10, 11, 12], [1, 2, 3])
    assert (t.estimate, t.lower, t.upper) == (9.0, 7.0, 11.0)
    assert t.u_statistic == 9.0
    assert t.p_value == pytest.approx(0.1)


def test_hand_computed_interval_from_order_statistics() -> None:
    """Without ties, the continuity-corrected interval ends at the k-th smallest and
    k-th largest pairwise difference, where k is the smallest count with
    (m·n/2 − (k−1) − ½) / σ ≤ z, σ = sqrt(m·n·(m+n+1)/12).

    canary = baseline + 100 + noise-free offsets, m = n = 10: σ = sqrt(100·21/12) =
    13.229; 50 − (k−1) − 0.5 ≤ 2.326·13.229 = 30.78 → k − 1 ≥ 18.72 → k = 20."""
    baseline = np.arange(10, dtype=float)  # 0..9
    canary = np.arange(10, dtype=float) * 1.01 + 100  # distinct differences, no ties
    diffs = np.sort(np.subtract.outer(canary, baseline).ravel())
    t = mw.shift_test(canary, baseline)
    assert t.lower == diffs[18] and t.upper == diffs[-19]
    assert t.estimate == pytest.approx(np.median(diffs))


@pytest.mark.parametrize("seed", range(12))
def test_agrees_with_scipy_and_with_r_interval(seed: int) -> None:
    rng = np.random.default_rng(seed)
    m, n = rng.integers(5, 60, size=2)
    # Rounded lognormals: latency-like, with plenty of ties.
    y = np.round(rng.lognormal(3, 0.4, n), 0)
    x = np.round(rng.lognormal(3 + rng.choice([0, 0.1, 0.3]), 0.4, m), 0)
    t = mw.shift_test(x, y)
    ref = stats.mannwhitneyu(x, y, alternative="two-sided")
    assert t.u_statistic == ref.statistic and t.p_value == ref.pvalue
    assert t.estimate == np.median(np.subtract.outer(x, y))
    lower, upper = r_interval(x, y)
    assert t.lower == pytest.approx(lower, abs=1e-9) and t.upper == pytest.approx(upper, abs=1e-9)
    # R's estimate is a root of wdiff(·, 0): the statistic changes sign around ours.
    assert r_wdiff(x, y, t.estimate - 1e-9, 0) >= 0 >= r_wdiff(x, y, t.estimate + 1e-9, 0)


@pytest.mark.parametrize("seed", range(40))
def test_interval_excludes_zero_exactly_when_scipy_rejects_at_2_percent(seed: int) -> None:
    """SciPy's asymptotic test (continuity and tie corrections) uses the same statistic the
    interval inverts, so 'the 98% interval excludes 0' ⟺ 'p < 0.02'."""
    rng = np.random.default_rng(1000 + seed)
    y = rng.normal(100, 10, 30)
    x = rng.normal(100 + rng.uniform(0, 12), 10, 30)
    t = mw.shift_test(x, y)
    p = stats.mannwhitneyu(x, y, alternative="two-sided", method="asymptotic").pvalue
    assert (t.lower > 0 or t.upper < 0) == (p < 0.02)


def test_interval_covers_the_true_shift_about_98_percent_of_the_time() -> None:
    rng = np.random.default_rng(7)
    trials, covered = 400, 0
    for _ in range(trials):
        y = rng.normal(0, 1, 40)
        x = rng.normal(0.5, 1, 40)
        t = mw.shift_test(x, y)
        covered += t.lower <= 0.5 <= t.upper
    assert 0.95 <= covered / trials <= 1.0


def test_constant_samples_have_an_exact_shift() -> None:
    t = mw.shift_test([5.0] * 8, [2.0] * 8)
    assert (t.estimate, t.lower, t.upper) == (3.0, 3.0, 3.0)


# -- classification --------------------------------------------------------------------

SPEC = MetricSpec(name="latency")
rng0 = np.random.default_rng(42)
BASE = rng0.normal(100, 5, 60)
SLOW = rng0.normal(130, 5, 60)  # +30%
FAST = rng0.normal(70, 5, 60)  # −30%
SAME = rng0.normal(100, 5, 60)


def test_high_low_and_pass() -> None:
    assert mw.classify(SPEC, canary=SLOW, baseline=BASE).classification is Classification.HIGH
    assert mw.classify(SPEC, canary=FAST, baseline=BASE).classification is Classification.LOW
    v = mw.classify(SPEC, canary=SAME, baseline=BASE)
    assert v.classification is Classification.PASS and v.test is not None
    assert v.effect_size == pytest.approx(SAME.mean() / BASE.mean())


def test_direction_limits_what_can_fail() -> None:
    up = MetricSpec(name="latency", direction=Direction.INCREASE)
    down = MetricSpec(name="throughput", direction=Direction.DECREASE)
    assert mw.classify(up, canary=FAST, baseline=BASE).classification is Classification.PASS
    assert mw.classify(up, canary=SLOW, baseline=BASE).classification is Classification.HIGH
    assert mw.classify(down, canary=SLOW, baseline=BASE).classification is Classification.PASS
    assert mw.classify(down, canary=FAST, baseline=BASE).classification is Classification.LOW


def test_allowed_increase_gates_a_significant_but_small_effect() -> None:
    allowed = MetricSpec(name="latency", effect_size=mw.EffectSize(allowed_increase=1.5))
    v = mw.classify(allowed, canary=SLOW, baseline=BASE)  # significant, but ratio ≈ 1.3
    assert v.classification is Classification.PASS
    assert v.effect_size == pytest.approx(1.3, abs=0.03)


def test_tolerance_band_needs_the_interval_clear_of_a_quarter_of_the_estimate() -> None:
    """A real but noisy shift: the interval excludes 0 yet not +0.25·estimate → Pass."""
    rng = np.random.default_rng(1)
    y = rng.normal(100, 30, 40)
    x = rng.normal(120, 30, 40)
    t = mw.shift_test(x, y)
    assert t.p_value < 0.02 and 0 < t.lower < 0.25 * t.estimate
    assert mw.classify(SPEC, canary=x, baseline=y).classification is Classification.PASS


def test_critical_metric_fails_the_run_only_past_critical_increase() -> None:
    gate = mw.EffectSize(critical_increase=1.5)
    crit = MetricSpec(name="latency", critical=True, effect_size=gate)
    assert not mw.classify(crit, canary=SLOW, baseline=BASE).critical_failure  # ratio 1.3
    worse = BASE * 1.6 + rng0.normal(0, 1, 60)
    v = mw.classify(crit, canary=worse, baseline=BASE)
    assert v.classification is Classification.HIGH and v.critical_failure


def test_kayenta_example_a_errors_with_nan_baseline() -> None:
    """Baseline all NaN, replaced by 0; the canary has errors: High with an undefined
    ratio, and a critical metric fails the run."""
    spec = MetricSpec(
        name="errors",
        critical=True,
        direction=Direction.INCREASE,
        nan_strategy=mw.NanStrategy.REPLACE,
    )
    canary = [0, 2, 1, 3, 0, 2, 4, 1, 2, 3, 1, 2] * 3
    v = mw.classify(spec, canary=canary, baseline=[math.nan] * 36)
    assert v.classification is Classification.HIGH
    assert math.isnan(v.effect_size) and v.critical_failure


def test_kayenta_example_b_no_errors_anywhere() -> None:
    spec = MetricSpec(name="errors", nan_strategy=mw.NanStrategy.REPLACE)
    v = mw.classify(spec, canary=[math.nan] * 10, baseline=[math.nan] * 10)
    assert v.classification is Classification.PASS and v.effect_size == 1.0
    assert "identical" in v.reason


def test_no_data_and_must_have_data() -> None:
    assert mw.classify(SPEC, canary=[], baseline=BASE).classification is Classification.NODATA
    nan_only = mw.classify(SPEC, canary=[math.nan, math.nan], baseline=BASE)
    assert nan_only.classification is Classification.NODATA  # NaNs removed by default
    must = MetricSpec(name="latency", must_have_data=True)
    v = mw.classify(must, canary=BASE, baseline=[])
    assert v.classification is Classification.NODATA_FAIL and v.reason == "no baseline data"


def test_outlier_removal_drops_a_spike_beyond_the_99th_percentile() -> None:
    """One absurd spike among 121 samples: the widened fences (Kayenta's reduced
    sensitivity) drop it, so it no longer drags the mean ratio."""
    base = np.tile([10.0, 11, 12, 13, 14], 24)
    canary = np.concatenate([base, [990.0]])
    plain = MetricSpec(name="p99")
    cleaned = MetricSpec(name="p99", remove_outliers=True)
    assert mw.prepare(canary, cleaned).max() == 14.0
    kept = mw.classify(cleaned, canary=canary, baseline=base)
    assert kept.canary.count == 120 and kept.classification is Classification.PASS
    assert kept.effect_size == 1.0
    raw = mw.classify(plain, canary=canary, baseline=base)
    assert raw.canary.max == 990.0 and raw.effect_size > 1.6


def test_cles_effect_size_is_defined_when_means_are_zero() -> None:
    spec = MetricSpec(name="errors", effect_size=mw.EffectSize(measure=mw.EffectMeasure.CLES))
    v = mw.classify(spec, canary=[1.0] * 30 + [2.0] * 30, baseline=[0.0] * 60)
    assert v.classification is Classification.HIGH and v.effect_size == 1.0
    strict = MetricSpec(
        name="errors",
        effect_size=mw.EffectSize(measure=mw.EffectMeasure.CLES, allowed_increase=0.9),
    )
    mild = [0.0] * 40 + [1.0] * 20  # P(canary > baseline) = 1/3
    assert mw.classify(strict, canary=mild, baseline=[0.0] * 60).classification is (
        Classification.PASS
    )


def test_stats_are_reported_after_preprocessing() -> None:
    spec = MetricSpec(name="x", nan_strategy=mw.NanStrategy.REPLACE)
    v = mw.classify(spec, canary=[1.0, math.nan, 3.0], baseline=[2.0, 2.0])
    assert (v.canary.count, v.canary.min, v.canary.max) == (3, 0.0, 3.0)
    assert v.canary.mean == pytest.approx(4 / 3)
    assert v.canary.std == pytest.approx(float(np.std([1, 0, 3])))


def test_infinities_are_treated_like_nan() -> None:
    spec = MetricSpec(name="ratio")
    assert mw.prepare([1.0, math.inf, -math.inf, 2.0], spec).tolist() == [1.0, 2.0]
    replaced = MetricSpec(name="ratio", nan_strategy=mw.NanStrategy.REPLACE)
    assert mw.prepare([math.inf, 2.0], replaced).tolist() == [0.0, 2.0]
