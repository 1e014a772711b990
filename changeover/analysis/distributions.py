"""Per-request distributions over a window, from the router's 1%-error sketches.

The builtin router keeps a log-bucketed sketch (``traffic.builtin.sketch``: a count per
bucket ``(γ^(k-1), γ^k]``) of every request's latency, and of every stream's time to first
token and inter-token gaps. Its snapshot carries the cumulative ``bins`` and ``γ``. The
sampler (``analysis.sampler``) keeps, per second, only the bins that changed, as two
compact arrays (``SketchRing``), so that a window's distribution is the sum of the deltas
in it: a p99 from it is within 1% of a latency that was observed at that rank, and the
``mannWhitney`` judge gets per-request samples instead of per-second summaries.

    >>> bins = {k: 1 for k in range(-10, 10)}
    >>> len(samples(bins, 1.02, limit=5))
    5
    >>> [round(v, 4) for v in samples({0: 3}, 1.02, limit=100)]
    [0.9901, 0.9901, 0.9901]
"""

from __future__ import annotations

import math
from array import array
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

# Snapshot paths of the sketched histograms, by the name the judges and conditions use.
DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "latency": ("latency",),
    "ttft": ("streams", "ttft"),
    "itl": ("streams", "itl"),
}
# Per-request samples handed to a judge at most (its test is O(n·m) in memory and time).
MAX_SAMPLES = 1000
MAX_KEYS = 4096  # bins accepted from one snapshot (the router keeps fewer than 1,600)

Bins = dict[int, int]


def value_of(key: int, gamma: float) -> float:
    """What a bucket stands for: within the sketch's relative error of all values in it."""
    return 2 * gamma**key / (gamma + 1)


def bins_of(snap: Mapping[str, Any], name: str) -> tuple[Bins, float] | None:
    """The cumulative ``(bins, γ)`` of distribution ``name`` in a revision's snapshot, or
    None when the router keeps no sketch of it (HAProxy, an older router)."""
    node: Any = snap
    for part in DISTRIBUTIONS[name]:
        node = node.get(part) if isinstance(node, Mapping) else None
    sketch = node.get("sketch") if isinstance(node, Mapping) else None
    if not isinstance(sketch, Mapping):
        return None
    gamma = float(sketch.get("gamma", 0.0))
    raw = sketch.get("bins")
    if not 1.0 < gamma < 2.0 or not isinstance(raw, Mapping):
        return None
    out: Bins = {}
    for k, n in list(raw.items())[:MAX_KEYS]:
        if int(n) > 0:
            out[int(k)] = int(n)
    return out, gamma


def minus(newer: Bins, older: Bins | None) -> Bins:
    """The counts added between two cumulative readings (a reset counts from zero)."""
    if not older:
        return dict(newer)
    out: Bins = {}
    for k, n in newer.items():
        d = n - older.get(k, 0)
        if d > 0:
            out[k] = d
    return out


def merge(parts: Iterable[Bins]) -> Bins:
    out: Bins = {}
    for part in parts:
        for k, n in part.items():
            out[k] = out.get(k, 0) + n
    return out


def quantile(bins: Bins, q: float, gamma: float) -> float:
    """The value at rank ``q`` (0..1); NaN without counts."""
    total = sum(bins.values())
    if total <= 0:
        return math.nan
    rank = q * (total - 1)
    seen = 0
    for k in sorted(bins):
        seen += bins[k]
        if seen > rank:
            return value_of(k, gamma)
    return value_of(max(bins), gamma)


def samples(bins: Bins, gamma: float, *, limit: int = MAX_SAMPLES) -> list[float]:
    """Per-request values, smallest first: each bucket's value as often as it was counted,
    or, past ``limit`` requests, ``limit`` evenly spaced quantiles of them. Thinned that way
    a sample is a judge's conservative view: it claims fewer observations than there were,
    never a shape that was not observed."""
    total = sum(bins.values())
    if total <= 0:
        return []
    keys = sorted(bins)
    if total <= limit:
        return [value_of(k, gamma) for k in keys for _ in range(bins[k])]
    out: list[float] = []
    i, seen = 0, bins[keys[0]]
    for j in range(limit):
        rank = (j + 0.5) * total / limit
        while seen <= rank and i + 1 < len(keys):
            i += 1
            seen += bins[keys[i]]
        out.append(value_of(keys[i], gamma))
    return out


class SketchRing:
    """One distribution's per-second changes, oldest first, as compact arrays."""

    __slots__ = ("gamma", "last", "ring")

    def __init__(self, capacity: int) -> None:
        self.ring: deque[tuple[float, array[int], array[int]]] = deque(maxlen=capacity)
        self.last: Bins = {}
        self.gamma = 0.0

    def sample(self, t: float, cumulative: Bins, gamma: float) -> None:
        delta = minus(cumulative, self.last)
        self.last = cumulative
        self.gamma = gamma
        keys = sorted(delta)
        self.ring.append((t, array("i", keys), array("q", [delta[k] for k in keys])))

    def since(self, after: float, live: Bins | None = None) -> Bins:
        """Counts sampled after time ``after``, plus ``live``'s change since the last sample."""
        parts: list[Bins] = []
        for t, keys, counts in reversed(self.ring):
            if t <= after:
                break
            parts.append(dict(zip(keys, counts, strict=True)))
        if live is not None:
            parts.append(minus(live, self.last))
        return merge(parts)
