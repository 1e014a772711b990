"""Per-revision backend endpoints and their keep-alive upstream connections.

The proxy asks ``Pool.pick(revision)`` for an endpoint (round-robin, skipping endpoints that
refused a connection in the last second), then ``EndpointState.take_idle()`` for a warm
connection, and hands connections back with ``EndpointState.release()``. The router calls
``set_backends`` when the platform reports ready replicas and ``drain`` before a replica
stops: the endpoint leaves every revision at once (no new request picks it), its idle
connections close, and ``drain`` waits until its in-flight requests have finished. An
endpoint that ``set_backends`` removed earlier (a replica that went NotReady) is still
tracked while requests are in flight on it, so a later ``drain`` waits for those too.

Nothing here awaits on the hot path: ``pick``/``take_idle``/``release`` are plain calls.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from changeover.endpoints import Endpoint

# A refused endpoint is skipped by other requests for this long (passive health check), so
# a replica that just died costs one retry, not one per request.
DOWN_SECONDS = 1.0


class PooledConnection(Protocol):
    idle_ticks: int

    def usable(self) -> bool: ...

    def close(self) -> None: ...


class EndpointState:
    """One backend endpoint as seen by one router: idle connections and in-flight count."""

    __slots__ = ("_drained", "active", "down_until", "endpoint", "idle", "in_flight", "max_idle")

    def __init__(self, endpoint: Endpoint, *, max_idle: int) -> None:
        self.endpoint = endpoint
        # An insertion-ordered dict as an ordered set: popitem() is LIFO and forget() is
        # O(1), which matters with hundreds of idle connections per endpoint.
        self.idle: dict[PooledConnection, None] = {}
        self.in_flight = 0
        self.active = True  # False once removed or draining: connections are not pooled
        self.down_until = 0.0
        self.max_idle = max_idle
        self._drained: asyncio.Event | None = None

    def take_idle(self) -> PooledConnection | None:
        idle = self.idle
        while idle:
            conn = idle.popitem()[0]  # LIFO: the warmest connection; cold ones age out
            if conn.usable():
                return conn
        return None

    def release(self, conn: PooledConnection) -> None:
        if self.active and len(self.idle) < self.max_idle and conn.usable():
            conn.idle_ticks = 0
            self.idle[conn] = None
        else:
            conn.close()

    def forget(self, conn: PooledConnection) -> None:
        """An idle connection closed by the upstream leaves the pool."""
        self.idle.pop(conn, None)

    def enter(self) -> None:
        self.in_flight += 1

    def leave(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0 and self._drained is not None:
            self._drained.set()

    def deactivate(self) -> None:
        self.active = False
        idle, self.idle = self.idle, {}
        for conn in idle:
            conn.close()

    async def wait_idle(self, grace_seconds: float) -> bool:
        """Wait until no request is in flight here (at most ``grace_seconds``)."""
        if self.in_flight == 0:
            return True
        if self._drained is None:
            self._drained = asyncio.Event()
        try:
            await asyncio.wait_for(self._drained.wait(), grace_seconds)
        except TimeoutError:
            return False
        return True


class RevisionPool:
    __slots__ = ("endpoints", "rr")

    def __init__(self, endpoints: list[EndpointState]) -> None:
        self.endpoints = endpoints
        self.rr = 0


class Pool:
    """All revisions' endpoints for one router."""

    def __init__(self, *, max_idle_per_endpoint: int = 64) -> None:
        self.revisions: dict[int, RevisionPool] = {}
        self.max_idle = max_idle_per_endpoint
        self._draining: set[Endpoint] = set()
        # Endpoints removed by set_backends with requests still in flight: no new request
        # goes to them, but a later drain() must wait for these (a NotReady replica that
        # is then stopped would otherwise be cut at once).
        self.retired: list[EndpointState] = []

    def has_endpoints(self, revision: int) -> bool:
        found = self.revisions.get(revision)
        return found is not None and bool(found.endpoints)

    def pick(
        self, revision: int, now: float, avoid: Sequence[EndpointState] = ()
    ) -> EndpointState | None:
        """Round-robin over the revision's endpoints, preferring ones not recently refused
        and not in ``avoid`` (those this request already failed on); None if none exist."""
        rp = self.revisions.get(revision)
        if rp is None or not rp.endpoints:
            return None
        eps = rp.endpoints
        n = len(eps)
        start = rp.rr
        rp.rr = (start + 1) % n
        fallback: EndpointState | None = None
        for i in range(n):
            ep = eps[(start + i) % n]
            if ep in avoid:
                continue
            if ep.down_until <= now:
                return ep
            if fallback is None:
                fallback = ep
        if fallback is not None:
            return fallback
        # Every endpoint failed this request once already: try the next one again, since
        # replicas come back (a restart) and the caller bounds the attempts.
        return eps[start % n]

    def set_backends(self, revision: int, endpoints: Sequence[Endpoint]) -> None:
        old = self.revisions.get(revision)
        kept = {ep.endpoint: ep for ep in old.endpoints} if old else {}
        wanted = [e for e in dict.fromkeys(endpoints) if e not in self._draining]
        new = [
            kept.pop(e) if e in kept else EndpointState(e, max_idle=self.max_idle) for e in wanted
        ]
        for gone in kept.values():
            gone.deactivate()  # in-flight requests finish on their connections
            if gone.in_flight > 0:
                self.retired.append(gone)
        self.retired = [st for st in self.retired if st.in_flight > 0]
        if new:
            rp = RevisionPool(new)
            rp.rr = old.rr % len(new) if old else 0
            self.revisions[revision] = rp
        else:
            self.revisions.pop(revision, None)

    def states_of(self, endpoint: Endpoint) -> list[EndpointState]:
        """Every state of ``endpoint``: in a revision's pool or retired with requests."""
        routed = [
            ep for rp in self.revisions.values() for ep in rp.endpoints if ep.endpoint == endpoint
        ]
        return routed + [st for st in self.retired if st.endpoint == endpoint]

    async def drain(self, endpoint: Endpoint, grace_seconds: float) -> int:
        """Remove ``endpoint`` everywhere and wait, up to ``grace_seconds``, for its
        requests in flight (also those begun before set_backends removed it); the number
        still in flight when the grace period ended (0: drained)."""
        states = self.states_of(endpoint)
        self._draining.add(endpoint)
        try:
            for revision, rp in list(self.revisions.items()):
                remaining = [ep for ep in rp.endpoints if ep.endpoint != endpoint]
                if len(remaining) != len(rp.endpoints):
                    self.set_backends(revision, [ep.endpoint for ep in remaining])
            for st in states:
                st.deactivate()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + grace_seconds
            for st in states:
                await st.wait_idle(max(0.0, deadline - loop.time()))
            self.retired = [st for st in self.retired if st.in_flight > 0]
            return sum(max(0, st.in_flight) for st in states)
        finally:
            # A later set_backends may bring the same address back (a new replica on a
            # recycled port): it is a new endpoint then.
            self._draining.discard(endpoint)

    def all_states(self) -> list[EndpointState]:
        return [ep for rp in self.revisions.values() for ep in rp.endpoints]

    def close(self) -> None:
        for ep in self.all_states():
            ep.deactivate()
        self.revisions.clear()
