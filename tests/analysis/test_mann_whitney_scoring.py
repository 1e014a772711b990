"""Kayenta's weighted-sum scoring: group scores, weights, critical metrics, the 50% NODATA
rule and the pass/marginal thresholds."""

from __future__ import annotations

import pytest

from changeover.analysis.judges import classifier as mw
from changeover.analysis.judges import scoring
from changeover.analysis.judges.classifier import Classification


def verdict(
    name: str,
    cls: Classification,
    *,
    group: str = "default",
    critical_failure: bool = False,
    muted: bool = False,
) -> mw.MetricVerdict:
    empty = mw.Stats(0, 0.0, 0.0, 0.0, 0.0)
    return mw.MetricVerdict(
        spec=mw.MetricSpec(name=name, group=group, muted=muted, critical=critical_failure),
        classification=cls,
        effect_size=1.0,
        critical_failure=critical_failure,
        reason="",
        test=None,
        canary=empty,
        baseline=empty,
    )


P, H, L, N = Classification.PASS, Classification.HIGH, Classification.LOW, Classification.NODATA


def test_group_score_is_the_share_of_passing_metrics() -> None:
    v = scoring.judge([verdict("a", P), verdict("b", P), verdict("c", H), verdict("d", L)])
    assert v.score == 50.0 and v.groups == {"default": 50.0}
    assert v.phase == "Failed"  # below the default marginal 75
    assert [m.name for m in v.failing()] == ["c", "d"]
    assert v.reason == "score 50.0: c High, d Low"


def test_weighted_groups_and_the_remainder_shared() -> None:
    """errors weighs 60; latency and saturation share the other 40 (20 each).
    errors 100, latency 50, saturation 0 → 60 + 10 + 0 = 70."""
    metrics = [
        verdict("5xx", P, group="errors"),
        verdict("p50", P, group="latency"),
        verdict("p99", H, group="latency"),
        verdict("cpu", H, group="saturation"),
    ]
    v = scoring.judge(metrics, weights={"errors": 60})
    assert v.groups == {"errors": 100.0, "latency": 50.0, "saturation": 0.0}
    assert v.score == pytest.approx(70.0)


@pytest.mark.parametrize(
    ("score_of", "phase"),
    [
        (100.0, "Successful"),
        (95.0, "Successful"),
        (80.0, "Inconclusive"),
        (75.0, "Inconclusive"),
        (74.9, "Failed"),
        (0.0, "Failed"),
    ],
)
def test_thresholds_are_inclusive(score_of: float, phase: str) -> None:
    assert scoring.Thresholds(pass_score=95, marginal=75).phase(score_of) == phase


def test_a_critical_failure_zeroes_the_score() -> None:
    metrics = [verdict(f"m{i}", P) for i in range(9)]
    metrics.append(verdict("errors", H, critical_failure=True))
    v = scoring.judge(metrics)
    assert v.score == 0.0 and v.phase == "Failed"
    assert v.reason == "critical metric failed: errors High"


def test_nodata_is_left_out_but_half_nodata_fails() -> None:
    v = scoring.judge([verdict("a", P), verdict("b", P), verdict("c", N)])
    assert v.score == 100.0 and v.phase == "Successful"
    v = scoring.judge([verdict("a", P), verdict("c", N)])
    assert v.score == 0.0 and v.reason.startswith("no data for 1 of 2 metrics")


def test_an_all_nodata_group_does_not_penalize() -> None:
    metrics = [verdict(f"p{i}", P, group="latency") for i in range(3)]
    metrics.append(verdict("gpu", N, group="gpu"))
    v = scoring.judge(metrics, weights={"gpu": 50, "latency": 50})
    assert v.groups == {"latency": 100.0} and v.score == 100.0


def test_nodata_fail_metric_counts_as_a_failure() -> None:
    v = scoring.judge([verdict("a", P), verdict("b", Classification.NODATA_FAIL)])
    assert v.score == 50.0


def test_muted_metrics_are_shown_but_not_scored() -> None:
    v = scoring.judge([verdict("a", P), verdict("noisy", H, muted=True)])
    assert v.score == 100.0 and len(v.metrics) == 2 and v.failing() == []


def test_thresholds_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="marginal <= pass"):
        scoring.Thresholds(pass_score=50, marginal=80)


def test_end_to_end_from_samples() -> None:
    """A latency regression in one of two equally weighted groups: score 50 → Failed at
    the default thresholds, Inconclusive with marginal 50."""
    base = [100.0 + i % 7 for i in range(60)]
    slow = [140.0 + i % 7 for i in range(60)]
    metrics = [
        mw.classify(mw.MetricSpec(name="p99", group="latency"), canary=slow, baseline=base),
        mw.classify(mw.MetricSpec(name="errors", group="errors"), canary=base, baseline=base),
    ]
    assert scoring.judge(metrics).phase == "Failed"
    lenient = scoring.Thresholds(pass_score=90, marginal=50)
    assert scoring.judge(metrics, thresholds=lenient).phase == "Inconclusive"
