"""Mirroring (shadow traffic): copies of sampled requests, sent off the hot path.

The proxy decides per request which mirror routes apply (``table.MirrorRoute.sample``) and,
once the request body is complete, calls ``Mirror.offer``: an append to a bounded queue
and nothing more, so a slow or dead shadow never slows real traffic: when the queue is
full (in copies or in bytes) the copy is dropped and counted. The queue is pumped once per
event-loop pass (``call_soon``), after the callbacks that forwarded the real requests, at
most ``PER_PASS`` copies at a time, so real requests never wait behind a flood of copies.

A copy is a plain ``upstream.Sink`` (``_Copy``) on a pooled connection, like a real
exchange: no task, future or timer per copy. Still, a copy costs about what the upstream
half of a real request costs (a write and a read on a loopback socket dominate), so 100%
mirroring of a saturated router would take about 40% of its throughput. Hence a CPU
budget: copies may use ``cpu_share`` (25%) of the CPU time of the process the router runs
in (plus a trickle of wall time, so an idle router's queue drains); past it, copies stay
queued, the queue fills, and new copies are dropped and counted. At most ``concurrency``
copies are in flight (a slow shadow holds that many connections, no more); the router's
sweep calls ``Mirror.sweep`` to fail copies older than ``timeout``. Only a copy that has
to open a new connection uses a task (the connect is awaited), as the proxy does.

Each copy's answer is read and thrown away; the shadow's status class and latency are
recorded under ``changeover_mirror_*``, kept apart from served traffic. Copies carry
``x-changeover-shadow: 1`` so a shadow service can tell (and, say, skip side effects
such as sending e-mail).
"""

from __future__ import annotations

import asyncio
import collections
import time

from changeover import aio
from changeover.traffic.builtin import compare, metrics, pool, upstream, wire
from changeover.traffic.builtin import state as state_mod

SHADOW = b"x-changeover-shadow: 1\r\n"
# Seconds of CPU the mirror may spend at once after idling (the token bucket's size), and
# how long an over-budget mirror waits before looking at its queue again.
BURST = 0.02
RECHECK = 0.002
# A copy's whole CPU cost over what ``_pump`` measures (sending it; the rest is reading and
# parsing its answer), chosen so that 100% mirroring costs the primary at most ~30% of its
# throughput (``python -m bench.run``, the "+mirror" rows of bench/RESULTS.md "## Router").
COST_FACTOR = 4.5
# Budget seconds per wall-clock second added whatever the CPU use (see ``_pump``).
IDLE_REFILL = 0.02
# Copies sent per event-loop pass; more wait for the next pass, so that a budget refilled
# while copies queued cannot send hundreds at once and make real requests wait behind
# their answers (the primary's p99 with a shadow: ``bench.mirror_p99``).
PER_PASS = 16


class _Job:
    """One queued copy: the revision, the client's raw head (or, when the proxy forwarded
    it as received, the forwarded head), the body, the client's address."""

    __slots__ = ("body", "client_ip", "fwd_head", "head", "pair", "revision")

    def __init__(
        self,
        revision: int,
        head: bytes,
        body: bytes,
        client_ip: bytes,
        fwd_head: bytes | None,
        pair: compare.Pair | None,
    ) -> None:
        self.revision = revision
        self.head = head
        self.body = body
        self.client_ip = client_ip
        self.fwd_head = fwd_head
        self.pair = pair  # the shadow half of a comparison, or None


class _Copy:
    """An ``upstream.Sink`` that reads the shadow's answer and keeps its status (and, when
    the request is compared, hands the answer to its ``pair``)."""

    __slots__ = ("conn", "ep", "mirror", "pair", "rm", "status", "t0", "task")

    def __init__(
        self,
        mirror: Mirror,
        ep: pool.EndpointState,
        rm: metrics.RevisionMetrics,
        t0: float,
        pair: compare.Pair | None,
    ) -> None:
        self.mirror = mirror
        self.pair = pair
        self.ep = ep
        self.rm = rm
        self.t0 = t0
        self.status = 0
        self.conn: upstream.UpstreamConnection | None = None
        self.task: asyncio.Task[None] | None = None  # connecting

    def on_head(
        self,
        conn: upstream.UpstreamConnection,
        status: int,
        info: upstream.ResponseHead,
        framing: int,
    ) -> None:
        self.status = status
        pair = self.pair
        if pair is not None:
            pair.shadow_head(status, info.head, framing == upstream.CHUNKED)

    def on_raw(self, data: bytes) -> None:
        pair = self.pair
        if pair is not None:
            pair.shadow_body(data)

    def on_body(self, data: bytes) -> None:
        pass

    def on_complete(self, conn: upstream.UpstreamConnection, keep_alive: bool) -> None:
        self.mirror._done(self, ok=True, keep_alive=keep_alive)

    def on_lost(self, conn: upstream.UpstreamConnection, bad_response: bool) -> None:
        self.mirror._done(self, ok=False, keep_alive=False)

    def flush(self) -> None:
        pass

    def pause_source(self) -> None:
        pass

    def resume_source(self) -> None:
        pass


