"""A/B significance on simulated experiments with known truth (seeded).

Given no real difference, a single look at the horizon errs about alpha of the time,
naive peeking at every look errs far more often, and the sequential test read at every
look stays within alpha. Given a real lift, both tests find it, in the right direction.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy import stats

from changeover.analysis.judges import ab_significance as ab
from changeover.analysis.judges import proportions as pr
from changeover.analysis.judges.proportions import Arm

ALPHA = 0.05
EXPERIMENTS = 2000
LOOKS, PER_LOOK = 20, 500  # 20 analysis intervals, 500 new users per variant each
RATE = 0.10


def simulate(
    rate_a: float, rate_b: float, *, seed: int, experiments: int = EXPERIMENTS
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """Cumulative conversions of A and B at every look, and the trials per arm."""
    rng = np.random.default_rng(seed)
    conv_a = rng.binomial(PER_LOOK, rate_a, size=(experiments, LOOKS)).cumsum(axis=1)
    conv_b = rng.binomial(PER_LOOK, rate_b, size=(experiments, LOOKS)).cumsum(axis=1)
    trials = PER_LOOK * np.arange(1, LOOKS + 1)
    return conv_a, conv_b, trials


def z_test_rejects(ca: NDArray[np.int64], cb: NDArray[np.int64], n: NDArray[np.int64]) -> Any:
    pooled = (ca + cb) / (2 * n)
    se = np.sqrt(pooled * (1 - pooled) * 2 / n)
    return 2 * stats.norm.sf(np.abs((cb - ca) / n / se)) < ALPHA


def test_z_test_agrees_with_scipy_chi_square() -> None:
    """The pooled z-test squared is Pearson's chi-square on the 2×2 table."""
    a, b = Arm(412, 5000), Arm(468, 5100)
    z, p = pr.z_test(a, b)
    table = [[412, 5000 - 412], [468, 5100 - 468]]
    chi2, p_chi, _, _ = stats.chi2_contingency(table, correction=False)
    assert z**2 == pytest.approx(chi2) and p == pytest.approx(p_chi)


def test_single_look_at_the_horizon_errs_about_alpha() -> None:
    ca, cb, n = simulate(RATE, RATE, seed=1)
    rate = z_test_rejects(ca[:, -1], cb[:, -1], n[-1]).mean()
    assert 0.035 <= rate <= 0.065


def test_naive_peeking_inflates_false_winners_and_the_sequential_test_does_not() -> None:
    ca, cb, n = simulate(RATE, RATE, seed=2)
    naive = z_test_rejects(ca, cb, n).any(axis=1).mean()
    sequential = 0
    for i in range(EXPERIMENTS):
        for look in range(LOOKS):
            a, b = Arm(ca[i, look], n[look]), Arm(cb[i, look], n[look])
            tau = pr.mixing_scale(a, b, relative_mde=0.1)
            if pr.msprt_p_value(a, b, tau=tau) <= ALPHA:
                sequential += 1
                break
    assert naive > 0.15  # three times alpha and more, from reading the same test 20 times
    assert sequential / EXPERIMENTS <= ALPHA


def test_the_fixed_horizon_guard_refuses_early_verdicts() -> None:
    """``decide`` in fixedHorizon mode, asked at every look: nothing is decided before the
    horizon, so peeking cannot inflate errors; at the horizon it errs about alpha."""
    ca, cb, n = simulate(RATE, RATE, seed=3, experiments=600)
    cfg = ab.ABConfig(method=ab.Method.FIXED, min_samples=int(n[-1]))
    false_winners = 0
    for i in range(600):
        for look in range(LOOKS):
            v = ab.decide(Arm(ca[i, look], n[look]), Arm(cb[i, look], n[look]), cfg)
            assert v.decided == (look == LOOKS - 1)
            false_winners += v.winner is not None
    assert false_winners / 600 <= 0.075


def test_a_real_lift_is_found_in_the_right_direction() -> None:
    """10% → 12% conversion (+20%): the sequential test, read at every look, finds it in
    most experiments and usually well before the last look; so does the fixed test."""
    ca, cb, n = simulate(RATE, 0.12, seed=4, experiments=500)
    cfg = ab.ABConfig(min_samples=PER_LOOK)
    found, looks_needed, wrong = 0, [], 0
    for i in range(500):
        for look in range(LOOKS):
            v = ab.decide(Arm(ca[i, look], n[look]), Arm(cb[i, look], n[look]), cfg)
            if v.decided:
                found += v.winner == "treatment"
                wrong += v.winner == "control"
                looks_needed.append(look + 1)
                break
    assert found / 500 >= 0.9 and wrong == 0
    assert float(np.median(looks_needed)) <= 10
    fixed = z_test_rejects(ca[:, -1], cb[:, -1], n[-1]).mean()
    assert fixed >= 0.95


