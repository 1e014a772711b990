"""Statistics of two conversion rates (control A, treatment B): the fixed-horizon
two-proportion z-test, the mSPRT always-valid p-value and confidence sequence for
sequential looks, and the per-arm sample size for a planned horizon. Pure; called by
``judges.ab_significance``.

Why two tests: a fixed-horizon p-value is only valid when read once, at the planned
sample size. Reading it at every analysis interval and stopping at the first p < alpha
("peeking") makes false winners far more common than alpha. The mixture sequential
probability ratio test (Johari, Pekelis and Walsh, "Always valid inference", 2017) gives a
p-value that may be read at every look: under no difference its likelihood ratio is a
martingale, so by Ville's inequality P(ever 1/Λ ≤ alpha) ≤ alpha.

    >>> a, b = Arm(100, 1000), Arm(130, 1000)
    >>> z, p = z_test(a, b)
    >>> round(z, 3), round(p, 4)
    (2.103, 0.0355)
    >>> [round(v, 4) for v in wald_interval(a, b, alpha=0.05)]
    [0.0021, 0.0579]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

# The stdlib normal: SciPy's is the same numbers at some hundred times the call overhead,
# which the simulations in the tests and the benchmark pay thousands of times.
_NORMAL = NormalDist()


@dataclass(frozen=True)
class Arm:
    conversions: float
    trials: float

    def __post_init__(self) -> None:
        if self.trials < 0 or not 0 <= self.conversions <= max(self.trials, 0):
            raise ValueError(
                f"expected 0 <= conversions <= trials, got {self.conversions:g} of {self.trials:g}"
            )

    @property
    def rate(self) -> float:
        return self.conversions / self.trials if self.trials else math.nan


def z_test(a: Arm, b: Arm) -> tuple[float, float]:
    """Pooled two-proportion z statistic of B − A and its two-sided p-value.

    Hand check for the module example: pooled rate 230/2000 = 0.115, standard error
    sqrt(0.115·0.885·(2/1000)) = 0.014267, z = 0.03/0.014267 = 2.103, p = 0.0355.
    """
    if a.trials == 0 or b.trials == 0:
        return 0.0, 1.0
    pooled = (a.conversions + b.conversions) / (a.trials + b.trials)
    se = math.sqrt(pooled * (1 - pooled) * (1 / a.trials + 1 / b.trials))
    if se == 0:
        return 0.0, 1.0
    z = (b.rate - a.rate) / se
    return z, math.erfc(abs(z) / math.sqrt(2))  # = 2·(1 − Φ(|z|)), accurate in the tail


def _unpooled_variance(a: Arm, b: Arm) -> float:
    return a.rate * (1 - a.rate) / a.trials + b.rate * (1 - b.rate) / b.trials


def wald_interval(a: Arm, b: Arm, *, alpha: float) -> tuple[float, float]:
    """The (1 − alpha) interval of B − A, for a single look at the planned horizon."""
    if a.trials == 0 or b.trials == 0:
        return -1.0, 1.0
    half = _NORMAL.inv_cdf(1 - alpha / 2) * math.sqrt(_unpooled_variance(a, b))
    diff = b.rate - a.rate
    return diff - half, diff + half


def mixing_scale(a: Arm, b: Arm, *, relative_mde: float) -> float:
    """τ, the spread of effects the mSPRT is tuned to: the minimum detectable effect in
    absolute terms at the pooled rate (Johari et al. tune τ to the effects one expects)."""
    pooled = (a.conversions + b.conversions) / max(a.trials + b.trials, 1)
    return max(relative_mde * pooled, 1e-9)


def msprt_p_value(a: Arm, b: Arm, *, tau: float) -> float:
    """The always-valid p-value 1/Λ (at most 1) of "no difference" at this look.

    Λ = sqrt(V/(V+τ²))·exp(τ²·d²/(2V(V+τ²))), d = B − A, V its variance under no difference
    (pooled rate), τ the mixing scale: the normal-mixture likelihood ratio of the test.
    """
    if a.trials == 0 or b.trials == 0:
        return 1.0
    pooled = (a.conversions + b.conversions) / (a.trials + b.trials)
    v = pooled * (1 - pooled) * (1 / a.trials + 1 / b.trials)
    if v == 0:
        return 1.0
    t2 = tau * tau
    diff = b.rate - a.rate
    log_lambda = 0.5 * math.log(v / (v + t2)) + t2 * diff * diff / (2 * v * (v + t2))
    return min(1.0, math.exp(-log_lambda))


def confidence_sequence(a: Arm, b: Arm, *, alpha: float, tau: float) -> tuple[float, float]:
    """The always-valid (1 − alpha) interval of B − A: every difference θ that the mSPRT
    of "B − A = θ" would not reject; it holds at every look at once.

    Solving Λ(θ) < 1/alpha: |d − θ| < sqrt(2V(V+τ²)/τ² · (ln(1/alpha) + ½·ln((V+τ²)/V))).
    """
    if a.trials == 0 or b.trials == 0:
        return -1.0, 1.0
    v = _unpooled_variance(a, b)
    diff = b.rate - a.rate
    if v == 0:
        return diff, diff
    t2 = tau * tau
    half = math.sqrt(2 * v * (v + t2) / t2 * (math.log(1 / alpha) + 0.5 * math.log((v + t2) / v)))
    return diff - half, diff + half


def sample_size(
    baseline_rate: float, relative_mde: float, *, alpha: float = 0.05, power: float = 0.8
) -> int:
    """Trials per arm for a fixed-horizon test to detect a relative lift of
    ``relative_mde`` over ``baseline_rate`` (two-sided ``alpha``, given ``power``).

    >>> sample_size(0.10, 0.10)   # 10% → 11%: the classic ~15k per arm
    14751
    """
    p1, p2 = baseline_rate, baseline_rate * (1 + relative_mde)
    za, zb = _NORMAL.inv_cdf(1 - alpha / 2), _NORMAL.inv_cdf(power)
    pbar = (p1 + p2) / 2
    n = (
        za * math.sqrt(2 * pbar * (1 - pbar)) + zb * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
    ) ** 2 / (p2 - p1) ** 2
    return math.ceil(n)
