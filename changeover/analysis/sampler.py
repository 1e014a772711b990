"""The builtin router's counters, sampled once a second into a ring buffer per revision.

The router keeps cumulative counters only (requests by status class, latency and
time-to-first-byte histograms). Analysis needs them *over a window* ("the canary's error
rate in the last 60 s") and *per second* (the Mann-Whitney judge compares the canary's
per-second samples with the stable's). The controller's analysis runner calls
``Sampler.sample(now)`` about once a second; the ``builtin`` provider reads ``window`` and
judges read ``series`` through ``MeasureContext``.

Percentiles come from histogram deltas the way Prometheus' ``histogram_quantile`` computes
them: find the bucket holding the rank, interpolate linearly inside it::

    >>> bounds = (0.1, 0.5, 1.0)
    >>> quantile(0.5, bounds, [2, 2, 0, 0])   # ranks 1-2 in (0, 0.1], 3-4 in (0.1, 0.5]
    0.1
    >>> round(quantile(0.75, bounds, [2, 2, 0, 0]), 6)
    0.3
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from changeover.analysis import distributions

CAPACITY_SECONDS = 900  # 15 minutes of one-second samples per revision
QUANTILES = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99}
SERIES = (
    "request-rate",
    "error-rate",
    "success-rate",
    "latency-mean",
    *(f"latency-{q}" for q in QUANTILES),
    "ttfb-mean",
    *(f"ttfb-{q}" for q in QUANTILES),
    # Streamed responses (text/event-stream, JSON lines): ``traffic.builtin.token_streams``.
    "streams",
    "stream-cut-rate",
    "tokens-per-second",
    "tokens-per-response",
    "ttft-mean",
    *(f"ttft-{q}" for q in QUANTILES),
    "itl-mean",
    *(f"itl-{q}" for q in QUANTILES),
)
STREAM_SERIES = frozenset(SERIES[SERIES.index("streams") :])


class Snapshotter(Protocol):
    """``traffic.builtin.Registry``: ``{rollout: {"revisions": {"2": {...}}}}``."""

    def snapshot(self) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class Counters:
    """One revision's cumulative counters at time ``t``."""

    t: float
    codes: tuple[int, ...]  # 1xx..5xx
    bounds: tuple[float, ...]  # histogram upper bounds (without +Inf)
    latency: tuple[int, ...]  # per bucket, not cumulative, +Inf last
    latency_sum: float
    ttfb: tuple[int, ...]
    ttfb_sum: float
    streams: StreamCounters

    @property
    def requests(self) -> int:
        return sum(self.codes)


@dataclass(frozen=True, slots=True)
class StreamCounters:
    """One revision's cumulative token-stream counters (or their change over a window)."""

    count: int = 0
    cut: int = 0
    output_tokens: int = 0
    seconds: float = 0.0
    ttft: tuple[int, ...] = ()  # per bucket of the latency bounds, +Inf last
    ttft_sum: float = 0.0
    itl: tuple[int, ...] = ()
    itl_sum: float = 0.0

    def minus(self, older: StreamCounters | None) -> StreamCounters:
        if older is None:
            return self
        return StreamCounters(
            count=max(0, self.count - older.count),
            cut=max(0, self.cut - older.cut),
            output_tokens=max(0, self.output_tokens - older.output_tokens),
            seconds=max(0.0, self.seconds - older.seconds),
            ttft=_minus(self.ttft, older.ttft),
            ttft_sum=self.ttft_sum - older.ttft_sum,
            itl=_minus(self.itl, older.itl),
            itl_sum=self.itl_sum - older.itl_sum,
        )

    def value(self, metric: str, bounds: tuple[float, ...]) -> float:
        """A stream series' value: NaN where no stream ended (or no token came)."""
        if metric == "streams":
            return float(self.count)
        if self.count == 0 and not metric.startswith(("ttft", "itl")):
            return math.nan
        if metric == "stream-cut-rate":
            return self.cut / self.count
        if metric == "tokens-per-second":
            return self.output_tokens / self.seconds if self.seconds > 0 else math.nan
        if metric == "tokens-per-response":
            return self.output_tokens / self.count
        kind, _, stat = metric.partition("-")
        counts, total = (self.ttft, self.ttft_sum) if kind == "ttft" else (self.itl, self.itl_sum)
        observed = sum(counts)
        if observed == 0:
            return math.nan
        if stat == "mean":
            return total / observed
        return quantile(QUANTILES[stat], bounds, list(counts))


