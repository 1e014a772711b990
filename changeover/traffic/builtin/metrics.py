"""In-memory per-revision metrics of the builtin router, rendered as Prometheus text.

The proxy (``builtin.proxy``, ``builtin.mirror``) bumps plain integer attributes on the hot
path; nothing here allocates per request. ``metrics_text.render(registry)`` serves
``/metrics`` for the HTTP API and ``Registry.snapshot()`` feeds the CLI and the analysis
providers.

One ``Registry`` is shared by every router of a ``changeover serve`` process; each router
owns one ``RolloutMetrics`` inside it (``registry.rollout("checkout")``).

    >>> registry = Registry()
    >>> rev = registry.rollout("web").revision(2)
    >>> rev.record(200, 0.012)
    >>> registry.snapshot()["web"]["revisions"]["2"]["requests"]["2xx"]
    1
"""

from __future__ import annotations

import bisect
from typing import Any

from changeover.traffic.builtin import sketch as sketch_mod

# Seconds. Fixed so that histograms of different revisions (and processes) can be compared
# and summed; the long tail is for LLM completions that stream for tens of seconds.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)

# Output tokens per streamed response.
TOKEN_BUCKETS: tuple[float, ...] = (
    1.0,
    2.0,
    5.0,
    10.0,
    20.0,
    50.0,
    100.0,
    200.0,
    500.0,
    1000.0,
    2000.0,
    5000.0,
    10000.0,
    50000.0,
)
# Seconds an upgraded (WebSocket) connection stayed open: from a page view to a long session.
CONNECTION_BUCKETS: tuple[float, ...] = (1.0, 5.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0)

CODE_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")


class Histogram:
    """Fixed-bucket histogram; ``counts[i]`` is per bucket (not cumulative) until rendering.

    With ``sketched``, values also go into a ``sketch.Sketch`` (1% relative error), which
    the analysis reads for precise quantiles and per-request samples; Prometheus gets the
    fixed buckets only."""

    __slots__ = ("bounds", "count", "counts", "sketch", "sum")

    def __init__(
        self, bounds: tuple[float, ...] = LATENCY_BUCKETS, *, sketched: bool = False
    ) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last slot is +Inf
        self.sum = 0.0
        self.count = 0
        self.sketch: sketch_mod.Sketch | None = sketch_mod.Sketch() if sketched else None

    def observe(self, value: float) -> None:
        # bisect_left: a value equal to a bound belongs to that bucket (Prometheus ``le``).
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1
        s = self.sketch
        if s is not None:
            s.observe(value)

    def add(self, other: Histogram) -> None:
        """Sum another histogram with the same bounds into this one (worker merging)."""
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        self.sum += other.sum
        self.count += other.count
        if self.sketch is not None and other.sketch is not None:
            self.sketch.add(other.sketch)

    def cumulative(self) -> list[int]:
        out: list[int] = []
        total = 0
        for c in self.counts:
            total += c
            out.append(total)
        return out

    def snapshot(self, *, sketch: bool = False) -> dict[str, Any]:
        """Cumulative buckets, sum and count; with ``sketch``, the sketch's bins too."""
        out: dict[str, Any] = {
            "buckets": dict(zip([*map(str, self.bounds), "+Inf"], self.cumulative(), strict=True)),
            "sum": self.sum,
            "count": self.count,
        }
        if sketch and self.sketch is not None:
            out["sketch"] = {"gamma": sketch_mod.GAMMA, "bins": dict(self.sketch.bins)}
        return out


# Distinct variant names counted per (revision, flag); later ones count under OTHER. Flags
# per revision past MAX_FLAGS are not broken down. Bounds the series a hostile or buggy
# flag spec can make.
MAX_VARIANTS = 16
MAX_FLAGS = 32
OTHER = "other"


