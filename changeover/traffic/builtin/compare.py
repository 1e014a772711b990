"""Pairing the primary's response with the shadow's, and comparing them off the hot path.

For a sampled share of mirrored requests (``RoutingTable`` mirror routes with a
``compare`` block) the exchange asks ``Comparer.pair`` for a ``Pair``: the exchange feeds
it the primary's response (``primary_head``, ``primary_body``, ``primary_end``) and the
mirror copy the shadow's (``shadow_head``, ``shadow_body``, ``shadow_end``). Each side's
body is captured up to ``maxBodyBytes`` (beyond it the pair is counted ``tooLarge`` and
nothing more is kept) and up to ``BUDGET_BYTES`` for all pairs at once (``busy``).

Once both sides have ended the pair is queued, and the queue is worked off one pair per
event-loop pass (``call_soon``), so a comparison never runs inside the callbacks that
forward real traffic and real I/O is served between two comparisons. At most ``PENDING``
pairs wait for their second side and ``QUEUE`` for comparison; past either, new pairs are
not made (counted ``busy``). The router's sweep ends pairs whose other side never came
(``incomplete``). This module is plain Python (not compiled with the hot path): all it
adds to a proxied request is a few method calls on sampled requests.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import re
import time
from collections.abc import Callable
from typing import Any

from changeover.spec import models
from changeover.traffic.builtin import metrics
from changeover.traffic.comparison import comparators, stats, streams

log = logging.getLogger(__name__)

PENDING = 256  # pairs waiting for their second side
QUEUE = 256  # pairs waiting to be compared
BUDGET_BYTES = 64 * 1024 * 1024  # captured body bytes held by all pairs at once
PAIR_TIMEOUT = 300.0  # seconds a pair waits for its second side (streams can be long)
_CONTENT_TYPE = re.compile(rb"\r\ncontent-type:[ \t]*([^\r\n]*)", re.IGNORECASE)


class RouteCompare:
    """A mirror route's ``compare`` block, ready for the router: settings, the loaded
    comparator, and the sampling counter (a share of the mirrored requests)."""

    __slots__ = (
        "comparator",
        "counter",
        "latency_threshold",
        "max_bytes",
        "percentage",
        "settings",
    )

    def __init__(self, spec: models.MirrorCompare) -> None:
        self.percentage = spec.percentage
        self.settings = comparators.Settings(
            comparator=spec.comparator,
            ignore=tuple(spec.ignore),
            tolerance=spec.tolerance,
            threshold=spec.threshold,
        )
        self.comparator = comparators.load(spec.comparator)  # ComparatorError if it cannot
        self.latency_threshold = spec.latency_threshold
        self.max_bytes = spec.max_body_bytes
        self.counter = 0

    def sample(self) -> bool:
        """Every n-th mirrored request as ``MirrorRoute.sample`` does (exact shares)."""
        n = self.counter
        self.counter = (n + 1) % 100
        return (n + 1) * self.percentage // 100 != n * self.percentage // 100


class _Side:
    __slots__ = ("chunked", "done", "head", "latency", "nbytes", "parts", "status")

    def __init__(self) -> None:
        self.status = 0
        self.head = b""
        self.chunked = False
        self.parts: list[bytes] = []
        self.nbytes = 0
        self.done = False
        self.latency = 0.0


class Pair:
    """One sampled request's two answers."""

    __slots__ = (
        "comparer",
        "over",
        "primary",
        "primary_rev",
        "route",
        "shadow",
        "shadow_rev",
        "t0",
    )

    def __init__(
        self, comparer: Comparer, route: RouteCompare, primary_rev: int, shadow_rev: int, t0: float
    ) -> None:
        self.comparer = comparer
        self.route = route
        self.primary_rev = primary_rev
        self.shadow_rev = shadow_rev
        self.t0 = t0
        self.over = False  # a side outgrew maxBodyBytes (or the budget): not compared
        self.primary = _Side()
        self.shadow = _Side()

    # -- fed by the exchange (the primary) and the mirror copy (the shadow) -----------

    def primary_head(self, status: int, head: bytes, chunked: bool) -> None:
        _head(self.primary, status, head, chunked)

    def primary_body(self, data: bytes) -> None:
        self.comparer.capture(self, self.primary, data)

    def primary_end(self, status: int, latency: float) -> None:
        side = self.primary
        side.status = side.status or status
        side.latency = latency
        self._end(side)

    def shadow_head(self, status: int, head: bytes, chunked: bool) -> None:
        _head(self.shadow, status, head, chunked)

    def shadow_body(self, data: bytes) -> None:
        self.comparer.capture(self, self.shadow, data)

    def shadow_end(self, ok: bool, latency: float) -> None:
        side = self.shadow
        if not ok:
            side.status = 0  # no answer: a status difference (the shadow failed)
        side.latency = latency
        self._end(side)

    def shadow_dropped(self, why: str = "dropped") -> None:
        """The copy was never sent (the mirror's queue was full, or the shadow had no
        ready replica: ``unavailable``): nothing to compare."""
        self.comparer.forget(self, why)

    def _end(self, side: _Side) -> None:
        if side.done:
            return
        side.done = True
        if self.primary.done and self.shadow.done:
            self.comparer.ready(self)


