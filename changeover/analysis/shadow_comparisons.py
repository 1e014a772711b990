"""The shadow's side of analysis: its answers as compared with the primary's.

The builtin router keeps, per shadow revision, the last compared pairs (wall time,
primary latency, shadow latency, the kinds they differ in, the shadow's status); see
``traffic.comparison.stats``. Analysis reads them over a window:

- the ``builtin`` provider's ``shadow-*`` metrics (``METRICS``), and without ``metric``
  on a revision that serves no traffic but is a shadow, all of them at once;
- the ``mannWhitney`` judge's ``builtin: shadow-latency`` series: per request, the
  shadow's latencies for the shadow revision and the primary's latencies of the same
  requests for the primary revision.

A window holds at most the pairs the router keeps (the last 1,024): a busy shadow is
judged on its most recent answers.

    >>> pairs = [(100.0, 0.010, 0.012, 0, 200), (101.0, 0.010, 0.030, 2, 200),
    ...          (102.0, 0.020, 0.021, 0, 503)]
    >>> w = window(pairs, now=102.5, seconds=60)
    >>> w.value("shadow-match-rate"), w.value("shadow-error-rate"), w.value("shadow-compared")
    (0.6666666666666666, 0.3333333333333333, 3.0)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from changeover.analysis.sampler import QUANTILES

KINDS = ("status", "body", "latency")  # bit order of a pair's kinds (comparison.stats)
METRICS = (
    "shadow-compared",
    "shadow-match-rate",
    *(f"shadow-{kind}-mismatch-rate" for kind in KINDS),
    "shadow-error-rate",
    *(f"shadow-latency-{q}" for q in QUANTILES),
    "shadow-latency-delta-p50",
    "shadow-latency-delta-p99",
)
SERIES = ("shadow-latency",)  # per-request samples for the judges

Pair = tuple[float, float, float, int, int]


class ShadowData(Protocol):
    """What the router keeps per shadow revision (``comparison.stats.ShadowStats``)."""

    primary: int
    pairs: Iterable[Pair]


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile, NaN without values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered), max(1, math.ceil(q * len(ordered)))) - 1]


@dataclass(frozen=True, kw_only=True)
class ShadowWindow:
    pairs: tuple[Pair, ...]
    seconds: float

    @property
    def compared(self) -> int:
        return len(self.pairs)

    def value(self, metric: str) -> float:
        """One of ``METRICS``; NaN where no pair was compared in the window."""
        n = len(self.pairs)
        if metric == "shadow-compared":
            return float(n)
        if metric not in METRICS:
            raise KeyError(metric)
        if n == 0:
            return math.nan
        if metric == "shadow-match-rate":
            return sum(1 for p in self.pairs if p[3] == 0) / n
        if metric == "shadow-error-rate":
            return sum(1 for p in self.pairs if p[4] >= 500 or p[4] == 0) / n
        if metric.endswith("-mismatch-rate"):
            bit = 1 << KINDS.index(metric.split("-")[1])
            return sum(1 for p in self.pairs if p[3] & bit) / n
        stat = metric.rsplit("-", 1)[1]
        if metric.startswith("shadow-latency-delta-"):
            return percentile([p[2] - p[1] for p in self.pairs], QUANTILES[stat])
        return percentile([p[2] for p in self.pairs], QUANTILES[stat])

    def summary(self) -> dict[str, float]:
        """Every number at once (camelCase, as the provider's other summaries)."""
        out = {"compared": float(self.compared), "window": self.seconds}
        for metric in METRICS[1:]:
            out[_camel(metric.removeprefix("shadow-"))] = self.value(metric)
        return out


def _camel(name: str) -> str:
    head, *rest = name.split("-")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def window(pairs: Iterable[Pair], *, now: float, seconds: float) -> ShadowWindow:
    """The pairs compared in the last ``seconds`` before ``now`` (wall time)."""
    start = now - seconds
    return ShadowWindow(pairs=tuple(p for p in pairs if p[0] >= start), seconds=seconds)


def latency_samples(
    shadows: Mapping[int, ShadowData], revision: int, *, now: float, seconds: float
) -> list[float]:
    """Per-request latencies for the judges: the shadow's own when ``revision`` is a
    shadow, else the primary's latencies of the requests mirrored to the shadows of
    ``revision`` (so both sides are the same requests)."""
    start = now - seconds
    mine = shadows.get(revision)
    if mine is not None:
        return [p[2] for p in mine.pairs if p[0] >= start]
    out: list[float] = []
    for data in shadows.values():
        if data.primary == revision:
            out += [p[1] for p in data.pairs if p[0] >= start]
    return out
