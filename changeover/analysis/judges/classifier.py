"""Kayenta's NetflixACAJudge metric classifier: is the canary's metric High, Low or a Pass?

Pure functions, called by ``judges.scoring.judge`` (and through it by the ``mannWhitney``
provider in ``judges.mann_whitney``). Per metric, in Kayenta's order:

1. NaN strategy: ``remove`` drops NaNs, ``replace`` turns them into 0 (no errors = 0).
2. Optional outlier removal per side (IQR fences, widened to the 1st/99th percentiles).
3. A two-sided Mann-Whitney U test of canary against baseline: the p-value from SciPy, the
   Hodges-Lehmann estimate of the location shift (canary − baseline) and its confidence
   interval (98%) by inverting the rank-sum statistic, as R's ``wilcox.test(conf.int=TRUE)``
   and Kayenta's port of it do (normal approximation, continuity and tie corrections).
4. High when the whole interval lies above ``+tolerance·|estimate|`` (Low: below the
   negative), the direction allows it, and the effect size (mean ratio canary/baseline)
   is at least ``allowedIncrease`` (at most ``allowedDecrease``). A critical metric whose
   effect also passes ``criticalIncrease``/``criticalDecrease`` fails the whole run.

    >>> v = classify(MetricSpec(name="latency"), canary=[10, 11, 12], baseline=[1, 2, 3])
    >>> v.classification, v.test.estimate, (v.test.lower, v.test.upper)
    (<Classification.HIGH: 'High'>, 9.0, (7.0, 11.0))
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy import stats

CONFIDENCE = 0.98  # Kayenta's hard-coded confidence level
TOLERANCE = 0.25  # the band ±0.25·|estimate| the interval must clear

Floats = NDArray[np.float64]


class Classification(enum.StrEnum):
    PASS = "Pass"
    HIGH = "High"
    LOW = "Low"
    NODATA = "Nodata"  # no samples on a side: left out of the score
    NODATA_FAIL = "NodataFailMetric"  # no samples but ``mustHaveData``: counts as a failure


class Direction(enum.StrEnum):
    INCREASE = "increase"  # only a rise is bad (latency, errors)
    DECREASE = "decrease"  # only a fall is bad (throughput, success rate)
    EITHER = "either"


class NanStrategy(enum.StrEnum):
    REMOVE = "remove"
    REPLACE = "replace"


class EffectMeasure(enum.StrEnum):
    MEAN_RATIO = "meanRatio"  # mean(canary) / mean(baseline); NaN when a mean is 0
    CLES = "cles"  # P(canary > baseline) + ½·P(tie): defined when means are 0


@dataclass(frozen=True, kw_only=True)
class EffectSize:
    """Secondary gates on top of significance. ``None`` means the measure's neutral value
    (1.0 for meanRatio, 0.5 for cles): any significant shift counts."""

    measure: EffectMeasure = EffectMeasure.MEAN_RATIO
    allowed_increase: float | None = None
    allowed_decrease: float | None = None
    critical_increase: float | None = None
    critical_decrease: float | None = None

    def gate(self, value: float | None) -> float:
        neutral = 1.0 if self.measure is EffectMeasure.MEAN_RATIO else 0.5
        return neutral if value is None else value


@dataclass(frozen=True, kw_only=True)
class MetricSpec:
    name: str
    group: str = "default"
    direction: Direction = Direction.EITHER
    critical: bool = False
    must_have_data: bool = False
    muted: bool = False  # classified and shown, never scored
    nan_strategy: NanStrategy = NanStrategy.REMOVE
    remove_outliers: bool = False
    outlier_factor: float = 3.0
    effect_size: EffectSize = field(default_factory=EffectSize)


@dataclass(frozen=True)
class ShiftTest:
    """Mann-Whitney U of canary against baseline and the location shift canary − baseline."""

    u_statistic: float  # U of the canary sample (SciPy's convention)
    p_value: float  # two-sided
    estimate: float  # Hodges-Lehmann: median of all pairwise differences
    lower: float
    upper: float


@dataclass(frozen=True)
class Stats:
    count: int
    mean: float
    std: float
    min: float
    max: float

    @classmethod
    def of(cls, values: Floats) -> Stats:
        if values.size == 0:
            return cls(0, math.nan, math.nan, math.nan, math.nan)
        return cls(
            int(values.size),
            float(values.mean()),
            float(values.std()),
            float(values.min()),
            float(values.max()),
        )


@dataclass(frozen=True, kw_only=True)
class MetricVerdict:
    spec: MetricSpec
    classification: Classification
    effect_size: float  # in the spec's measure; NaN when undefined
    critical_failure: bool  # this metric alone fails the run
    reason: str
    test: ShiftTest | None  # None when no test was needed (no data, identical samples)
    canary: Stats
    baseline: Stats

    @property
    def name(self) -> str:
        return self.spec.name


def shift_test(
    canary: Sequence[float] | Floats,
    baseline: Sequence[float] | Floats,
    *,
    confidence: float = CONFIDENCE,
) -> ShiftTest:
    """The test and interval for two non-empty samples that are not all one value."""
    x = np.asarray(canary, dtype=np.float64)
    y = np.asarray(baseline, dtype=np.float64)
    result = stats.mannwhitneyu(x, y, alternative="two-sided")
    diffs = np.sort(np.subtract.outer(x, y).ravel())
    estimate = float(np.median(diffs))
    if diffs[0] == diffs[-1]:
        # Every pairwise difference is the same (each side constant): the shift is known
        # exactly. R and Kayenta cannot invert an all-ties statistic here (Kayenta adds
        # noise); the answer is not in doubt.
        return ShiftTest(
            float(result.statistic), float(result.pvalue), estimate, estimate, estimate
        )
    z = float(stats.norm.ppf(1 - (1 - confidence) / 2))
    candidates = np.unique(diffs)
    statistic = _standardized_rank_sum(x, y)
    lower = _invert(statistic, candidates, z)
    upper = _invert(statistic, candidates, -z)
    return ShiftTest(float(result.statistic), float(result.pvalue), estimate, lower, upper)


def _standardized_rank_sum(x: Floats, y: Floats) -> Callable[[float], float]:
    """R's ``wdiff`` without the quantile: the continuity-corrected, tie-corrected z of the
    canary's rank sum when the canary is shifted down by ``d``. Non-increasing in ``d``.

    The rank sum minus m(m+1)/2 is U = #(x−d > y) + ½·#(x−d = y), counted here with
    binary searches instead of ranking (this runs some 50 times per test)."""
    m, n = x.size, y.size
    total = m + n
    ys = np.sort(y)

    def z_of(d: float) -> float:
        shifted = x - d
        below = np.searchsorted(ys, shifted, "left")
        upto = np.searchsorted(ys, shifted, "right")
        dz = float(below.sum() + 0.5 * (upto - below).sum()) - m * n / 2
        _, ties = np.unique(np.concatenate([shifted, y]), return_counts=True)
        tie_term = float((ties.astype(np.float64) ** 3 - ties).sum()) / (total * (total - 1))
        sigma = math.sqrt(m * n / 12 * ((total + 1) - tie_term))
        correction = math.copysign(0.5, dz) if dz else 0.0
        return (dz - correction) / sigma

    return z_of


def _invert(z_of: Callable[[float], float], candidates: Floats, zq: float) -> float:
    """The shift ``d`` where ``z_of(d)`` crosses ``zq``; R finds it with ``uniroot``.

    ``z_of`` is a step function whose steps sit at the pairwise differences
    (``candidates``, sorted), so the crossing is one of them: binary-search the sequence
    c0, (c0+c1)/2, c1, ..., c_K (points, then the open intervals between them), on which
    ``z_of(d) − zq`` is non-increasing. Like R, clamp to the range when there is no crossing.
    """
    first, last = float(candidates[0]), float(candidates[-1])
    if z_of(first) - zq <= 0:
        return first
    if z_of(last) - zq >= 0:
        return last

    def point(i: int) -> float:
        k, between = divmod(i, 2)
        if between:
            return float(candidates[k] + candidates[k + 1]) / 2
        return float(candidates[k])

    lo, hi = 0, 2 * (candidates.size - 1)  # f(point(lo)) > 0 >= f(point(hi))
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if z_of(point(mid)) - zq > 0:
            lo = mid
        else:
            hi = mid
    # A crossing inside an open interval is a jump at its left end, unless the statistic
    # sits exactly on zq there (a plateau): then, as uniroot would, take a point inside.
    if hi % 2 == 1 and z_of(point(hi)) - zq != 0:
        return point(hi - 1)
    return point(hi)


def effect_size(measure: EffectMeasure, canary: Floats, baseline: Floats) -> float:
    """The canary's effect in the given measure.

    >>> effect_size(EffectMeasure.MEAN_RATIO, np.array([2.0, 4.0]), np.array([2.0, 2.0]))
    1.5
    """
    if measure is EffectMeasure.MEAN_RATIO:
        c, b = float(canary.mean()), float(baseline.mean())
        return c / b if c != 0 and b != 0 else math.nan
    diff = np.subtract.outer(canary, baseline)
    return float((diff > 0).mean() + 0.5 * (diff == 0).mean())


def prepare(values: Sequence[float] | Floats, spec: MetricSpec) -> Floats:
    """NaN strategy (±Inf counts as NaN), then the optional outlier removal."""
    data = np.asarray(values, dtype=np.float64)
    # ±Inf (Prometheus sends them for divisions by zero) is no more a measurement than NaN,
    # and would turn pairwise differences into NaN.
    nan = ~np.isfinite(data)
    data = data[~nan] if spec.nan_strategy is NanStrategy.REMOVE else np.where(nan, 0.0, data)
    if spec.remove_outliers and data.size >= 4:
        data = remove_outliers(data, factor=spec.outlier_factor)
    return data


def remove_outliers(data: Floats, *, factor: float = 3.0) -> Floats:
    """Tukey's fences at ``factor``·IQR, widened to the 1st and 99th percentiles (Kayenta's
    "reduced sensitivity": never drop more than the extreme percent on either side).

    >>> remove_outliers(np.array([10.0] * 20 + [11.0] * 20 + [500.0])).tolist()[-3:]
    [11.0, 11.0, 11.0]
    """
    p1, q1, q3, p99 = np.percentile(data, [1, 25, 75, 99])
    iqr = q3 - q1
    low, high = min(p1, q1 - factor * iqr), max(p99, q3 + factor * iqr)
    kept: Floats = data[(data >= low) & (data <= high)]
    return kept


def classify(
    spec: MetricSpec,
    *,
    canary: Sequence[float] | Floats,
    baseline: Sequence[float] | Floats,
    confidence: float = CONFIDENCE,
    tolerance: float = TOLERANCE,
) -> MetricVerdict:
    x, y = prepare(canary, spec), prepare(baseline, spec)

    def verdict(
        cls: Classification,
        reason: str,
        *,
        effect: float = 1.0,
        test: ShiftTest | None = None,
        critical: bool = False,
    ) -> MetricVerdict:
        return MetricVerdict(
            spec=spec,
            classification=cls,
            effect_size=effect,
            critical_failure=critical,
            reason=reason,
            test=test,
            canary=Stats.of(x),
            baseline=Stats.of(y),
        )

    if x.size == 0 or y.size == 0:
        side = "canary" if x.size == 0 else "baseline"
        cls = Classification.NODATA_FAIL if spec.must_have_data else Classification.NODATA
        return verdict(cls, f"no {side} data")
    if np.array_equal(np.sort(x), np.sort(y)):
        return verdict(Classification.PASS, "canary and baseline data are identical")
    if np.unique(np.concatenate([x, y])).size == 1:
        return verdict(Classification.PASS, "every sample has the same value")

    test = shift_test(x, y, confidence=confidence)
    effect = effect_size(spec.effect_size.measure, x, y)
    band = tolerance * abs(test.estimate)
    gates = spec.effect_size
    shown = f"{effect:.3g}" if not math.isnan(effect) else "undefined"
    interval = f"{confidence:.0%} interval [{test.lower:.4g}, {test.upper:.4g}]"
    if spec.direction != Direction.DECREASE and test.lower > band:
        if math.isnan(effect) or effect >= gates.gate(gates.allowed_increase):
            critical = spec.critical and (
                math.isnan(effect) or effect >= gates.gate(gates.critical_increase)
            )
            return verdict(
                Classification.HIGH,
                f"canary higher: shift {test.estimate:.4g}, {interval}, effect {shown}",
                effect=effect,
                test=test,
                critical=critical,
            )
    elif (
        spec.direction != Direction.INCREASE
        and test.upper < -band
        and (math.isnan(effect) or effect <= gates.gate(gates.allowed_decrease))
    ):
        critical = spec.critical and (
            math.isnan(effect) or effect <= gates.gate(gates.critical_decrease)
        )
        return verdict(
            Classification.LOW,
            f"canary lower: shift {test.estimate:.4g}, {interval}, effect {shown}",
            effect=effect,
            test=test,
            critical=critical,
        )
    return verdict(
        Classification.PASS,
        f"no significant shift beyond tolerance: {interval}, effect {shown}",
        effect=effect,
        test=test,
    )
