"""The A/B verdict: which variant converts better, by how much, and how sure we are.

``decide`` is pure (counts in, ``ABVerdict`` out); ``ABSignificanceProvider`` (registered
as ``abSignificance`` and ``abTest``) reads the counts per revision and lets an ``abTest``
rollout end on the verdict. Two guards against peeking (``judges.proportions`` explains):

- ``fixedHorizon``: no verdict until both variants reach ``minSamples`` (the planned
  horizon, e.g. ``proportions.sample_size``); then one z-test at ``alpha``, decided.
- ``sequential`` (default): from ``minSamples`` on, the mSPRT always-valid p-value is read
  at every look; a winner as soon as p ≤ alpha, "no difference" at ``maxSamples``.

    provider:
      abSignificance:
        method: sequential          # or fixedHorizon
        alpha: 0.05
        minSamples: 1000            # per variant
        maxSamples: 50000           # sequential: give up with "no difference" here
        minimumDetectableEffect: 0.1    # relative lift the mSPRT is tuned to
        higherIsBetter: true        # false when the metric counts bad events
        onNoDifference: Inconclusive    # the phase of a decided tie
        window: 1h                  # builtin counts: how far back
        conversions: {builtin: successes}   # successes | errors | requests, or
        trials: {builtin: requests}         # {prometheus: {query: ..."{{revision}}"...}}

Control is the stable revision, treatment the canary. Or, with a flag the builtin router
evaluates per request (``Flag.spec.router``), two variants of one revision (the canary;
a flag rollout's runs measure the revision its target serves), from builtin counts:

        variant: {flag: checkout, control: "off", treatment: "on"}

 Phases: treatment wins →
Successful, control wins → Failed, decided tie → ``onNoDifference``, not decided yet →
Undecided (``value.decided`` is false): the run records it and keeps measuring, and a run
that ends still undecided is Inconclusive (``analysis.assess``).
"""

from __future__ import annotations

import asyncio
import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from changeover.analysis.judges import proportions, sources
from changeover.analysis.judges.proportions import Arm
from changeover.analysis.providers import base


class Method(enum.StrEnum):
    FIXED = "fixedHorizon"
    SEQUENTIAL = "sequential"


Winner = Literal["control", "treatment"]


@dataclass(frozen=True, kw_only=True)
class ABConfig:
    method: Method = Method.SEQUENTIAL
    alpha: float = 0.05
    min_samples: int = 1000
    max_samples: int | None = None
    relative_mde: float = 0.1
    higher_is_better: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha: expected a number between 0 and 1, got {self.alpha:g}")
        if self.min_samples < 1:
            raise ValueError("minSamples: expected a positive count")
        if self.max_samples is not None and self.max_samples < self.min_samples:
            raise ValueError("maxSamples: expected at least minSamples")
        if self.relative_mde <= 0:
            raise ValueError("minimumDetectableEffect: expected a positive relative lift")


@dataclass(frozen=True, kw_only=True)
class ABVerdict:
    decided: bool  # False: keep collecting, nothing may be concluded yet
    winner: Winner | None  # None: no difference (when decided) or not decided
    p_value: float  # z-test (fixed) or always-valid (sequential) p of "no difference"
    difference: float  # treatment rate − control rate
    interval: tuple[float, float]  # of the difference, at 1 − alpha (always-valid if sequential)
    lift: float  # difference / control rate
    lift_interval: tuple[float, float]  # interval / control rate (control rate taken as known)
    control: Arm
    treatment: Arm
    method: Method
    reason: str


def decide(control: Arm, treatment: Arm, config: ABConfig | None = None) -> ABVerdict:
    """The verdict at this look.

    >>> v = decide(Arm(1000, 10000), Arm(1200, 10000), ABConfig(method=Method.FIXED))
    >>> v.winner, round(v.lift, 2), [round(x, 4) for x in v.interval]
    ('treatment', 0.2, [0.0113, 0.0287])
    """
    cfg = config or ABConfig()
    diff = treatment.rate - control.rate if control.trials and treatment.trials else math.nan
    if cfg.method is Method.FIXED:
        _, p = proportions.z_test(control, treatment)
        interval = proportions.wald_interval(control, treatment, alpha=cfg.alpha)
    else:
        tau = proportions.mixing_scale(control, treatment, relative_mde=cfg.relative_mde)
        p = proportions.msprt_p_value(control, treatment, tau=tau)
        interval = proportions.confidence_sequence(control, treatment, alpha=cfg.alpha, tau=tau)
    base_rate = control.rate
    lift = diff / base_rate if base_rate and not math.isnan(diff) else math.nan
    lift_interval = (
        (interval[0] / base_rate, interval[1] / base_rate) if base_rate else (math.nan, math.nan)
    )
    fewest = min(control.trials, treatment.trials)

    def verdict(decided: bool, winner: Winner | None, reason: str) -> ABVerdict:
        return ABVerdict(
            decided=decided,
            winner=winner,
            p_value=p,
            difference=diff,
            interval=interval,
            lift=lift,
            lift_interval=lift_interval,
            control=control,
            treatment=treatment,
            method=cfg.method,
            reason=reason,
        )

    shown = f"lift {lift:+.1%} ({lift_interval[0]:+.1%} to {lift_interval[1]:+.1%}), p {p:.3g}"
    if fewest < cfg.min_samples:
        return verdict(False, None, f"collecting: {fewest:g} of {cfg.min_samples} per variant")
    if p <= cfg.alpha and diff != 0:
        better: Winner = "treatment" if (diff > 0) == cfg.higher_is_better else "control"
        return verdict(True, better, f"{better} wins: {shown}")
    if cfg.method is Method.FIXED:
        return verdict(True, None, f"no significant difference at the horizon: {shown}")
    if cfg.max_samples is not None and fewest >= cfg.max_samples:
        return verdict(True, None, f"no significant difference by {cfg.max_samples}: {shown}")
    return verdict(False, None, f"no significant difference yet: {shown}")


