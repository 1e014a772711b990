"""A log-bucketed distribution sketch (DDSketch's mapping) with 1% relative error.

The router's fixed histograms (``metrics.LATENCY_BUCKETS``) are for Prometheus; their
buckets are too coarse for a judge: a p99 that moves inside one bucket is invisible. A
``Sketch`` keeps a count per bucket ``(γ^(k-1), γ^k]`` with ``γ = (1+α)/(1-α)``, so any
quantile read back is within ``α`` = 1% of a value that was observed at that rank.

Recording is one ``log``, one ``ceil`` and one dict update (the hot path, compiled with
mypyc). The bucket count is bounded: values are clamped to ``[MIN_VALUE, MAX_VALUE]``,
which at 1% is at most ``KEYS`` (about 1,500) buckets, and a real distribution touches a
few hundred. Why not the ``ddsketch`` package: its ``add`` is several Python calls deep
(about 1 µs), where this is a fraction of that compiled, and it brings protobuf along.
Quantiles and samples are read from ``bins`` by ``analysis.distributions``.

    >>> s = Sketch()
    >>> for ms in range(1, 1001):
    ...     s.observe(ms / 1000)
    >>> sum(s.bins.values()), len(s.bins) < 400
    (1000, True)
    >>> all(abs(value_of(key_of(v)) - v) <= ALPHA * v for v in (0.0123, 0.2, 7.5))
    True
"""

from __future__ import annotations

import math
from typing import Final

ALPHA: Final = 0.01
GAMMA: Final = (1 + ALPHA) / (1 - ALPHA)
_LOG_GAMMA: Final = math.log(GAMMA)
MIN_VALUE: Final = 1e-6  # seconds (a microsecond); smaller values count as this
MAX_VALUE: Final = 1e5  # seconds (about a day); larger values count as this
MIN_KEY: Final = math.ceil(math.log(MIN_VALUE) / _LOG_GAMMA)
MAX_KEY: Final = math.ceil(math.log(MAX_VALUE) / _LOG_GAMMA)
KEYS: Final = MAX_KEY - MIN_KEY + 1


def key_of(value: float) -> int:
    """The bucket of ``value`` (clamped to the sketch's range; NaN counts as the least)."""
    if not value > MIN_VALUE:
        return MIN_KEY
    if value >= MAX_VALUE:
        return MAX_KEY
    return math.ceil(math.log(value) / _LOG_GAMMA)


def value_of(key: int, gamma: float = GAMMA) -> float:
    """The value a bucket stands for: within α of everything in it."""
    return 2 * gamma**key / (gamma + 1)


class Sketch:
    """Counts per bucket key; ``bins`` is what is copied, merged and sent between processes."""

    __slots__ = ("bins",)

    def __init__(self) -> None:
        self.bins: dict[int, int] = {}

    def observe(self, value: float) -> None:
        k = key_of(value)
        bins = self.bins
        bins[k] = bins.get(k, 0) + 1

    def add(self, other: Sketch) -> None:
        bins = self.bins
        for k, n in other.bins.items():
            bins[k] = bins.get(k, 0) + n

    def set_bins(self, pairs: list[list[int]]) -> None:
        """Replace the counts with ``[[key, count], ...]`` from another process; keys out
        of range and negative counts are dropped (the data crossed a process boundary)."""
        bins: dict[int, int] = {}
        for pair in pairs[:KEYS]:
            k, n = int(pair[0]), int(pair[1])
            if MIN_KEY <= k <= MAX_KEY and n > 0:
                bins[k] = n
        self.bins = bins