def _minus(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    if len(a) != len(b):
        return a
    return tuple(max(0, x - y) for x, y in zip(a, b, strict=True))


@dataclass(frozen=True, kw_only=True)
class WindowStats:
    """A revision's traffic between two counter readings."""

    seconds: float
    requests: int
    codes: tuple[int, ...]
    bounds: tuple[float, ...]
    latency: tuple[int, ...]
    latency_sum: float
    ttfb: tuple[int, ...]
    ttfb_sum: float
    streams: StreamCounters = StreamCounters()
    # Per-request distributions in the window (``analysis.distributions``): name → (bins, γ)
    sketches: Mapping[str, tuple[distributions.Bins, float]] = field(default_factory=dict)

    @property
    def errors(self) -> int:
        return self.codes[4]

    def value(self, metric: str) -> float:
        """``error-rate``, ``latency-p99``, ``ttft-p95``...: NaN where there were no
        requests (no streams, for the stream series)."""
        kind, _, stat = metric.partition("-")
        sketched = self.sketches.get(kind) if stat in QUANTILES else None
        if sketched is not None and sketched[0]:
            # 1% relative error instead of an interpolation inside a coarse bucket.
            return distributions.quantile(sketched[0], QUANTILES[stat], sketched[1])
        if metric in STREAM_SERIES:
            return self.streams.value(metric, self.bounds)
        n = self.requests
        if metric == "requests":
            return float(n)
        if metric == "request-rate":
            return n / self.seconds if self.seconds > 0 else math.nan
        if n == 0:
            return math.nan
        if metric == "error-rate":
            return self.errors / n
        if metric == "success-rate":
            return (n - self.errors) / n
        kind, _, stat = metric.partition("-")
        counts, total = (
            (self.latency, self.latency_sum)
            if kind == "latency"
            else (
                self.ttfb,
                self.ttfb_sum,
            )
        )
        if kind not in ("latency", "ttfb"):
            raise KeyError(metric)
        observed = sum(counts)
        if observed == 0:
            return math.nan
        if stat == "mean":
            return total / observed
        return quantile(QUANTILES[stat], self.bounds, list(counts))

    def summary(self) -> dict[str, float]:
        """Every number at once: what ``provider: {builtin: {}}`` returns as ``result``."""
        out = {
            "requests": float(self.requests),
            "requestRate": self.value("request-rate"),
            "errorRate": self.value("error-rate"),
            "successRate": self.value("success-rate"),
            "latencyMean": self.value("latency-mean"),
            "ttfbMean": self.value("ttfb-mean"),
            "window": self.seconds,
        }
        for name in QUANTILES:
            out[name] = self.value(f"latency-{name}")
            out[f"ttfb{name.upper()}"] = self.value(f"ttfb-{name}")
        if self.streams.count:
            out["streams"] = float(self.streams.count)
            out["streamCutRate"] = self.value("stream-cut-rate")
            out["tokensPerSecond"] = self.value("tokens-per-second")
            out["tokensPerResponse"] = self.value("tokens-per-response")
            out["ttftMean"] = self.value("ttft-mean")
            out["itlMean"] = self.value("itl-mean")
            for name in QUANTILES:
                out[f"ttft{name.upper()}"] = self.value(f"ttft-{name}")
                out[f"itl{name.upper()}"] = self.value(f"itl-{name}")
        return out


def quantile(q: float, bounds: tuple[float, ...], counts: list[int]) -> float:
    """Prometheus' histogram_quantile over per-bucket ``counts`` (+Inf bucket last)."""
    total = sum(counts)
    if total == 0:
        return math.nan
    rank = q * total
    cumulative = 0
    for i, count in enumerate(counts):
        if cumulative + count >= rank and count > 0:
            if i >= len(bounds):  # the +Inf bucket: the highest finite bound, as Prometheus
                return bounds[-1]
            lower = bounds[i - 1] if i > 0 else 0.0
            return lower + (bounds[i] - lower) * (rank - cumulative) / count
        cumulative += count
    return bounds[-1]


def _counters(t: float, snap: Mapping[str, Any]) -> Counters:
    def buckets(hist: Mapping[str, Any]) -> tuple[tuple[float, ...], tuple[int, ...]]:
        items = list(hist["buckets"].items())  # cumulative, "+Inf" last
        bounds = tuple(float(k) for k, _ in items[:-1])
        cumulative = [int(v) for _, v in items]
        per = tuple(c - (cumulative[i - 1] if i else 0) for i, c in enumerate(cumulative))
        return bounds, per

    bounds, latency = buckets(snap["latency"])
    # A variant's snapshot (``variants`` of a revision's) has no time to first byte.
    _, ttfb = buckets(snap["ttfb"]) if "ttfb" in snap else ((), (0,) * len(latency))
    codes = tuple(int(snap["requests"][c]) for c in ("1xx", "2xx", "3xx", "4xx", "5xx"))
    streamed = snap.get("streams")
    streams = _EMPTY_STREAMS
    if streamed:  # only the builtin router counts streams
        streams = StreamCounters(
            count=int(streamed["count"]),
            cut=int(streamed["cut"]),
            output_tokens=int(streamed["outputTokens"]),
            seconds=float(streamed["seconds"]),
            ttft=buckets(streamed["ttft"])[1],
            ttft_sum=float(streamed["ttft"]["sum"]),
            itl=buckets(streamed["itl"])[1],
            itl_sum=float(streamed["itl"]["sum"]),
        )
    return Counters(
        streams=streams,
        t=t,
        codes=codes,
        bounds=bounds,
        latency=latency,
        latency_sum=float(snap["latency"]["sum"]),
        ttfb=ttfb,
        ttfb_sum=float(snap["ttfb"]["sum"]) if "ttfb" in snap else 0.0,
    )


def _delta(newer: Counters, older: Counters | None, seconds: float) -> WindowStats:
    def minus(a: tuple[int, ...], b: tuple[int, ...] | None) -> tuple[int, ...]:
        return a if b is None else tuple(max(0, x - y) for x, y in zip(a, b, strict=True))

    return WindowStats(
        streams=newer.streams.minus(older.streams if older else None),
        seconds=seconds,
        requests=sum(minus(newer.codes, older.codes if older else None)),
        codes=minus(newer.codes, older.codes if older else None),
        bounds=newer.bounds,
        latency=minus(newer.latency, older.latency if older else None),
        latency_sum=newer.latency_sum - (older.latency_sum if older else 0.0),
        ttfb=minus(newer.ttfb, older.ttfb if older else None),
        ttfb_sum=newer.ttfb_sum - (older.ttfb_sum if older else 0.0),
    )


# A flag the router evaluates and one of its variants: (flag, variant).
Variant = tuple[str, str]
# (rollout, revision), or (rollout, revision, flag, variant) for one variant's traffic.
Key = tuple[str, int] | tuple[str, int, str, str]


class Sampler:
    """Ring buffers of ``Counters`` per (rollout, revision), and per variant of a flag the
    router evaluates within a revision, fed by ``sample``."""

    def __init__(self, registry: Snapshotter, *, capacity: int = CAPACITY_SECONDS) -> None:
        self._registry = registry
        self._capacity = capacity
        self._rings: dict[Key, deque[Counters]] = {}
        self._sketches: dict[tuple[Key, str], distributions.SketchRing] = {}
        self.started_at: float | None = None
        self.last_at: float | None = None

    def sample(self, now: float) -> None:
        """Read every revision's counters once (the runner calls this about every second)."""
        if self.started_at is None:
            self.started_at = now
        previous, self.last_at = self.last_at, now
        for rollout, data in self._registry.snapshot().items():
            for rev, snap in data.get("revisions", {}).items():
                self._sample_one((rollout, int(rev)), now, previous, snap)
                for flag, per_flag in (snap.get("variants") or {}).items():
                    for variant, vsnap in per_flag.items():
                        self._sample_one((rollout, int(rev), flag, variant), now, previous, vsnap)

    def _sample_one(
        self, key: Key, now: float, previous: float | None, snap: Mapping[str, Any]
    ) -> None:
        ring = self._rings.get(key)
        counters = _counters(now, snap)
        if ring is None:
            ring = self._rings[key] = deque(maxlen=self._capacity)
            if previous is not None:
                # New since the last sample: it had counted nothing then.
                ring.append(_zero(previous, counters))
        ring.append(counters)
        for name in distributions.DISTRIBUTIONS:
            found = distributions.bins_of(snap, name)
            if found is None:
                continue
            sketches = self._sketches.get((key, name))
            if sketches is None:
                sketches = self._sketches[key, name] = distributions.SketchRing(self._capacity)
            sketches.sample(now, *found)

    def _live_snapshot(self, key: Key) -> Mapping[str, Any] | None:
        rollout, revision = key[0], key[1]
        # The builtin Registry lets us snapshot one revision, not every rollout's.
        rollouts = getattr(self._registry, "rollouts", None)
        if isinstance(rollouts, dict):
            found = rollouts.get(rollout)
            metrics = found.revisions.get(revision) if found is not None else None
            if metrics is not None and len(key) == 4:
                metrics = metrics.variants.get(key[2], {}).get(key[3])
            return metrics.snapshot(sketches=True) if metrics is not None else None
        snap = self._registry.snapshot().get(rollout, {}).get("revisions", {}).get(str(revision))
        if isinstance(snap, Mapping) and len(key) == 4:
            snap = (snap.get("variants") or {}).get(key[2], {}).get(key[3])
        return snap if isinstance(snap, Mapping) else None

    def _window_sketches(
        self, key: Key, after: float, live: Mapping[str, Any]
    ) -> dict[str, tuple[distributions.Bins, float]]:
        out = {}
        for name in distributions.DISTRIBUTIONS:
            ring = self._sketches.get((key, name))
            now = distributions.bins_of(live, name)
            if now is None:
                continue
            bins = ring.since(after, now[0]) if ring is not None else now[0]
            out[name] = (bins, now[1])
        return out

    def window(
        self,
        rollout: str,
        revision: int,
        seconds: float,
        now: float,
        *,
        variant: Variant | None = None,
    ) -> WindowStats:
        """Traffic of ``revision`` in the last ``seconds`` (fewer if sampling began later:
        ``WindowStats.seconds`` says how many); with ``variant``, only the requests the
        router gave that (flag, variant)."""
        key: Key = (rollout, revision) if variant is None else (rollout, revision, *variant)
        snap = self._live_snapshot(key)
        start = now - seconds
        if snap is None:
            return _delta(_EMPTY, None, 0.0)
        latest = _counters(now, snap)
        ring = self._rings.get(key, deque())
        older = None
        for counters in reversed(ring):
            if counters.t <= start:
                older = counters
                break
        if older is None and ring and len(ring) == ring.maxlen:
            older = ring[0]  # the window is longer than the buffer: the longest we have
        if older is not None:
            stats = _delta(latest, older, now - older.t)
        else:
            began = self.started_at if self.started_at is not None else now
            # Nothing sampled before the window: everything counted happened within it (the
            # registry lives as long as this process, and so does the sampler).
            stats = _delta(latest, None, max(0.0, min(seconds, now - began)))
        after = older.t if older is not None else -math.inf
        return replace(stats, sketches=self._window_sketches(key, after, snap))

    def series(self, rollout: str, revision: int, metric: str, seconds: float) -> list[float]:
        """One value of ``metric`` per sampled second over the last ``seconds``, oldest
        first; NaN for a second without requests (for ratios and latencies)."""
        if metric in distributions.DISTRIBUTIONS:
            return self.samples(rollout, revision, metric, seconds)
        if metric not in SERIES:
            known = ", ".join((*SERIES, *distributions.DISTRIBUTIONS))
            raise KeyError(f"unknown series {metric!r}; expected one of {known}")
        ring = list(self._rings.get((rollout, revision), ()))
        if len(ring) < 2:
            return []
        end = ring[-1].t
        picked = [c for c in ring if c.t >= end - seconds - 1e-9]
        out: list[float] = []
        for older, newer in itertools.pairwise(picked):
            out.append(_delta(newer, older, newer.t - older.t).value(metric))
        return out

    def samples(self, rollout: str, revision: int, name: str, seconds: float) -> list[float]:
        """Per-request values of distribution ``name`` (``latency``, ``ttft``, ``itl``) over
        the last ``seconds`` sampled, at most ``distributions.MAX_SAMPLES`` of them."""
        ring = self._sketches.get(((rollout, revision), name))
        if ring is None or not ring.ring:
            return []
        end = ring.ring[-1][0]
        return distributions.samples(ring.since(end - seconds - 1e-9), ring.gamma)

    def shadows(self, rollout: str) -> dict[int, Any]:
        """The rollout's shadow comparisons, live: shadow revision → its ``ShadowStats``
        (``analysis.shadow_comparisons.ShadowData``); empty without the builtin router's
        registry."""
        rollouts = getattr(self._registry, "rollouts", None)
        found = rollouts.get(rollout) if isinstance(rollouts, dict) else None
        if found is None:
            return {}
        return {
            rev: m.shadow
            for rev, m in found.revisions.items()
            if getattr(m, "shadow", None) is not None
        }

    def forget(self, rollout: str) -> None:
        for key in [k for k in self._rings if k[0] == rollout]:
            del self._rings[key]
        for skey in [k for k in self._sketches if k[0][0] == rollout]:
            del self._sketches[skey]


def _zero(t: float, like: Counters) -> Counters:
    return Counters(
        streams=_EMPTY_STREAMS,
        t=t,
        codes=(0,) * len(like.codes),
        bounds=like.bounds,
        latency=(0,) * len(like.latency),
        latency_sum=0.0,
        ttfb=(0,) * len(like.ttfb),
        ttfb_sum=0.0,
    )


_EMPTY_STREAMS = StreamCounters()
_EMPTY = Counters(
    streams=_EMPTY_STREAMS,
    t=0.0,
    codes=(0, 0, 0, 0, 0),
    bounds=(1.0,),
    latency=(0, 0),
    latency_sum=0.0,
    ttfb=(0, 0),
    ttfb_sum=0.0,
)