# -- the provider --------------------------------------------------------------------------

COUNTS = {"requests": None, "successes": "success-rate", "errors": "error-rate"}
DEFAULT_WINDOW = 3600.0


VARIANT_KEYS = ("flag", "control", "treatment")


def parse_variants(config: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """``variant: {flag, control, treatment}`` → (flag, control, treatment), or None."""
    scope = config.get("variant")
    if scope is None:
        return None
    if not isinstance(scope, Mapping):
        raise ValueError("variant: expected {flag: NAME, control: VARIANT, treatment: VARIANT}")
    for key in scope:
        if key not in VARIANT_KEYS:
            raise ValueError(f"variant.{key}: unknown field; expected {', '.join(VARIANT_KEYS)}")
    for key in VARIANT_KEYS:
        if not isinstance(scope.get(key), str) or not scope[key]:
            raise ValueError(
                f"variant.{key}: expected a {'flag' if key == 'flag' else 'variant'} name"
            )
    if scope["control"] == scope["treatment"]:
        raise ValueError("variant.treatment: expected a variant other than control")
    return scope["flag"], scope["control"], scope["treatment"]


def parse_config(config: Mapping[str, Any]) -> tuple[ABConfig, sources.Source, sources.Source]:
    """``provider.abSignificance`` → settings and the conversions/trials sources."""
    try:
        max_samples = config.get("maxSamples")
        cfg = ABConfig(
            method=Method(config.get("method", "sequential")),
            alpha=float(config.get("alpha", 0.05)),
            min_samples=int(config.get("minSamples", 1000)),
            max_samples=int(max_samples) if max_samples is not None else None,
            relative_mde=float(config.get("minimumDetectableEffect", 0.1)),
            higher_is_better=bool(config.get("higherIsBetter", True)),
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(
            str(exc).replace("is not a valid Method", "is not sequential or fixedHorizon")
        ) from None
    if config.get("onNoDifference", "Inconclusive") not in ("Successful", "Inconclusive", "Failed"):
        raise ValueError("onNoDifference: expected Successful, Inconclusive or Failed")
    window = sources.parse_window(config, "window", DEFAULT_WINDOW)
    variants = parse_variants(config)
    found: list[sources.Source] = []
    for key in ("conversions", "trials"):
        item = config.get(key)
        if not isinstance(item, Mapping):
            raise ValueError(
                f"{key}: expected {{builtin: successes}} or {{prometheus: {{query: ...}}}}"
            )
        # Counts are totals: an instant query, unless the user asks for a range.
        src = sources.parse_source(
            item, where=key, defaults=config.get("prometheus") or {}, window=window, step=window
        )
        if src.prometheus is not None and "rangeQuery" not in (item.get("prometheus") or {}):
            src = sources.Source(
                prometheus={k: v for k, v in src.prometheus.items() if k != "rangeQuery"}
            )
        if src.builtin is not None and src.builtin not in COUNTS:
            raise ValueError(f"{key}.builtin: expected one of {', '.join(COUNTS)}")
        if src.builtin is None and variants is not None:
            raise ValueError(
                f"{key}: with variant, expected builtin counts: {{builtin: {' | '.join(COUNTS)}}}"
            )
        found.append(src)
    return cfg, found[0], found[1]


def problems(config: Mapping[str, Any]) -> list[str]:
    try:
        parse_config(config)
    except ValueError as exc:
        return [str(exc)]
    return []


async def _count(
    source: sources.Source, *, revision: int, context: base.MeasureContext, window: float
) -> float:
    if source.builtin is None:
        values = await sources.fetch(source, revision=revision, context=context, window=window)
        return float(sum(v for v in values if not math.isnan(v)))
    # Per-second requests (the sampler's rate over ~1 s), times the share that counts.
    rate_src = sources.Source(builtin="request-rate")
    rates = await sources.fetch(rate_src, revision=revision, context=context, window=window)
    share_series = COUNTS[source.builtin]
    if share_series is None:
        return float(sum(r for r in rates if not math.isnan(r)))
    share_src = sources.Source(builtin=share_series)
    shares = await sources.fetch(share_src, revision=revision, context=context, window=window)
    return float(
        sum(
            r * s
            for r, s in zip(rates, shares, strict=False)
            if not (math.isnan(r) or math.isnan(s))
        )
    )


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else value


def to_value(v: ABVerdict, *, control: int, treatment: int) -> dict[str, Any]:
    revision = {"control": control, "treatment": treatment}
    return {
        "decided": v.decided,
        "winner": v.winner,
        "winnerRevision": revision[v.winner] if v.winner else None,
        "pValue": v.p_value,
        "difference": _finite(v.difference),
        "interval": [_finite(x) for x in v.interval],
        "lift": _finite(v.lift),
        "liftInterval": [_finite(x) for x in v.lift_interval],
        "method": str(v.method),
        "control": {
            "revision": control,
            "conversions": v.control.conversions,
            "trials": v.control.trials,
            "rate": _finite(v.control.rate),
        },
        "treatment": {
            "revision": treatment,
            "conversions": v.treatment.conversions,
            "trials": v.treatment.trials,
            "rate": _finite(v.treatment.rate),
        },
    }


class ABSignificanceProvider:
    name = "abSignificance"

    async def measure(
        self,
        config: Mapping[str, Any],
        *,
        args: Mapping[str, str],
        context: base.MeasureContext,
    ) -> base.ProviderResult:
        try:
            cfg, conv_src, trial_src = parse_config(config)
        except ValueError as exc:
            raise base.ProviderError(f"provider.abSignificance.{exc}") from None
        window = sources.parse_window(config, "window", DEFAULT_WINDOW)
        variants = parse_variants(config)
        if variants is not None:
            return _measure_variants(config, cfg, variants, context, window, conv_src, trial_src)
        control, treatment = context.stable_revision, context.canary_revision
        if control is None or treatment is None:
            raise base.ProviderError(
                "abSignificance needs a control (stable) and a treatment (canary) revision"
            )
        counts = await asyncio.gather(
            *(
                _count(src, revision=rev, context=context, window=window)
                for rev in (control, treatment)
                for src in (conv_src, trial_src)
            )
        )
        try:
            arms = Arm(counts[0], counts[1]), Arm(counts[2], counts[3])
        except ValueError as exc:
            raise base.ProviderError(f"abSignificance: {exc}") from None
        verdict = decide(arms[0], arms[1], cfg)
        return base.ProviderResult(
            value=to_value(verdict, control=control, treatment=treatment),
            phase=_phase(verdict, config),
            message=verdict.reason,
        )


def _phase(verdict: ABVerdict, config: Mapping[str, Any]) -> base.MeasurementPhase:
    if not verdict.decided:
        return "Undecided"
    phases: dict[Winner | None, base.MeasurementPhase] = {
        "treatment": "Successful",
        "control": "Failed",
        None: config.get("onNoDifference", "Inconclusive"),
    }
    return phases[verdict.winner]


def _measure_variants(
    config: Mapping[str, Any],
    cfg: ABConfig,
    variants: tuple[str, str, str],
    context: base.MeasureContext,
    window: float,
    conv_src: sources.Source,
    trial_src: sources.Source,
) -> base.ProviderResult:
    """Two variants of one revision, from the router's per-variant counts over ``window``."""
    flag, control, treatment = variants
    revision = context.canary_revision or context.stable_revision
    if revision is None or context.variant_window is None:
        raise base.ProviderError("abSignificance.variant: no per-variant router metrics here")

    def count(src: sources.Source, variant: str) -> float:
        assert context.variant_window is not None and revision is not None
        stats = context.variant_window(revision, flag, variant, window)
        picked = {"requests": stats.requests, "errors": stats.errors}
        picked["successes"] = stats.requests - stats.errors
        return float(picked[str(src.builtin)])

    try:
        arms = (
            Arm(count(conv_src, control), count(trial_src, control)),
            Arm(count(conv_src, treatment), count(trial_src, treatment)),
        )
    except ValueError as exc:
        raise base.ProviderError(f"abSignificance: {exc}") from None
    verdict = decide(arms[0], arms[1], cfg)
    value = to_value(verdict, control=revision, treatment=revision)
    value["control"]["variant"], value["treatment"]["variant"] = control, treatment
    value["winnerVariant"] = {"control": control, "treatment": treatment}.get(verdict.winner or "")
    return base.ProviderResult(
        value=value, phase=_phase(verdict, config), message=f"flag {flag}: {verdict.reason}"
    )


base.register("abSignificance", ABSignificanceProvider)
base.register("abTest", ABSignificanceProvider)