def test_intervals_cover_the_true_difference() -> None:
    ca, cb, n = simulate(RATE, 0.11, seed=5, experiments=500)
    wald = seq_all_looks = 0
    for i in range(500):
        a, b = Arm(ca[i, -1], n[-1]), Arm(cb[i, -1], n[-1])
        lo, hi = pr.wald_interval(a, b, alpha=ALPHA)
        wald += lo <= 0.01 <= hi
        ok = True
        for look in range(LOOKS):
            a, b = Arm(ca[i, look], n[look]), Arm(cb[i, look], n[look])
            lo, hi = pr.confidence_sequence(
                a, b, alpha=ALPHA, tau=pr.mixing_scale(a, b, relative_mde=0.1)
            )
            ok = ok and lo <= 0.01 <= hi
        seq_all_looks += ok
    assert 0.92 <= wald / 500 <= 0.98
    assert seq_all_looks / 500 >= 0.95  # at every look at once


def test_verdict_reports_effect_and_interval() -> None:
    v = ab.decide(Arm(1000, 10000), Arm(1200, 10000), ab.ABConfig(method=ab.Method.FIXED))
    assert v.decided and v.winner == "treatment"
    assert v.difference == pytest.approx(0.02) and v.lift == pytest.approx(0.2)
    assert v.interval == pytest.approx((0.02 - 0.008668, 0.02 + 0.008668), abs=1e-5)
    assert v.lift_interval == pytest.approx((0.11332, 0.28668), abs=1e-4)
    assert v.reason.startswith("treatment wins: lift +20.0% (+11.3% to +28.7%)")


def test_lower_is_better_makes_more_errors_a_loss() -> None:
    cfg = ab.ABConfig(method=ab.Method.FIXED, higher_is_better=False)
    v = ab.decide(Arm(50, 5000), Arm(120, 5000), cfg)
    assert v.winner == "control"


def test_collecting_and_giving_up() -> None:
    v = ab.decide(Arm(10, 200), Arm(30, 200))
    assert not v.decided and v.reason == "collecting: 200 of 1000 per variant"
    cfg = ab.ABConfig(min_samples=100, max_samples=5000)
    v = ab.decide(Arm(500, 5000), Arm(505, 5000), cfg)
    assert v.decided and v.winner is None
    assert v.reason.startswith("no significant difference by 5000")
    v = ab.decide(Arm(500, 4000), Arm(505, 4000), cfg)
    assert not v.decided


def test_sample_size_gives_the_power_it_promises() -> None:
    n = pr.sample_size(0.10, 0.2, alpha=ALPHA, power=0.8)  # 10% → 12%
    rng = np.random.default_rng(6)
    ca, cb = rng.binomial(n, 0.10, 4000), rng.binomial(n, 0.12, 4000)
    power = z_test_rejects(ca, cb, np.full(ca.shape, n)).mean()
    assert 0.77 <= power <= 0.83


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="alpha"):
        ab.ABConfig(alpha=1.5)
    with pytest.raises(ValueError, match="maxSamples"):
        ab.ABConfig(min_samples=100, max_samples=10)
    with pytest.raises(ValueError, match="conversions <= trials"):
        Arm(11, 10)


def test_variant_scope_validation_names_the_field() -> None:
    counts = {"conversions": {"builtin": "errors"}, "trials": {"builtin": "requests"}}
    scope = {"flag": "checkout", "control": "off", "treatment": "on"}
    assert ab.problems({**counts, "variant": scope}) == []
    assert ab.problems({**counts, "variant": {**scope, "treatment": "off"}}) == [
        "variant.treatment: expected a variant other than control"
    ]
    assert ab.problems({**counts, "variant": {"flag": "checkout", "control": "off"}}) == [
        "variant.treatment: expected a variant name"
    ]
    assert ab.problems({**counts, "variant": {**scope, "arm": "x"}}) == [
        "variant.arm: unknown field; expected flag, control, treatment"
    ]
    prom = {"conversions": {"prometheus": {"query": "up", "address": "http://127.0.0.1:1"}}}
    assert ab.problems({**counts, **prom, "variant": scope}) == [
        "conversions: with variant, expected builtin counts: {builtin: requests | successes | "
        "errors}"
    ]