class VariantMetrics:
    """One variant of one flag within one revision: requests by status class (a stream
    the upstream cut ends as a 502, so it counts as a 5xx) and latency."""

    __slots__ = ("codes", "latency")

    def __init__(self) -> None:
        self.codes = [0] * 6
        self.latency = Histogram(sketched=True)

    def record(self, status: int, seconds: float) -> None:
        self.codes[status // 100 if 100 <= status < 600 else 5] += 1
        self.latency.observe(seconds)

    def add(self, other: VariantMetrics) -> None:
        self.codes = [a + b for a, b in zip(self.codes, other.codes, strict=True)]
        self.latency.add(other.latency)

    def snapshot(self, *, sketches: bool = False) -> dict[str, Any]:
        return {
            "requests": dict(zip(CODE_CLASSES, self.codes[1:], strict=True)),
            "latency": self.latency.snapshot(sketch=sketches),
        }


def variant_metrics(
    table: dict[str, dict[str, VariantMetrics]], flag: str, variant: str
) -> VariantMetrics | None:
    """The counters of ``variant`` of ``flag`` in ``table`` (a revision's ``variants``),
    made on first use within the bounds; None past ``MAX_FLAGS``."""
    per_flag = table.get(flag)
    if per_flag is None:
        if len(table) >= MAX_FLAGS:
            return None
        per_flag = table[flag] = {}
    found = per_flag.get(variant)
    if found is None:
        if len(per_flag) >= MAX_VARIANTS - 1 and variant != OTHER:
            variant = OTHER
            found = per_flag.get(OTHER)
        if found is None:
            found = per_flag[variant] = VariantMetrics()
    return found


class RevisionMetrics:
    """Counters for one revision of one rollout. Attributes are bumped directly by the proxy."""

    __slots__ = (
        "bad_responses",
        "client_aborts",
        "codes",
        "connect_errors",
        "in_flight",
        "itl",
        "latency",
        "mirror_codes",
        "mirror_dropped",
        "mirror_failed",
        "mirror_latency",
        "mirror_sent",
        "no_backend",
        "output_tokens",
        "retries",
        "shadow",
        "stream_seconds",
        "streams",
        "streams_cut",
        "timeouts",
        "tokens_per_response",
        "ttfb",
        "ttft",
        "upgraded",
        "upgraded_drained",
        "upgraded_idle",
        "upgraded_open",
        "upgraded_seconds",
        "variants",
    )

    def __init__(self) -> None:
        # Indexed by ``status // 100`` (index 0 unused), so recording is one list store.
        self.codes = [0] * 6
        self.in_flight = 0
        self.latency = Histogram(sketched=True)
        self.ttfb = Histogram()
        self.connect_errors = 0  # connection refused / connect timeout (each attempt)
        self.retries = 0  # a request moved to another endpoint or connection
        self.timeouts = 0  # answered 504
        self.bad_responses = 0  # answered 502 (malformed or reset upstream response)
        self.no_backend = 0  # answered 503: the revision had no endpoint
        self.client_aborts = 0  # the client went away before the response ended
        # The mirror (shadow) side: copies sent, dropped under pressure, failed; and the
        # shadow's own answers, kept apart so they never count as served traffic.
        self.mirror_sent = 0
        self.mirror_dropped = 0
        self.mirror_failed = 0
        self.mirror_codes = [0] * 6
        self.mirror_latency = Histogram()
        # As a shadow: its answers compared with the primary's (``comparison.stats.
        # ShadowStats``; None until a comparison is asked for).
        self.shadow: Any = None
        # Streamed responses (``builtin.token_streams``): token timings and counts.
        self.ttft = Histogram(sketched=True)
        self.itl = Histogram(sketched=True)
        self.tokens_per_response = Histogram(TOKEN_BUCKETS)
        self.streams = 0  # streamed responses that ended
        self.streams_cut = 0  # ... of which the upstream cut before the terminating event
        self.output_tokens = 0
        self.stream_seconds = 0.0  # summed request-to-end time of those streams
        # Upgraded (WebSocket) connections: opened in all, open now, closed by the router
        # at the end of a drain, and how long each stayed open.
        self.upgraded = 0
        self.upgraded_open = 0
        self.upgraded_drained = 0
        self.upgraded_idle = 0  # closed by the router after its idle timeout
        self.upgraded_seconds = Histogram(CONNECTION_BUCKETS)
        # Per flag the router evaluates, per variant (``variant_metrics``): flag → variant →.
        self.variants: dict[str, dict[str, VariantMetrics]] = {}

    def add(self, other: RevisionMetrics) -> None:
        """Sum another worker's counters for the same revision into these."""
        for name in PLAIN_COUNTERS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.codes = [a + b for a, b in zip(self.codes, other.codes, strict=True)]
        self.mirror_codes = [
            a + b for a, b in zip(self.mirror_codes, other.mirror_codes, strict=True)
        ]
        self.latency.add(other.latency)
        self.ttfb.add(other.ttfb)
        self.mirror_latency.add(other.mirror_latency)
        if other.shadow is not None:
            if self.shadow is None:
                self.shadow = type(other.shadow)()
            self.shadow.add(other.shadow)
        self.ttft.add(other.ttft)
        self.itl.add(other.itl)
        self.tokens_per_response.add(other.tokens_per_response)
        self.stream_seconds += other.stream_seconds
        self.upgraded_seconds.add(other.upgraded_seconds)
        for flag, per_flag in other.variants.items():
            for variant, m in per_flag.items():
                mine = variant_metrics(self.variants, flag, variant)
                if mine is not None:
                    mine.add(m)

    def record(self, status: int, seconds: float) -> None:
        self.codes[status // 100 if 100 <= status < 600 else 5] += 1
        self.latency.observe(seconds)

    def snapshot(self, *, sketches: bool = False) -> dict[str, Any]:
        """Everything as plain data; ``sketches`` adds the 1% sketches' bins (the analysis
        sampler wants them, a status view does not: a few hundred numbers each)."""
        return {
            "requests": dict(zip(CODE_CLASSES, self.codes[1:], strict=True)),
            "inFlight": self.in_flight,
            "latency": self.latency.snapshot(sketch=sketches),
            "ttfb": self.ttfb.snapshot(),
            "connectErrors": self.connect_errors,
            "retries": self.retries,
            "timeouts": self.timeouts,
            "badResponses": self.bad_responses,
            "noBackend": self.no_backend,
            "clientAborts": self.client_aborts,
            "mirror": {
                "sent": self.mirror_sent,
                "dropped": self.mirror_dropped,
                "failed": self.mirror_failed,
                "responses": dict(zip(CODE_CLASSES, self.mirror_codes[1:], strict=True)),
                "latency": self.mirror_latency.snapshot(),
            },
            **({"shadow": self.shadow.summary()} if self.shadow is not None else {}),
            "streams": {
                "count": self.streams,
                "cut": self.streams_cut,
                "outputTokens": self.output_tokens,
                "seconds": self.stream_seconds,
                "ttft": self.ttft.snapshot(sketch=sketches),
                "itl": self.itl.snapshot(sketch=sketches),
                "tokensPerResponse": self.tokens_per_response.snapshot(),
            },
            "upgraded": {
                "opened": self.upgraded,
                "open": self.upgraded_open,
                "drained": self.upgraded_drained,
                "idleClosed": self.upgraded_idle,
                "duration": self.upgraded_seconds.snapshot(),
            },
            **(
                {
                    "variants": {
                        flag: {v: m.snapshot(sketches=sketches) for v, m in sorted(vs.items())}
                        for flag, vs in sorted(self.variants.items())
                    }
                }
                if self.variants
                else {}
            ),
        }


# The per-revision counters that are plain integers (the router process sends these to serve).
PLAIN_COUNTERS = (
    "in_flight",
    "connect_errors",
    "retries",
    "timeouts",
    "bad_responses",
    "no_backend",
    "client_aborts",
    "mirror_sent",
    "mirror_dropped",
    "mirror_failed",
    "streams",
    "streams_cut",
    "output_tokens",
    "upgraded",
    "upgraded_open",
    "upgraded_drained",
    "upgraded_idle",
)


class RolloutMetrics:
    """The metrics of one rollout's router: per revision, plus router-wide counters."""

    __slots__ = ("bad_requests", "maintenance", "name", "revisions", "unrouted")

    def __init__(self, name: str) -> None:
        self.name = name
        self.revisions: dict[int, RevisionMetrics] = {}
        self.bad_requests = 0  # malformed requests answered 400 (no revision to blame)
        self.maintenance = 0  # requests answered by the maintenance page
        self.unrouted = 0  # answered 503 because no weights were set yet

    def revision(self, revision: int) -> RevisionMetrics:
        found = self.revisions.get(revision)
        if found is None:
            found = self.revisions[revision] = RevisionMetrics()
        return found

    def snapshot(self, *, sketches: bool = False) -> dict[str, Any]:
        return {
            "revisions": {
                str(r): m.snapshot(sketches=sketches) for r, m in sorted(self.revisions.items())
            },
            "badRequests": self.bad_requests,
            "maintenanceResponses": self.maintenance,
            "unrouted": self.unrouted,
        }


class Registry:
    """Every rollout's router metrics in one process; what ``/metrics`` renders
    (``metrics_text.render``)."""

    def __init__(self) -> None:
        self.rollouts: dict[str, RolloutMetrics] = {}

    def rollout(self, name: str) -> RolloutMetrics:
        found = self.rollouts.get(name)
        if found is None:
            found = self.rollouts[name] = RolloutMetrics(name)
        return found

    def snapshot(self, *, sketches: bool = True) -> dict[str, Any]:
        """Every rollout's ``RolloutMetrics.snapshot``; with the sketches' bins unless told
        otherwise, since this is what the analysis sampler reads."""
        return {name: m.snapshot(sketches=sketches) for name, m in sorted(self.rollouts.items())}
