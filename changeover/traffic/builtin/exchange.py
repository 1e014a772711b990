"""One proxied request/response: routing, upstream choice, retries, streaming, metrics.

``proxy.ClientConnection`` creates an ``Exchange`` when a request head is parsed, feeds it
body pieces, and starts it when it reaches the front of the connection's pipeline. The
exchange binds itself to an ``upstream.UpstreamConnection`` as its ``Sink`` and writes the
response to the client as it arrives; it never buffers a whole response.

Writes are batched per socket read: callbacks append to ``_up_out`` / ``_down_out`` and one
``flush`` hands them to the connection, which writes them in one ``transport.write`` after
the event-loop pass (``builtin.batch``): one syscall for head + first body piece instead
of several. A request without a body goes upstream from ``end_body``; a response's raw
head and body bytes go to the client in one write per upstream read.

No timer per request: the router's sweep calls ``check_timeout`` on each connection's
current exchange, so the response timeout costs nothing on the hot path.

An upgrade request (``want_upgrade``) goes upstream alone: bytes the client sent behind
it are held (``hold_early``) and sent only after a 101 (``on_upgrade``); as a request it
is counted then, and the connection becomes a ``tunnel.Tunnel`` that relays bytes both
ways (the exchange is done; it never reaches ``_finish``).

Retries never resend what may have been processed: a request moves to another endpoint
when the connect failed (nothing was sent), or when a *reused* keep-alive connection died
before any response byte and the request is idempotent and was kept whole in memory (the
classic keep-alive race, retried the way Go's net/http does).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from changeover.traffic.builtin import compare, metrics, pool, token_streams, upstream, wire

if TYPE_CHECKING:
    from changeover.traffic.builtin import proxy

IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})
MIRROR_BODY_LIMIT = 1024 * 1024  # a request with a bigger body is not mirrored
MAX_ATTEMPTS = 8  # upstream tries per request (connect failures and stale connections)
RETRY_PAUSE = 0.025  # seconds, times the attempt number, before retrying a failed endpoint

# Why the client socket is not being read (bit flags; reading resumes when all clear).
PAUSE_UPSTREAM = 1  # the upstream send buffer is full
PAUSE_BUFFERED = 2  # too much body buffered before an upstream connection exists
PAUSE_PIPELINE = 4  # too many pipelined requests queued
PAUSE_UPGRADE = 8  # an upgrade request waits for the upstream's answer


class Exchange:
    __slots__ = (
        "_attempts",
        "_avoid",
        "_connect_task",
        "_down_out",
        "_early",
        "_mirror_body",
        "_mirror_bytes",
        "_mirror_head",
        "_pair",
        "_reused",
        "_sent",
        "_sent_at",
        "_sent_bytes",
        "_up_out",
        "_up_out_bytes",
        "body_done",
        "chunked_in",
        "chunked_out",
        "conn",
        "done",
        "down",
        "ep",
        "expect_continue",
        "head",
        "keep_alive",
        "local",
        "method",
        "mirror_targets",
        "responded",
        "revision",
        "rm",
        "state",
        "status",
        "t0",
        "upgrade",
        "variants",
        "watch",
    )

    def __init__(
        self,
        down: proxy.ClientConnection,
        method: bytes,
        head: bytes,
        up_head: bytes,
        keep_alive: bool,
        chunked_in: bool,
        expect_continue: bool,
        has_body: bool,
    ) -> None:
        self.down = down
        self.state = down.state
        self.method = method
        self.head = head  # as the client sent it (the mirror copies it)
        self.keep_alive = keep_alive
        self.chunked_in = chunked_in
        self.expect_continue = expect_continue
        self.body_done = not has_body  # the whole request has been read
        self._up_out: list[bytes] = [up_head]
        self._up_out_bytes = len(up_head)
        self._sent: list[bytes] | None = [] if method in IDEMPOTENT else None
        self._sent_bytes = 0
        self._sent_at = 0.0  # when the whole request had been handed upstream (loop time)
        self._down_out: list[bytes] = []
        self._mirror_body: list[bytes] | None = None
        self._mirror_bytes = 0
        self._mirror_head: bytes | None = None
        # The primary half of a shadow comparison (a sampled mirrored request), or None.
        self._pair: compare.Pair | None = None
        self._attempts = 0
        self._reused = False
        self._avoid: list[pool.EndpointState] | None = None
        self._connect_task: asyncio.Task[None] | None = None
        self.mirror_targets: list[int] = _NO_TARGETS
        # A response the proxy gives itself (the maintenance page), by keep-alive flag.
        self.local: Callable[[bool], bytes] | None = None
        self.chunked_out = False
        self.conn: upstream.UpstreamConnection | None = None
        self.ep: pool.EndpointState | None = None
        self.rm: metrics.RevisionMetrics | None = None
        self.revision = 0
        self.responded = False
        self.done = False
        self.status = 0
        self.t0 = 0.0  # time.monotonic(): finer than uvloop's millisecond loop clock
        self.watch: token_streams.StreamWatch | None = None  # a token stream's accounting
        self.upgrade = False  # an Upgrade request (want_upgrade)
        self._early = b""  # client bytes behind the upgrade request, held until the 101
        # (flag, variant) of each flag the router evaluated for this request, or None.
        self.variants: list[tuple[str, str]] | None = None

    # -- request side ---------------------------------------------------------------

    def feed_body(self, data: bytes) -> None:
        if self.done:
            return  # answered already (e.g. 503): the rest of the body is read and dropped
        mb = self._mirror_body
        if mb is not None:
            self._mirror_bytes += len(data)
            if self._mirror_bytes > MIRROR_BODY_LIMIT:
                self._mirror_body = None  # too big to copy: this request is not mirrored
                for rev in self.mirror_targets:
                    self.state.metrics.revision(rev).mirror_dropped += 1
                pair = self._pair
                if pair is not None:
                    self._pair = None
                    pair.comparer.forget(pair, "tooLarge")
            else:
                mb.append(data)
        self._up_out.append(wire.chunk(data) if self.chunked_in else data)
        self._up_out_bytes += len(data)
        if self.conn is not None:
            self.down.mark_dirty(self)
        elif self._up_out_bytes > self.state.settings.buffer_limit:
            self.down.pause_reading(PAUSE_BUFFERED)

    def end_body(self) -> None:
        self.body_done = True
        if self.done:
            pair = self._pair
            if pair is not None:  # answered before the body ended: nothing was mirrored
                self._pair = None
                pair.comparer.forget(pair, "incomplete")
            return
        if self.chunked_in:
            self._up_out.append(wire.LAST_CHUNK)
        mb = self._mirror_body
        if mb is not None:
            self._mirror_body = None
            mirror = self.state.mirror
            if mirror is not None:
                body = b"".join(mb)
                pair = self._pair
                for rev in self.mirror_targets:
                    mirror.offer(
                        rev,
                        self.head,
                        body,
                        self.down.client_ip,
                        self._mirror_head,
                        pair if pair is not None and pair.shadow_rev == rev else None,
                    )
        if self.conn is not None:
            if self._up_out:
                self.flush_up()
            elif not self._sent_at:
                self._sent_at = self.down.loop.time()  # the body went out as it came

    def flush_up(self) -> None:
        conn = self.conn
        out = self._up_out
        if conn is None or not out:
            return
        data = b"".join(out) if len(out) > 1 else out[0]
        out.clear()
        self._up_out_bytes = 0
        sent = self._sent
        if sent is not None:
            self._sent_bytes += len(data)
            if self._sent_bytes > self.state.settings.replay_limit:
                self._sent = None
            else:
                sent.append(data)
        conn.write(data)
        if self.body_done and not self._sent_at:
            self._sent_at = self.down.loop.time()

    def want_upgrade(self, up_head: bytes) -> None:
        """Make this an upgrade request: ``up_head`` (with its Upgrade and Connection
        fields) goes upstream alone; never mirrored, and the upstream connection is not
        reused unless it answers 101 (then it is the tunnel's)."""
        self.upgrade = True
        self._up_out = [up_head]
        self._up_out_bytes = len(up_head)
        self.mirror_targets = _NO_TARGETS
        self._mirror_body = None
        self._mirror_head = None
        pair = self._pair
        if pair is not None:  # a WebSocket's answers are not compared
            self._pair = None
            pair.comparer.forget(pair, "incomplete")

    def hold_early(self, data: bytes) -> None:
        """Client bytes that arrived behind the upgrade request's head."""
        if data:
            self._early += data

    # -- starting: routing and picking an upstream -------------------------------------

    def prepare(
        self, revision: int | None, mirror_to: list[int] | None, *, as_received: bool = False
    ) -> None:
        """The routing decision, made when the head is parsed (so a pipelined request
        waiting its turn still captures its body for the mirror). ``as_received``: the
        head goes upstream as the client sent it (plus forwarding fields), so the mirror
        can copy the forwarded head instead of parsing and rebuilding it."""
        self.t0 = time.monotonic()
        if revision is None:
            self.revision = -1
            return
        self.revision = revision
        if mirror_to and self.state.mirror is not None:
            self.mirror_targets = mirror_to
            self._mirror_body = []
            if as_received:
                self._mirror_head = self._up_out[0]
            compares = self.state.table.compares
            if compares and self.state.comparer is not None:
                self._pair = self.state.comparer.start(compares, revision, mirror_to, self.t0)

    def start(self) -> None:
        """Called by the client connection when this request is at the pipeline's front."""
        st = self.state
        local = self.local
        if local is not None:
            if not self.body_done:
                self.keep_alive = False
            self.down.write(local(self.keep_alive))
            self._finish(503)
            return
        rev = self.revision
        if rev < 0:
            st.metrics.unrouted += 1
            self.respond_local(503, b"no revision is serving this service\n")
            return
        rm = self.rm = st.metrics.revisions.get(rev) or st.metrics.revision(rev)
        rm.in_flight += 1
        if self.expect_continue and not self.body_done:
            self.down.write(wire.CONTINUE)
        self._go()

    def _go(self) -> None:
        ep = self.state.pool.pick(self.revision, self.t0, self._avoid or ())
        if ep is None:
            assert self.rm is not None
            self.rm.no_backend += 1
            self.respond_local(503, b"no ready backend for revision %d\n" % self.revision)
            return
        self._attempts += 1
        self.ep = ep
        ep.in_flight += 1
        conn = ep.take_idle()
        if conn is not None:
            self._attach(conn, True)  # type: ignore[arg-type]
        else:
            self._connect_task = self.down.loop.create_task(self._connect(ep))

    async def _connect(self, ep: pool.EndpointState) -> None:
        loop = self.down.loop
        st = self.state
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(
                    lambda: upstream.UpstreamConnection(ep, st.batch),
                    ep.endpoint.host,
                    ep.endpoint.port,
                ),
                st.settings.connect_timeout,
            )
        except (OSError, TimeoutError) as exc:
            self._connect_task = None
            if self.done:
                return
            ep.down_until = loop.time() + pool.DOWN_SECONDS
            assert self.rm is not None
            self.rm.connect_errors += 1
            self._retry(timeout=isinstance(exc, TimeoutError))
            return
        self._connect_task = None
        if self.done:  # the client went away while connecting
            ep.release(conn)
            return
        self._attach(conn, False)

    def _retry(self, *, timeout: bool) -> None:
        """Move to another endpoint of the same revision, or give up with 502/504.

        Each endpoint gets one try, then the whole set once more after a short pause (a
        replica restarting, or the platform about to report a new one), at most
        ``MAX_ATTEMPTS`` in all. Worked example, 2 endpoints both refusing: a, b, then
        (after 50 ms) a again, then 502.
        """
        ep = self.ep
        assert ep is not None and self.rm is not None
        self.ep = None
        ep.leave()
        avoid = self._avoid
        if avoid is None:
            avoid = self._avoid = []
        avoid.append(ep)
        rp = self.state.pool.revisions.get(self.revision)
        n = len(rp.endpoints) if rp is not None else 0
        if n == 0 or self._attempts >= min(max(3, n + 1), MAX_ATTEMPTS):
            if timeout:
                self.rm.timeouts += 1
                self.respond_local(504, b"upstream connect timed out\n")
            else:
                self.rm.bad_responses += 1
                self.respond_local(502, b"upstream refused the connection\n")
            return
        self.rm.retries += 1
        if rp is not None and all(e in avoid for e in rp.endpoints):
            self.down.loop.call_later(RETRY_PAUSE * self._attempts, self._go_if_live)
        else:
            self._go()

    def _go_if_live(self) -> None:
        if not self.done:
            self._go()

    def _attach(self, conn: upstream.UpstreamConnection, reused: bool) -> None:
        self.conn = conn
        self._reused = reused
        conn.bind(self, head_only=self.method == b"HEAD", upgrade_to=self if self.upgrade else None)
        down = self.down
        if down.write_paused:
            conn.pause_reading()
        if self.body_done or not down.in_feed:
            self.flush_up()
        else:
            down.mark_dirty(self)  # head + body of this read go out in one write
        if down._paused & PAUSE_BUFFERED and (
            self._up_out_bytes <= self.state.settings.buffer_limit
        ):
            down.resume_reading(PAUSE_BUFFERED)

    def check_timeout(self, now: float, limit: float) -> None:
        """Called by the router's sweep: 504 when the response head is overdue, counted
        from when the whole request was sent (a slow upload is the body timeout's)."""
        sent_at = self._sent_at
        if self.done or self.responded or self.conn is None or not sent_at:
            return
        if now - sent_at < limit:
            return
        conn = self.conn
        self.conn = None
        conn.abort()
        assert self.rm is not None
        self.rm.timeouts += 1
        self.respond_local(504, b"upstream did not answer in time\n")

    # -- response side (upstream.Sink) ---------------------------------------------------

    def on_head(
        self,
        conn: upstream.UpstreamConnection,
        status: int,
        info: upstream.ResponseHead,
        framing: int,
    ) -> None:
        self.responded = True
        self.status = status
        down = self.down
        rm = self.rm
        assert rm is not None
        rm.ttfb.observe(time.monotonic() - self.t0)
        if info.stream and self.method != b"HEAD":
            self.watch = conn.watch = token_streams.StreamWatch(info.stream, self.t0, rm)
        st = self.state
        extra = st.rev_headers.get(self.revision) or st.revision_header(self.revision)
        http11 = down.http11
        if framing == upstream.CHUNKED:
            if http11:
                extra += wire.CHUNKED  # the chunked body passes through as received
            else:
                conn.dechunk = True  # HTTP/1.0: de-chunked, and the body ends when we close
                self.keep_alive = False
        elif framing == upstream.CLOSE:
            if http11:
                self.chunked_out = True
                extra += wire.CHUNKED
            else:
                self.keep_alive = False
        if not self.keep_alive:
            extra += b"connection: close\r\n"
        elif not http11:
            extra += b"connection: keep-alive\r\n"
        self._down_out.append(info.base + extra + b"\r\n")
        pair = self._pair
        if pair is not None:
            pair.primary_head(status, info.head, framing == upstream.CHUNKED and not conn.dechunk)

    def on_upgrade(
        self, conn: upstream.UpstreamConnection, info: upstream.ResponseHead, rest: bytes
    ) -> None:
        """The upstream switched protocols: answer 101 and relay from now on. ``rest`` is
        what followed the 101 head in the same read (already the new protocol)."""
        protocol = b""
        for _, name, value in info.fields:
            if name == b"upgrade":
                protocol = value.strip()
        if not protocol:
            # RFC 9110 §15.2.2: a 101 names the protocol switched to; without it there is
            # no telling what the client would be talking to.
            conn.abort()
            self.on_lost(conn, True)
            return
        self.responded = True
        self.status = 101
        early, self._early = self._early, b""
        self.down.start_tunnel(self, conn, info.base, protocol, rest, early)

    def on_raw(self, data: bytes) -> None:
        self._down_out.append(wire.chunk(data) if self.chunked_out else data)
        pair = self._pair
        if pair is not None:
            pair.primary_body(data)

    def on_body(self, data: bytes) -> None:
        self._down_out.append(data)
        pair = self._pair
        if pair is not None:
            pair.primary_body(data)

    def flush(self) -> None:
        out = self._down_out
        if out:
            self.down.write_many(out)
            out.clear()

    def on_complete(self, conn: upstream.UpstreamConnection, keep_alive: bool) -> None:
        watch = self.watch
        if watch is not None:
            self.watch = conn.watch = None
            watch.finish(time.monotonic(), cut=False)
        if self.chunked_out:
            self._down_out.append(wire.LAST_CHUNK)
        self.flush()
        self.conn = None
        ep = self.ep
        reuse = keep_alive and self.body_done and not self._up_out and not self.upgrade
        if reuse and ep is not None:
            if conn.reads_paused:
                conn.resume_reading()
            ep.release(conn)
        else:
            conn.close()
        self._finish(self.status)

    def on_lost(self, conn: upstream.UpstreamConnection, bad_response: bool) -> None:
        self.conn = None
        rm = self.rm
        assert rm is not None
        if self.done:
            return
        if self.responded:
            # Mid-stream failure: the head is out, so the only honest signal is a cut
            # connection (a truncated body), never a spliced-in error page. What this read
            # brought is dropped: it may be bytes past the response's end.
            self._down_out.clear()
            rm.bad_responses += 1
            watch = self.watch
            if watch is not None:
                self.watch = None
                watch.finish(time.monotonic(), cut=True)
            self.keep_alive = False
            self.down.abort()
            self._finish(502)
            return
        sent = self._sent
        replayable = sent is not None and self._reused and self._attempts < MAX_ATTEMPTS
        if replayable and not bad_response and not conn.got_bytes:
            # Keep-alive race: replay the exact bytes on a fresh connection.
            assert sent is not None and self.ep is not None
            self._up_out[:0] = sent
            self._up_out_bytes = sum(map(len, self._up_out))
            self._sent = []
            self._sent_bytes = 0
            self._sent_at = 0.0
            self.ep.leave()
            self.ep = None
            rm.retries += 1
            self._go_fresh()
            return
        rm.bad_responses += 1
        self.respond_local(502, b"upstream closed the connection\n")

    def _go_fresh(self) -> None:
        """Like ``_go`` but never on an idle pooled connection (they may all be stale)."""
        ep = self.state.pool.pick(self.revision, self.down.loop.time(), ())
        if ep is None:
            assert self.rm is not None
            self.rm.no_backend += 1
            self.respond_local(503, b"no ready backend for revision %d\n" % self.revision)
            return
        self._attempts += 1
        self.ep = ep
        ep.enter()
        self._connect_task = self.down.loop.create_task(self._connect(ep))

    def pause_source(self) -> None:
        self.down.pause_reading(PAUSE_UPSTREAM)

    def resume_source(self) -> None:
        self.down.resume_reading(PAUSE_UPSTREAM)

    # -- ending --------------------------------------------------------------------------

    def respond_local(self, status: int, body: bytes) -> None:
        """Answer from the proxy itself (before any upstream byte reached the client)."""
        if not self.body_done:
            self.keep_alive = False  # the unread body would be parsed as the next request
        self.down.write(wire.simple_response(status, body, keep_alive=self.keep_alive))
        self._finish(status)

    def _finish(self, status: int) -> None:
        if self.done:
            return
        self.done = True
        ep = self.ep
        if ep is not None:
            self.ep = None
            ep.leave()
        down = self.down
        rm = self.rm
        if rm is not None:
            rm.in_flight -= 1
            seconds = time.monotonic() - self.t0
            rm.record(status, seconds)
            if self.variants is not None:
                _record_variants(rm, self.variants, status, seconds)
        pair = self._pair
        if pair is not None:
            self._pair = None
            pair.primary_end(status, time.monotonic() - self.t0)
        if down._paused & (PAUSE_UPSTREAM | PAUSE_BUFFERED):
            down.resume_reading(PAUSE_UPSTREAM | PAUSE_BUFFERED)
        down.exchange_done(self, close=not self.keep_alive or not self.body_done)

    def client_lost(self) -> None:
        """The client connection closed: stop everything this exchange started."""
        if self.done:
            return
        self.done = True
        if self._connect_task is not None:
            self._connect_task.cancel()
            self._connect_task = None
        conn = self.conn
        if conn is not None:
            self.conn = None
            conn.abort()
        ep = self.ep
        if ep is not None:
            self.ep = None
            ep.leave()
        rm = self.rm
        if rm is not None:
            rm.in_flight -= 1
            rm.client_aborts += 1
        pair = self._pair
        if pair is not None:
            self._pair = None
            pair.comparer.forget(pair, "incomplete")


def _record_variants(
    rm: metrics.RevisionMetrics, variants: list[tuple[str, str]], status: int, seconds: float
) -> None:
    for flag, variant in variants:
        found = metrics.variant_metrics(rm.variants, flag, variant)
        if found is not None:
            found.record(status, seconds)


_NO_TARGETS: list[int] = []
