"""Kayenta's weighted-sum scorer: metric classifications → group scores → a 0–100 score
→ a run phase. Pure; called by the ``mannWhitney`` provider (``judges.mann_whitney``) and the
judge benchmark.

- A group's score is the share of its scored metrics that Pass (High, Low and
  NodataFailMetric fail; Nodata and muted metrics are left out).
- Groups with a configured weight use it; the others share what is left of 100 equally.
  Groups with nothing scored drop out and the rest are re-weighted, so missing data
  neither helps nor hurts (Kayenta's docs: "an all-Nodata group does not penalize").
- The score is 0 when a critical metric fails, or when half or more of the metrics had
  no data (Kayenta's 50% NODATA rule).
- ``score >= pass`` → Successful, ``marginal <= score < pass`` → Inconclusive, else Failed.

    >>> from changeover.analysis.judges.classifier import MetricSpec, classify
    >>> v = judge([classify(MetricSpec(name="p99", group="latency"),
    ...                     canary=[10, 11, 12], baseline=[1, 2, 3]),
    ...            classify(MetricSpec(name="errors", group="errors"),
    ...                     canary=[0, 1, 0], baseline=[0, 1, 0])],
    ...           thresholds=Thresholds(pass_score=95, marginal=40))
    >>> v.score, v.phase, v.groups
    (50.0, 'Inconclusive', {'errors': 100.0, 'latency': 0.0})
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from changeover.analysis.judges import classifier as mw
from changeover.analysis.providers import base

_FAILING = {mw.Classification.HIGH, mw.Classification.LOW, mw.Classification.NODATA_FAIL}
NODATA_LIMIT = 0.5  # Kayenta: the canary fails when this share of metrics has no data


@dataclass(frozen=True, kw_only=True)
class Thresholds:
    pass_score: float = 95.0  # Spinnaker's defaults
    marginal: float = 75.0

    def __post_init__(self) -> None:
        if not 0 <= self.marginal <= self.pass_score <= 100:
            raise ValueError(
                f"thresholds: expected 0 <= marginal <= pass <= 100, "
                f"got marginal {self.marginal:g}, pass {self.pass_score:g}"
            )

    def phase(self, score: float) -> base.MeasurementPhase:
        if score >= self.pass_score:
            return "Successful"
        if score >= self.marginal:
            return "Inconclusive"
        return "Failed"


@dataclass(frozen=True, kw_only=True)
class Verdict:
    score: float
    phase: base.MeasurementPhase
    reason: str
    groups: dict[str, float]  # group → score, for groups with something scored
    metrics: tuple[mw.MetricVerdict, ...] = field(default=())

    def failing(self) -> list[mw.MetricVerdict]:
        return [m for m in self.metrics if m.classification in _FAILING and not m.spec.muted]


def group_weights(groups: Sequence[str], configured: Mapping[str, float]) -> dict[str, float]:
    """Kayenta's rule: configured weights, the remainder of 100 shared by the rest.

    >>> group_weights(["errors", "latency", "cpu"], {"errors": 50})
    {'errors': 50, 'latency': 25.0, 'cpu': 25.0}
    """
    rest = [g for g in groups if g not in configured]
    share = max(0.0, 100 - sum(configured.get(g, 0) for g in groups)) / len(rest) if rest else 0.0
    return {g: configured.get(g, share) for g in groups}


def judge(
    metrics: Sequence[mw.MetricVerdict],
    *,
    thresholds: Thresholds | None = None,
    weights: Mapping[str, float] | None = None,
) -> Verdict:
    thresholds = thresholds or Thresholds()
    scored = [m for m in metrics if not m.spec.muted]
    by_group: dict[str, list[mw.MetricVerdict]] = {}
    for m in scored:
        by_group.setdefault(m.spec.group, []).append(m)
    groups: dict[str, float] = {}
    for name, members in sorted(by_group.items()):
        counted = [m for m in members if m.classification is not mw.Classification.NODATA]
        if counted:
            passed = sum(m.classification is mw.Classification.PASS for m in counted)
            groups[name] = 100.0 * passed / len(counted)
    w = group_weights(sorted(by_group), weights or {})
    total = sum(w[g] for g in groups)
    score = sum(groups[g] * w[g] for g in groups) / total if total > 0 else 0.0

    failing = [m for m in scored if m.classification in _FAILING]
    critical = [m for m in scored if m.critical_failure]
    nodata = [m for m in scored if m.classification is mw.Classification.NODATA]
    if critical:
        score = 0.0
        reason = "critical metric failed: " + _names(critical)
    elif scored and len(nodata) / len(scored) >= NODATA_LIMIT:
        score = 0.0
        reason = f"no data for {len(nodata)} of {len(scored)} metrics: {_names(nodata)}"
    elif failing:
        reason = f"score {score:.1f}: {_names(failing)}"
    else:
        reason = f"score {score:.1f}: every metric passed"
    return Verdict(
        score=score,
        phase=thresholds.phase(score),
        reason=reason,
        groups=groups,
        metrics=tuple(metrics),
    )


def _names(metrics: Sequence[mw.MetricVerdict]) -> str:
    return ", ".join(f"{m.name} {m.classification}" for m in metrics)