class Mirror:
    def __init__(
        self,
        state: state_mod.ProxyState,
        *,
        concurrency: int = 128,
        queue_size: int = 1024,
        queue_bytes: int = 64 * 1024 * 1024,
        timeout: float = 30.0,
        cpu_share: float = 0.25,
    ) -> None:
        self._state = state
        self.concurrency = concurrency
        self.cpu_share = cpu_share
        self._tokens = BURST
        self._cpu = time.process_time()
        self._wall = 0.0
        self.queue_size = queue_size
        self.queue_bytes = queue_bytes
        self.timeout = timeout
        self._queue: collections.deque[_Job] = collections.deque()
        self._queued_bytes = 0
        self._in_flight: set[_Copy] = set()
        self._scheduled = False
        self._idle: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._cpu = time.process_time()
        self._wall = self._loop.time()

    async def close(self) -> None:
        for job in self._queue:
            if job.pair is not None:
                job.pair.shadow_dropped()
        self._queue.clear()
        self._queued_bytes = 0
        for copy in list(self._in_flight):
            if copy.task is not None:
                await aio.cancel_and_wait(copy.task)
            self._done(copy, ok=False, keep_alive=False)

    def offer(
        self,
        revision: int,
        head: bytes,
        body: bytes,
        client_ip: bytes,
        fwd_head: bytes | None = None,
        pair: compare.Pair | None = None,
    ) -> None:
        """Queue a copy of a request: its raw head as the client sent it (parsed later,
        off the hot path) or ``fwd_head``, the head the proxy forwarded as received;
        ``pair``: the comparison its answer goes to."""
        size = len(head) + len(body)
        queue = self._queue
        if len(queue) >= self.queue_size or self._queued_bytes + size > self.queue_bytes:
            self._state.metrics.revision(revision).mirror_dropped += 1
            if pair is not None:
                pair.shadow_dropped()
            return
        queue.append(_Job(revision, head, body, client_ip, fwd_head, pair))
        self._queued_bytes += size
        if not self._scheduled and self._loop is not None:
            self._scheduled = True
            self._loop.call_soon(self._pump)

    def has_room(self) -> bool:
        """Whether a copy offered now would be queued rather than dropped (so a shadow
        comparison is started only for copies that will go out)."""
        return len(self._queue) < self.queue_size

    def charge(self, seconds: float) -> None:
        """Spend ``seconds`` of CPU from the copies' budget: comparing the shadow's answers
        (``builtin.compare``) counts against the same share of the router's CPU."""
        self._tokens = max(self._tokens - seconds, -BURST)

    async def idle(self) -> None:
        """Wait until every queued copy has been answered or failed (tests, shutdown)."""
        while self._queue or self._in_flight:
            if self._idle is None:
                self._idle = asyncio.Event()
            await self._idle.wait()

    def sweep(self, now: float) -> None:
        """Called by the router's sweep: fail copies in flight for longer than ``timeout``."""
        for copy in [c for c in self._in_flight if now - c.t0 > self.timeout]:
            if copy.task is not None:
                copy.task.cancel()
            self._done(copy, ok=False, keep_alive=False)

    # -- sending -----------------------------------------------------------------------

    def _pump(self) -> None:
        self._scheduled = False
        queue = self._queue
        assert self._loop is not None
        # The CPU budget, a token bucket in seconds of this process's CPU time: refilled by
        # ``cpu_share`` of the CPU used since the last pump, spent by what sending costs
        # times ``COST_FACTOR`` for what happens elsewhere (the answer's read, parse and
        # bookkeeping). CPU time, not wall time: on a busy host the router may get a
        # fraction of a core, and copies must stay a share of what it gets.
        cpu = time.process_time()
        now = self._loop.time()
        # Plus a trickle of wall time: a router idling with copies queued uses next to no
        # CPU, and its copies must not wait for CPU use that is not coming.
        refill = (cpu - self._cpu) * self.cpu_share + (now - self._wall) * IDLE_REFILL
        tokens = min(self._tokens + refill, BURST)
        self._wall = now
        if tokens > 0:
            room = min(PER_PASS, self.concurrency - len(self._in_flight))
            while queue and room > 0:
                job = queue.popleft()
                self._queued_bytes -= len(job.head) + len(job.body)
                self._send(job)
                room -= 1
            after = time.process_time()
            # At most one burst in debt: one slow pass (a GC pause, a preemption) times the
            # cost factor could otherwise stall an idle router's copies for many seconds
            # (seen: a 10 s stall in the full test suite).
            tokens = max(tokens - COST_FACTOR * (after - cpu), -BURST)
            cpu = after
        self._tokens = tokens
        self._cpu = cpu
        if queue and not self._scheduled:
            if tokens <= 0:
                # Over budget: look again shortly; meanwhile the queue fills and further
                # copies are dropped (and counted) at ``offer``.
                self._scheduled = True
                self._loop.call_later(RECHECK, self._pump)
            elif len(self._in_flight) < self.concurrency:
                # This pass's share is out: the rest go in the next passes. (At the
                # concurrency limit, a copy that ends schedules the pump: ``_done``.)
                self._scheduled = True
                self._loop.call_soon(self._pump)
        self._check_idle()

    def _send(self, job: _Job) -> None:
        st = self._state
        rm = st.metrics.revision(job.revision)
        assert self._loop is not None
        now = self._loop.time()
        ep = st.pool.pick(job.revision, now)
        if ep is None or (ep.down_until > now and not ep.idle):
            # No shadow, or it refused a connection within the last second: fail the copy
            # at once instead of spending a connect (and the primary's CPU) on each one.
            rm.mirror_failed += 1
            pair = job.pair
            if pair is not None and ep is None:
                # No ready replica is no answer to compare (not a wrong one).
                pair.shadow_dropped("unavailable")
            elif pair is not None:
                pair.shadow_end(False, 0.0)  # refused: the shadow failing, a difference
            return
        data = _request_bytes(job)
        copy = _Copy(self, ep, rm, now, job.pair)
        ep.enter()
        self._in_flight.add(copy)
        head_only = data.startswith(b"HEAD ")
        conn = ep.take_idle()
        if conn is not None:
            assert isinstance(conn, upstream.UpstreamConnection)
            self._attach(copy, conn, data, head_only)
        else:
            copy.task = self._loop.create_task(self._connect(copy, data, head_only))

    async def _connect(self, copy: _Copy, data: bytes, head_only: bool) -> None:
        ep = copy.ep
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(
                    lambda: upstream.UpstreamConnection(ep, self._state.batch),
                    ep.endpoint.host,
                    ep.endpoint.port,
                ),
                self.timeout,
            )
        except (OSError, TimeoutError):
            copy.task = None
            ep.down_until = loop.time() + pool.DOWN_SECONDS
            self._done(copy, ok=False, keep_alive=False)
            return
        copy.task = None
        if copy not in self._in_flight:  # timed out by the sweep, or closing
            conn.close()
            return
        self._attach(copy, conn, data, head_only)

    def _attach(
        self, copy: _Copy, conn: upstream.UpstreamConnection, data: bytes, head_only: bool
    ) -> None:
        copy.conn = conn
        conn.bind(copy, head_only=head_only)
        conn.write(data)
        # Written now, not after the loop pass (``builtin.batch``): ``_pump`` measures what
        # sending costs, and the socket write is most of it; batched, the budget would miss
        # it. (Copies leave in a burst per pump anyway.)
        conn.flush_out()

    def _done(self, copy: _Copy, *, ok: bool, keep_alive: bool) -> None:
        if copy not in self._in_flight:
            return
        self._in_flight.discard(copy)
        copy.ep.leave()
        conn, copy.conn = copy.conn, None
        rm = copy.rm
        pair = copy.pair
        if pair is not None:
            assert self._loop is not None
            pair.shadow_end(ok and conn is not None, self._loop.time() - copy.t0)
        if ok and conn is not None:
            rm.mirror_sent += 1
            status = copy.status
            rm.mirror_codes[status // 100 if 100 <= status < 600 else 5] += 1
            assert self._loop is not None
            rm.mirror_latency.observe(self._loop.time() - copy.t0)
            if keep_alive:
                copy.ep.release(conn)
            else:
                conn.close()
        else:
            rm.mirror_failed += 1
            if conn is not None:
                conn.abort()
        if self._queue and not self._scheduled and self._loop is not None:
            self._scheduled = True
            self._loop.call_soon(self._pump)
        self._check_idle()

    def _check_idle(self) -> None:
        if self._idle is not None and not self._queue and not self._in_flight:
            self._idle.set()
            self._idle = None


def _request_bytes(job: _Job) -> bytes:
    """The copy's bytes: the forwarded head plus the shadow mark when the proxy forwarded
    the head as received (no hop-by-hop or framing fields to fix); else rebuilt here."""
    if job.fwd_head is not None:
        return job.fwd_head[:-2] + SHADOW + b"\r\n" + job.body
    start, headers = wire.parse_head(job.head)
    method, url = start.split(b" ", 2)[:2]
    body = job.body
    framing = b"content-length: %d\r\n" % len(body) if body or method in _BODY else b""
    head = wire.request_head(
        method,
        url,
        headers,
        client_ip=job.client_ip,
        framing=framing,
        extra=SHADOW,
    )
    return head + body


_BODY = frozenset({b"POST", b"PUT", b"PATCH"})
