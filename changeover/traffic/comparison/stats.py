"""What the comparison of one shadow revision found, kept bounded.

Counted per shadow revision (``ShadowStats``): pairs compared and matched, differences
by kind (``status``, ``body``, ``latency``: the shadow slower than the primary by more
than the threshold; one pair can differ in several kinds), pairs not compared and why,
the shadow's 5xx answers among the compared; the latencies of the last ``PAIRS`` pairs
(for percentiles, the latency delta and the ``mannWhitney`` judge); and the last
``SAMPLES`` differences with both bodies cut to ``SAMPLE_BYTES`` for a human to read.

Everything is plain JSON both ways (``to_json``/``from_json``): a router process sends
it to ``serve`` with its metrics, and workers' stats are summed (``add``).
"""

from __future__ import annotations

import collections
import math
from typing import Any

KINDS = ("status", "body", "latency")
# One compared pair: (wall time, primary latency, shadow latency, the kinds it differs in
# as bits of KINDS (0: matched), the shadow's status (0: no answer)).
Pair = tuple[float, float, float, int, int]
NOT_COMPARED = ("tooLarge", "dropped", "unavailable", "incomplete", "busy")
PAIRS = 1024
SAMPLES = 20
SAMPLE_BYTES = 2048


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (NaN for no values).

    >>> percentile([1.0, 2.0, 3.0, 4.0], 0.5), percentile([1.0, 2.0, 3.0, 4.0], 0.99)
    (2.0, 4.0)
    """
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


class ShadowStats:
    """One shadow revision's comparison results; ``primary`` is the revision it shadows
    (the last one seen)."""

    __slots__ = (
        "compared",
        "matched",
        "mismatched",
        "not_compared",
        "pairs",
        "primary",
        "samples",
        "shadow_errors",
    )

    def __init__(self) -> None:
        self.primary = 0
        self.compared = 0
        self.matched = 0
        self.shadow_errors = 0
        self.mismatched = dict.fromkeys(KINDS, 0)
        self.not_compared = dict.fromkeys(NOT_COMPARED, 0)
        self.pairs: collections.deque[Pair] = collections.deque(maxlen=PAIRS)
        self.samples: collections.deque[dict[str, Any]] = collections.deque(maxlen=SAMPLES)

    def record(
        self,
        *,
        t: float,
        primary: int,
        kinds: list[str],
        primary_latency: float,
        shadow_latency: float,
        shadow_status: int,
        sample: dict[str, Any] | None,
    ) -> None:
        self.primary = primary
        self.compared += 1
        if not kinds:
            self.matched += 1
        for kind in kinds:
            self.mismatched[kind] += 1
        if shadow_status >= 500 or shadow_status == 0:
            self.shadow_errors += 1
        mask = sum(1 << KINDS.index(kind) for kind in kinds)
        self.pairs.append((t, primary_latency, shadow_latency, mask, shadow_status))
        if sample is not None:
            self.samples.append(sample)

    def skip(self, why: str) -> None:
        self.not_compared[why] += 1

    def add(self, other: ShadowStats) -> None:
        """Sum another worker's stats into these (pairs and samples merged by time)."""
        self.primary = other.primary or self.primary
        self.compared += other.compared
        self.matched += other.matched
        self.shadow_errors += other.shadow_errors
        for kind in KINDS:
            self.mismatched[kind] += other.mismatched[kind]
        for why in NOT_COMPARED:
            self.not_compared[why] += other.not_compared[why]
        pairs = sorted([*self.pairs, *other.pairs])
        self.pairs = collections.deque(pairs[-PAIRS:], maxlen=PAIRS)
        samples = sorted([*self.samples, *other.samples], key=lambda s: float(s.get("at", 0)))
        self.samples = collections.deque(samples[-SAMPLES:], maxlen=SAMPLES)

    def summary(self) -> dict[str, Any]:
        """What ``status -o json`` shows: counts, match rate, latency delta p50/p99."""
        deltas = [s - p for _, p, s, _, _ in self.pairs]
        shadow = [s for _, _, s, _, _ in self.pairs]
        return {
            "primaryRevision": self.primary,
            "compared": self.compared,
            "matched": self.matched,
            "mismatched": dict(self.mismatched),
            "matchRate": _finite(self.matched / self.compared if self.compared else math.nan),
            "notCompared": dict(self.not_compared),
            "shadowErrors": self.shadow_errors,
            "latencyDelta": {
                "p50": _finite(percentile(deltas, 0.5)),
                "p99": _finite(percentile(deltas, 0.99)),
            },
            "shadowLatency": {
                "p50": _finite(percentile(shadow, 0.5)),
                "p99": _finite(percentile(shadow, 0.99)),
            },
        }

    def to_json(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "pairs": [list(p) for p in self.pairs],
            "samples": list(self.samples),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ShadowStats:
        """Back from ``to_json`` (a router process's answer: checked, never trusted)."""
        out = cls()
        out.primary = int(data.get("primaryRevision") or 0)
        out.compared = int(data.get("compared") or 0)
        out.matched = int(data.get("matched") or 0)
        out.shadow_errors = int(data.get("shadowErrors") or 0)
        mismatched = data.get("mismatched") or {}
        for kind in KINDS:
            out.mismatched[kind] = int(mismatched.get(kind) or 0)
        skipped = data.get("notCompared") or {}
        for why in NOT_COMPARED:
            out.not_compared[why] = int(skipped.get(why) or 0)
        for p in list(data.get("pairs") or [])[-PAIRS:]:
            try:
                out.pairs.append((float(p[0]), float(p[1]), float(p[2]), int(p[3]), int(p[4])))
            except (TypeError, ValueError, IndexError):
                continue  # a malformed pair is left out, not the whole answer
        for s in list(data.get("samples") or [])[-SAMPLES:]:
            if isinstance(s, dict):
                out.samples.append(s)
        return out


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 6)


def truncate(body: str, limit: int = SAMPLE_BYTES) -> str:
    """``body`` cut to ``limit`` characters, saying how much was left out."""
    if len(body) <= limit:
        return body
    return body[:limit] + f"\n… ({len(body) - limit} more characters)"
