"""The MetricProvider plug-in axis: take one measurement of one metric.

An analysis run (``analysis.runner``, driven by the controller) calls ``measure`` every
``interval``; the provider returns a ``ProviderResult`` whose ``value`` the metric's
``successCondition``/``failureCondition`` see as ``result``. A provider that judges by
itself (the Mann-Whitney judge) also sets ``phase``. A failed query raises
``ProviderError``; the runner records it as an Error measurement, never as a crash.
``measure`` is a coroutine, so start / poll / cancel is: call it, await it, cancel the
task (a ``job`` provider kills its process on cancellation).

Providers register by the key users write under ``provider:`` (``builtin``, ``prometheus``,
``web``, ``job``, ``mannWhitney``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from changeover import errors

MeasurementPhase = Literal["Successful", "Failed", "Inconclusive", "Error"]


class ProviderError(errors.TemporaryBackendError):
    """The measurement could not be taken (query failed, timeout, bad response)."""


@dataclass(frozen=True, kw_only=True)
class ProviderResult:
    value: Any  # what conditions see as ``result``: a number, a list, a mapping
    phase: MeasurementPhase | None = None  # set only by providers that judge by themselves
    message: str = ""


# (revision, metric name, window seconds) → one value per second, oldest first, from the
# builtin router's sampler. Metric names: see ``analysis.providers.builtin``.
SeriesFn = Callable[[int, str, float], list[float]]


@dataclass(frozen=True, kw_only=True)
class MeasureContext:
    rollout: str
    namespace: str
    stable_revision: int | None
    canary_revision: int | None
    now: float
    series: SeriesFn | None = None


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


_REGISTRY: dict[str, Callable[[], MetricProvider]] = {}


def register(name: str, factory: Callable[[], MetricProvider]) -> None:
    _REGISTRY[name] = factory


def create(name: str) -> MetricProvider:
    try:
        return _REGISTRY[name]()
    except KeyError:
        raise errors.SpecError.single(
            file="",
            path=f"provider.{name}",
            message=f"unknown metric provider; expected one of {', '.join(sorted(_REGISTRY))}",
        ) from None


def registered() -> list[str]:
    return sorted(_REGISTRY)