def _head(side: _Side, status: int, head: bytes, chunked: bool) -> None:
    side.status = status
    side.head = head
    side.chunked = chunked


class Comparer:
    """Makes pairs, holds them until both sides end, compares them off the hot path and
    keeps the results in the shadow revision's ``RevisionMetrics.shadow``."""

    def __init__(
        self,
        rollout_metrics: metrics.RolloutMetrics,
        *,
        room: Callable[[], bool] | None = None,
        charge: Callable[[float], None] | None = None,
    ) -> None:
        self._metrics = rollout_metrics
        # The mirror's: whether its copy will go out at all, and its CPU budget, which
        # comparisons spend too (``Mirror.has_room``, ``Mirror.charge``).
        self._room = room
        self._charge = charge
        self._pending: dict[Pair, None] = {}
        self._queue: collections.deque[Pair] = collections.deque()
        self._bytes = 0
        self._scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle: asyncio.Event | None = None

    def stats(self, revision: int) -> stats.ShadowStats:
        rm = self._metrics.revision(revision)
        found = rm.shadow
        if found is None:
            found = rm.shadow = stats.ShadowStats()
        assert isinstance(found, stats.ShadowStats)
        return found

    def pair(
        self, route: RouteCompare, primary_rev: int, shadow_rev: int, t0: float
    ) -> Pair | None:
        """A new pair, or None (counted ``busy``) when too many are waiting."""
        if (
            len(self._pending) >= PENDING
            or len(self._queue) >= QUEUE
            or self._bytes >= BUDGET_BYTES
        ):
            self.stats(shadow_rev).skip("busy")
            return None
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        made = Pair(self, route, primary_rev, shadow_rev, t0)
        self._pending[made] = None
        return made

    def start(
        self, compares: dict[int, RouteCompare], primary_rev: int, targets: list[int], t0: float
    ) -> Pair | None:
        """The pair for a request mirrored to ``targets``, if one of them compares and
        samples this request (one comparison per request at most)."""
        for rev in targets:
            route = compares.get(rev)
            if route is not None and route.sample():
                if self._room is not None and not self._room():
                    self.stats(rev).skip("dropped")  # the copy itself will be dropped
                    return None
                return self.pair(route, primary_rev, rev, t0)
        return None

    def capture(self, pair: Pair, side: _Side, data: bytes) -> None:
        if pair.over or pair not in self._pending:
            return
        size = side.nbytes + len(data)
        if size > pair.route.max_bytes or self._bytes + len(data) > BUDGET_BYTES:
            pair.over = True
            self._release(pair)
            return
        side.parts.append(data)
        side.nbytes = size
        self._bytes += len(data)

    def forget(self, pair: Pair, why: str) -> None:
        if pair in self._pending:
            del self._pending[pair]
            self._release(pair)
            self.stats(pair.shadow_rev).skip(why)
            self._check_idle()

    def ready(self, pair: Pair) -> None:
        if pair not in self._pending:
            return
        del self._pending[pair]
        if pair.over:
            self._release(pair)
            self.stats(pair.shadow_rev).skip("tooLarge")
            self._check_idle()
            return
        self._queue.append(pair)
        if not self._scheduled and self._loop is not None:
            self._scheduled = True
            self._loop.call_soon(self._pump)

    def _release(self, pair: Pair) -> None:
        for side in (pair.primary, pair.shadow):
            self._bytes -= side.nbytes
            side.nbytes = 0
            side.parts = []

    def sweep(self, now: float) -> None:
        """Called by the router's sweep (loop time): end pairs that waited too long."""
        for pair in [p for p in self._pending if now - p.t0 > PAIR_TIMEOUT]:
            self.forget(pair, "incomplete")

    def close(self) -> None:
        for pair in list(self._pending):
            self.forget(pair, "incomplete")
        self._queue.clear()
        self._bytes = 0

    async def idle(self) -> None:
        """Wait until no pair is pending or queued (tests)."""
        while self._pending or self._queue:
            if self._idle is None:
                self._idle = asyncio.Event()
            await self._idle.wait()

    def _check_idle(self) -> None:
        if self._idle is not None and not self._pending and not self._queue:
            self._idle.set()
            self._idle = None

    def _pump(self) -> None:
        self._scheduled = False
        if self._queue:
            pair = self._queue.popleft()
            cpu = time.process_time()
            try:
                self._compare(pair)
            except Exception:  # a bug must not stop the comparisons behind it
                log.exception("builtin router: comparing a shadow answer failed")
            finally:
                self._release(pair)
                if self._charge is not None:
                    self._charge(time.process_time() - cpu)
        if self._queue and self._loop is not None:
            self._scheduled = True
            self._loop.call_soon(self._pump)
        self._check_idle()

    def _compare(self, pair: Pair) -> None:
        route = pair.route
        primary = answer(pair.primary)
        shadow = answer(pair.shadow)
        kinds: list[str] = []
        reason = ""
        if primary.status != shadow.status:
            kinds.append("status")
            reason = f"status {primary.status} vs {shadow.status or 'no answer'}"
        if shadow.status:
            try:
                verdict = route.comparator(primary, shadow, route.settings)
            except Exception as exc:  # the user's comparator: report, never crash
                verdict = comparators.Verdict(
                    False, f"comparator failed: {type(exc).__name__}: {exc}"
                )
            if not verdict.matched:
                kinds.append("body")
                reason = "; ".join(r for r in (reason, verdict.reason) if r)
        delta = pair.shadow.latency - pair.primary.latency
        limit = route.latency_threshold
        if limit is not None and delta > limit:
            kinds.append("latency")
            reason = "; ".join(r for r in (reason, f"shadow {delta * 1000:.0f} ms slower") if r)
        sample = None
        if kinds:
            sample = {
                "at": time.time(),
                "kinds": kinds,
                "reason": reason,
                "primaryRevision": pair.primary_rev,
                "shadowRevision": pair.shadow_rev,
                "primary": _shown(primary, pair.primary.latency),
                "shadow": _shown(shadow, pair.shadow.latency),
            }
        self.stats(pair.shadow_rev).record(
            t=time.time(),
            primary=pair.primary_rev,
            kinds=kinds,
            primary_latency=pair.primary.latency,
            shadow_latency=pair.shadow.latency,
            shadow_status=shadow.status,
            sample=sample,
        )


def answer(side: _Side) -> comparators.Answer:
    """A captured side as the comparators read it (chunk framing removed)."""
    raw = b"".join(side.parts)
    complete = True
    if side.chunked:
        raw, complete = streams.dechunk(raw)
    found = _CONTENT_TYPE.search(side.head)
    content_type = found.group(1).decode("latin-1").strip() if found else ""
    return comparators.Answer(side.status, content_type, raw, complete=complete)


def _shown(a: comparators.Answer, latency: float) -> dict[str, Any]:
    return {
        "status": a.status,
        "contentType": a.content_type,
        "latency": round(latency, 6),
        "body": stats.truncate(a.text),
    }
