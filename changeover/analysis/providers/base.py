"""The MetricProvider plug-in axis: take one measurement of one metric.

An analysis run (``analysis.runner``, driven by the controller) calls ``measure`` every
``interval``; the provider returns a ``ProviderResult`` whose ``value`` the metric's
``successCondition``/``failureCondition`` see as ``result``. A provider that judges by
itself (the Mann-Whitney judge) also sets ``phase``. A failed query raises
``ProviderError``; the runner records it as an Error measurement, never as a crash.
``measure`` is a coroutine, so start / poll / cancel is: call it, await it, cancel the
task (a ``job`` provider kills its process on cancellation).

Providers register by the key users write under ``provider:`` (``builtin``, ``prometheus``,
``web``, ``job``, ``mannWhitney``). The ones that ship are named in ``SHIPPED`` with the
module that registers them, imported the first time the name is used: ``lint`` knows every
name without loading each provider's dependencies.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from changeover import errors
from changeover.analysis import sampler, shadow_comparisons

# "Undecided": a judge that needs more data before it may conclude anything (an A/B test
# short of its sample size): recorded and shown, but neither a pass, a fail nor inconclusive.
MeasurementPhase = Literal["Successful", "Failed", "Inconclusive", "Error", "Undecided"]


class ProviderError(errors.TemporaryBackendError):
    """The measurement could not be taken (query failed, timeout, bad response)."""


@dataclass(frozen=True, kw_only=True)
class ProviderResult:
    value: Any  # what conditions see as ``result``: a number, a list, a mapping
    phase: MeasurementPhase | None = None  # set only by providers that judge by themselves
    message: str = ""
    # What the measurement was taken with, kept beside it (Argo's measurement metadata:
    # the job provider's ``job-name``/``job-namespace``).
    metadata: Mapping[str, str] = field(default_factory=dict)


# (revision, metric name, window seconds) → one value per second, oldest first, from the
# builtin router's sampler. Metric names: ``analysis.sampler.SERIES`` (request-rate,
# error-rate, success-rate, latency-mean, latency-p50/p90/p95/p99, ttfb-...), or per-request
# samples of ``analysis.distributions.DISTRIBUTIONS`` (latency, ttft, itl).
SeriesFn = Callable[[int, str, float], list[float]]
# (revision, window seconds) → the builtin router's traffic of that revision in the window.
WindowFn = Callable[[int, float], "sampler.WindowStats"]
# (revision, flag, variant, seconds) → the traffic the router gave that variant of a flag it
# evaluates, within the revision (``sampler.Sampler.window(variant=)``).
VariantWindowFn = Callable[[int, str, str, float], "sampler.WindowStats"]


@dataclass(frozen=True, kw_only=True)
class ReplicaProcess:
    """One running replica of a revision, as the platform reports it."""

    pid: int | None
    restarts: int = 0


# revision → its replicas now (for the builtin provider's restarts, cpu and memory).
ReplicasFn = Callable[[int], list[ReplicaProcess]]
# The rollout's shadow comparisons now: shadow revision →
# ``analysis.shadow_comparisons.ShadowData``.
ShadowsFn = Callable[[], Mapping[int, "shadow_comparisons.ShadowData"]]


@dataclass(frozen=True, kw_only=True)
class MeasureContext:
    rollout: str
    namespace: str
    stable_revision: int | None
    canary_revision: int | None
    now: float
    series: SeriesFn | None = None
    window: WindowFn | None = None
    replicas: ReplicasFn | None = None
    shadows: ShadowsFn | None = None
    variant_window: VariantWindowFn | None = None


class MetricProvider(Protocol):
    name: str

    async def measure(
        self,
        config: Mapping[str, Any],
        *,
        args: Mapping[str, str],
        context: MeasureContext,
    ) -> ProviderResult:
        """``config`` is the block under ``provider.<name>`` with ``{{args.x}}`` already
        substituted. Raise ``ProviderError`` when no measurement could be taken."""


# What ``lint`` says about a provider's config block: one message per problem.
ProblemsFn = Callable[[Mapping[str, Any]], list[str]]

# provider name → the module whose import registers it.
SHIPPED: Mapping[str, str] = {
    "builtin": "changeover.analysis.providers.builtin",
    "web": "changeover.analysis.providers.web",
    "job": "changeover.analysis.providers.job",
    "prometheus": "changeover.analysis.providers.prometheus",
    "mannWhitney": "changeover.analysis.judges.mann_whitney",
    "abSignificance": "changeover.analysis.judges.ab_significance",
    "abTest": "changeover.analysis.judges.ab_significance",
}

_REGISTRY: dict[str, Callable[[], MetricProvider]] = {}
_PROBLEMS: dict[str, ProblemsFn] = {}


def register(
    name: str, factory: Callable[[], MetricProvider], *, problems: ProblemsFn | None = None
) -> None:
    """Make ``provider: {<name>: ...}`` available; ``problems`` checks a config at lint."""
    _REGISTRY[name] = factory
    if problems is not None:
        _PROBLEMS[name] = problems


def _load(name: str) -> None:
    """Import the shipped module of provider ``name`` unless something registered it."""
    if name not in _REGISTRY and name in SHIPPED:
        importlib.import_module(SHIPPED[name])


def problems(name: str, config: Mapping[str, Any]) -> list[str]:
    """Lint-time problems of ``config`` for provider ``name`` ([] if it has no checker).
    A module-level ``problems`` function in the provider's module is found too."""
    _load(name)
    check = _PROBLEMS.get(name)
    if check is None and name in _REGISTRY:
        module = sys.modules.get(getattr(_REGISTRY[name], "__module__", ""))
        found = getattr(module, "problems", None)
        check = found if callable(found) else None
    return list(check(config)) if check is not None else []


def create(name: str) -> MetricProvider:
    _load(name)
    try:
        return _REGISTRY[name]()
    except KeyError:
        raise errors.SpecError.single(
            file="",
            path=f"provider.{name}",
            message=f"unknown metric provider; expected one of {', '.join(registered())}",
        ) from None


def registered() -> list[str]:
    """Every provider name: the shipped ones (loaded or not) and those registered."""
    return sorted({*SHIPPED, *_REGISTRY})
