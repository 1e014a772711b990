"""The ``mannWhitney`` metric provider: Kayenta-style canary judgment as one measurement.

The analysis runner calls ``MannWhitneyProvider.measure`` each interval; it fetches every
metric's samples for the baseline (stable) and canary revisions (``judges.sources``),
classifies them (``judges.classifier``), scores them (``judges.scoring``) and returns the
verdict as the measurement's phase, so no success condition is needed:

    provider:
      mannWhitney:
        window: 5m                         # how far back samples reach
        step: 10s                          # Prometheus resolution (builtin: 1 per second)
        thresholds: {pass: 95, marginal: 75}
        groupWeights: {errors: 60, latency: 40}
        prometheus: {address: http://127.0.0.1:9090}   # defaults for prometheus sources
        metrics:
          - name: errors
            builtin: error-rate
            group: errors
            direction: increase            # increase | decrease | either (default)
            critical: true
            nanStrategy: replace           # remove (default) | replace (NaN → 0)
            mustHaveData: false
            muted: false
            outliers: {strategy: remove, factor: 3}
            effectSize: {measure: meanRatio, allowedIncrease: 1.1, criticalIncrease: 1.5}
          - name: latency
            builtin: latency               # per-request samples (also ttft, itl)
            group: latency
          - name: p99
            group: latency
            prometheus: {query: 'histogram_quantile(0.99, sum by (le) (rate(
                changeover_request_duration_seconds_bucket{revision="{{revision}}"}[30s])))'}

``result`` is ``{"score": 0–100, "phase": ..., "groups": {...}, "metrics": {name: {...}}}``
(NaN shown as null), so conditions such as ``result.score >= 80`` work too. When no metric
has samples on both sides yet, the measurement is an Error (retried), not a failure.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from changeover.analysis.judges import classifier as mw
from changeover.analysis.judges import scoring, sources
from changeover.analysis.providers import base

DEFAULT_WINDOW = 300.0
DEFAULT_STEP = 10.0


@dataclass(frozen=True, kw_only=True)
class JudgedMetric:
    spec: mw.MetricSpec
    source: sources.Source


@dataclass(frozen=True, kw_only=True)
class JudgeConfig:
    metrics: tuple[JudgedMetric, ...]
    window: float = DEFAULT_WINDOW
    thresholds: scoring.Thresholds = field(default_factory=scoring.Thresholds)
    weights: Mapping[str, float] | None = None
    baseline_revision: int | None = None  # default: the stable revision
    canary_revision: int | None = None  # default: the canary revision


def _enum(kind: type[mw.Direction | mw.NanStrategy | mw.EffectMeasure], value: Any, at: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        choices = " | ".join(m.value for m in kind)
        raise ValueError(f"{at}: expected {choices}, got {value!r}") from None


def _number(value: Any, at: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{at}: expected a number, got {value!r}")
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{at}: expected a number, got {value!r}") from None


def _metric(item: Any, i: int, config: Mapping[str, Any], window: float) -> JudgedMetric:
    at = f"metrics[{i}]"
    if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
        raise ValueError(f"{at}: expected a mapping with a name")
    source = sources.parse_source(
        item,
        where=at,
        defaults=config.get("prometheus") or {},
        window=window,
        step=sources.parse_window(config, "step", DEFAULT_STEP),
    )
    effect = item.get("effectSize") or {}
    outliers = item.get("outliers") or {}
    if not isinstance(effect, Mapping) or not isinstance(outliers, Mapping):
        raise ValueError(f"{at}: effectSize and outliers are mappings")
    gates = {
        key: _number(effect[name], f"{at}.effectSize.{name}")
        for key, name in (
            ("allowed_increase", "allowedIncrease"),
            ("allowed_decrease", "allowedDecrease"),
            ("critical_increase", "criticalIncrease"),
            ("critical_decrease", "criticalDecrease"),
        )
        if name in effect
    }
    measure = _enum(mw.EffectMeasure, effect.get("measure", "meanRatio"), f"{at}.effectSize")
    strategy = outliers.get("strategy", "keep")
    if strategy not in ("keep", "remove"):
        raise ValueError(f"{at}.outliers.strategy: expected keep | remove, got {strategy!r}")
    spec = mw.MetricSpec(
        name=item["name"],
        group=str(item.get("group", "default")),
        direction=_enum(mw.Direction, item.get("direction", "either"), f"{at}.direction"),
        critical=bool(item.get("critical", False)),
        must_have_data=bool(item.get("mustHaveData", False)),
        muted=bool(item.get("muted", False)),
        nan_strategy=_enum(mw.NanStrategy, item.get("nanStrategy", "remove"), f"{at}.nanStrategy"),
        remove_outliers=strategy == "remove",
        outlier_factor=_number(outliers.get("factor", 3.0), f"{at}.outliers.factor"),
        effect_size=mw.EffectSize(measure=measure, **gates),
    )
    return JudgedMetric(spec=spec, source=source)


def parse_config(config: Mapping[str, Any]) -> JudgeConfig:
    """``provider.mannWhitney`` → ``JudgeConfig``; ``ValueError`` names the field."""
    window = sources.parse_window(config, "window", DEFAULT_WINDOW)
    items = config.get("metrics")
    if not isinstance(items, list) or not items:
        raise ValueError("metrics: expected a list of metrics to judge")
    metrics = tuple(_metric(item, i, config, window) for i, item in enumerate(items))
    names = [m.spec.name for m in metrics]
    if len(set(names)) != len(names):
        raise ValueError(f"metrics: names must be unique, got {names}")
    raw = config.get("thresholds") or {}
    thresholds = scoring.Thresholds(
        pass_score=_number(raw.get("pass", 95), "thresholds.pass"),
        marginal=_number(raw.get("marginal", 75), "thresholds.marginal"),
    )
    weights = config.get("groupWeights") or {}
    if not isinstance(weights, Mapping):
        raise ValueError("groupWeights: expected group: weight")
    revisions = {
        key: int(_number(config[key], key))
        for key in ("baselineRevision", "canaryRevision")
        if config.get(key) not in (None, "")
    }
    return JudgeConfig(
        metrics=metrics,
        window=window,
        thresholds=thresholds,
        weights={str(g): _number(w, f"groupWeights.{g}") for g, w in weights.items()},
        baseline_revision=revisions.get("baselineRevision"),
        canary_revision=revisions.get("canaryRevision"),
    )


def problems(config: Mapping[str, Any]) -> list[str]:
    """What ``lint`` reports for a ``provider.mannWhitney`` block (empty when valid)."""
    try:
        parse_config(config)
    except ValueError as exc:
        return [str(exc)]
    return []


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else value


def _stats(s: mw.Stats) -> dict[str, Any]:
    return {
        "count": s.count,
        "mean": _finite(s.mean),
        "std": _finite(s.std),
        "min": _finite(s.min),
        "max": _finite(s.max),
    }


def to_value(verdict: scoring.Verdict) -> dict[str, Any]:
    """The JSON-safe ``result`` of a verdict."""
    metrics: dict[str, Any] = {}
    for m in verdict.metrics:
        t = m.test
        metrics[m.name] = {
            "classification": str(m.classification),
            "group": m.spec.group,
            "critical": m.critical_failure,
            "muted": m.spec.muted,
            "effectSize": _finite(m.effect_size),
            "pValue": _finite(t.p_value) if t else None,
            "estimate": t.estimate if t else None,
            "interval": [t.lower, t.upper] if t else None,
            "reason": m.reason,
            "canary": _stats(m.canary),
            "baseline": _stats(m.baseline),
        }
    return {
        "score": round(verdict.score, 2),
        "phase": verdict.phase,
        "groups": verdict.groups,
        "metrics": metrics,
    }


async def evaluate(config: JudgeConfig, *, context: base.MeasureContext) -> scoring.Verdict:
    baseline = config.baseline_revision or context.stable_revision
    canary = config.canary_revision or context.canary_revision
    if baseline is None or canary is None:
        raise base.ProviderError("mannWhitney needs a baseline (stable) and a canary revision")
    if baseline == canary:
        raise base.ProviderError(f"mannWhitney: baseline and canary are both revision {canary}")
    fetches = [
        sources.fetch(m.source, revision=rev, context=context, window=config.window)
        for m in config.metrics
        for rev in (canary, baseline)
    ]
    samples = await asyncio.gather(*fetches)
    verdicts = [
        mw.classify(m.spec, canary=samples[2 * i], baseline=samples[2 * i + 1])
        for i, m in enumerate(config.metrics)
    ]
    if all(v.classification is mw.Classification.NODATA for v in verdicts):
        # Nothing to judge yet (a canary without traffic): an Error measurement, which the
        # runner retries up to consecutiveErrorLimit, rather than Kayenta's NODATA failure
        # that would abort a good canary that merely started quietly.
        raise base.ProviderError(
            "mannWhitney: no samples yet: " + "; ".join(f"{v.name}: {v.reason}" for v in verdicts)
        )
    return scoring.judge(verdicts, thresholds=config.thresholds, weights=config.weights)


class MannWhitneyProvider:
    name = "mannWhitney"

    async def measure(
        self,
        config: Mapping[str, Any],
        *,
        args: Mapping[str, str],
        context: base.MeasureContext,
    ) -> base.ProviderResult:
        try:
            parsed = parse_config(config)
        except ValueError as exc:
            raise base.ProviderError(f"provider.mannWhitney.{exc}") from None
        verdict = await evaluate(parsed, context=context)
        return base.ProviderResult(
            value=to_value(verdict), phase=verdict.phase, message=verdict.reason
        )


base.register("mannWhitney", MannWhitneyProvider)
