"""Upgraded (WebSocket) connections: the upgrade request, then bytes relayed both ways.

``upgrade_request`` checks an ``Upgrade`` request's framing and rebuilds its head for the
upstream (``exchange.Exchange.want_upgrade``). When the upstream answers 101,
``exchange.Exchange.on_upgrade`` answers the client's upgrade request with the upstream's
101; ``proxy.ClientConnection.start_tunnel`` then hands both connections to a ``Tunnel``,
which from there on is the upstream connection's sink (``upstream.Sink``) and gets every
client read (``relay_up``). Bytes go through as they come, unbuffered, until either side
closes or the router ends the tunnel (``close``: a drain's grace period is over, the
router stops, or ``tick`` found it idle). A WebSocket's frame headers are followed each
way (``websocket_frames``) so that the router ends it with close frames between frames.

A tunnel holds its endpoint (``ep.in_flight``) while open, so a replica's drain waits for
it; per revision ``upgraded_open`` counts the open ones and ``upgraded_seconds`` how long
each lasted.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from changeover.traffic.builtin import exchange, metrics, pool, upstream, websocket_frames, wire

if TYPE_CHECKING:
    from changeover.traffic.builtin import proxy

GOING_AWAY = websocket_frames.GOING_AWAY
# Seconds from the router's close frames to closing the connections when the client does
# not answer with its own close frame (nor close) sooner.
CLOSE_GRACE = 5.0


def upgrade_request(
    down: proxy.ClientConnection, ex: exchange.Exchange, method: bytes, head: bytes, body: bool
) -> None:
    """An ``Upgrade`` request: proxied when its framing is unambiguous, else refused.
    Either way nothing after it on this connection is parsed as HTTP (the parser has
    stopped), and reading pauses until the upstream has answered."""
    ex.keep_alive = False
    down.pause_reading(exchange.PAUSE_UPGRADE)
    if ex.local is not None:
        return  # already answered (maintenance, missing Host)
    if method == b"CONNECT":
        ex.local = _not_implemented  # a forward proxy's tunnel: not a reverse proxy's job
        return
    if not down.http11 or body:
        # RFC 9110 §7.8: no upgrade over HTTP/1.0; a body before the switch would put
        # bytes of unknown meaning on both sides of it (request smuggling).
        down.state.metrics.bad_requests += 1
        ex.local = _bad_upgrade
        return
    start, headers = wire.parse_head(head)
    protocols = b", ".join([v for n, v in headers if n == b"upgrade"])
    extra_hop: frozenset[bytes] = frozenset()
    for name, value in headers:
        if name == b"connection":
            extra_hop = extra_hop | wire.connection_tokens(value)
    up_head = wire.request_head(
        method,
        start.split(b" ", 2)[1],
        headers,
        client_ip=down.client_ip,
        framing=b"",
        extra_hop=extra_hop,
        extra=b"connection: upgrade\r\nupgrade: " + protocols + b"\r\n",
    )
    ex.want_upgrade(up_head)


def _not_implemented(keep_alive: bool) -> bytes:
    return wire.simple_response(501, b"CONNECT tunnels are not supported\n", keep_alive=False)


def _bad_upgrade(keep_alive: bool) -> bytes:
    return wire.simple_response(
        400, b"an upgrade request must be HTTP/1.1 without a body\n", keep_alive=False
    )


class Tunnel:
    __slots__ = (
        "_closing",
        "_down_done",
        "_grace",
        "_up_done",
        "conn",
        "done",
        "down",
        "down_frames",
        "ep",
        "idle_ticks",
        "revision",
        "rm",
        "t_open",
        "up_frames",
    )

    def __init__(
        self,
        down: proxy.ClientConnection,
        ex: exchange.Exchange,
        conn: upstream.UpstreamConnection,
    ) -> None:
        """Take over ``ex``'s upstream connection, endpoint and revision: as a request,
        ``ex`` ends here with its 101. ``open`` then answers the client."""
        self.down = down
        self.conn: upstream.UpstreamConnection | None = conn
        self.ep: pool.EndpointState | None = ex.ep
        self.rm: metrics.RevisionMetrics | None = ex.rm
        self.revision = ex.revision
        self.t_open = now = time.monotonic()  # the clock of ex.t0
        self.done = False
        self.idle_ticks = 0  # sweeps (one a second) since bytes last went either way
        # WebSocket framing, one tracker per direction (None: another protocol).
        self.up_frames: websocket_frames.FrameTracker | None = None
        self.down_frames: websocket_frames.FrameTracker | None = None
        # Ending with close frames (``close``): what each side still needs from us.
        self._closing = b""  # the close reason while ending, else empty
        self._up_done = False  # the upstream has its close frame (ours or the client's)
        self._down_done = False  # the client has its close frame (ours or the server's)
        self._grace: asyncio.TimerHandle | None = None
        ex.ep = None
        ex.conn = None
        ex.done = True  # it never reaches Exchange._finish
        conn.sink = self
        rm = self.rm
        if rm is not None:
            rm.ttfb.observe(now - ex.t0)
            rm.record(101, now - ex.t0)
            rm.in_flight -= 1
            rm.upgraded += 1
            rm.upgraded_open += 1
        down.state.tunnels.add(self)

    def open(self, base: bytes, protocol: bytes, rest: bytes, early: bytes) -> None:
        """Send the client the 101 (``base``: the upstream's head as clients get it, no
        final CRLF) and ``rest`` (what followed it in the same read, already the new
        protocol); send the upstream ``early``, what the client sent behind its request."""
        down = self.down
        st = down.state
        if protocol.lower() == b"websocket":
            self.up_frames = websocket_frames.FrameTracker()
            self.down_frames = websocket_frames.FrameTracker()
        extra = st.rev_headers.get(self.revision) or st.revision_header(self.revision)
        extra += b"connection: upgrade\r\nupgrade: " + protocol + b"\r\n"
        down.write(base + extra + b"\r\n")
        if rest:
            self.on_raw(rest)
        if early:
            self.relay_up(early)

    # -- client side ----------------------------------------------------------------------

    def relay_up(self, data: bytes) -> None:
        """Bytes from the client, to the upstream as they came."""
        self.idle_ticks = 0
        conn = self.conn
        if conn is None:
            return
        frames = self.up_frames
        if frames is None:
            conn.write(data)
        elif not self._closing:
            frames.feed(data)
            conn.write(data)
        else:
            self._closing_up(conn, frames, data)

    def close(self, reason: bytes = b"draining", *, drained: bool = True) -> None:
        """The router ends the tunnel (a drain's grace period is over, or it sat idle).

        A WebSocket gets a close frame (1001 Going Away, ``reason``) each way at the next
        frame boundary; bytes that follow ours are not relayed; the tunnel ends when the
        client answers with its own close frame, either side closes, or ``CLOSE_GRACE``
        seconds pass. Any other protocol (or a stream that broke WebSocket framing) is
        closed at once, after what was already read has been written."""
        if self.done or self._closing:
            return
        rm = self.rm
        if rm is not None and drained:
            rm.upgraded_drained += 1
        up = self.up_frames
        down = self.down_frames
        conn = self.conn
        if up is None or down is None or up.broken or down.broken or conn is None:
            self.end()
            return
        self._closing = reason
        self._grace = self.down.loop.call_later(CLOSE_GRACE, self.end)
        # A side whose peer's close frame went through already needs none from us.
        self._up_done = up.closed and up.at_boundary()
        self._down_done = down.closed and down.at_boundary()
        if not self._up_done and up.at_boundary():
            self._close_up(conn)
        if not self._down_done and down.at_boundary():
            self._close_down()
        self._check_closed()

    def tick(self, idle_limit: float) -> None:
        """Called once a second by the router's sweep: close after ``idle_limit`` seconds
        without a byte either way (at most a second more: the sweep's granularity)."""
        self.idle_ticks += 1
        if self.idle_ticks > idle_limit and not self.done and not self._closing:
            rm = self.rm
            if rm is not None:
                rm.upgraded_idle += 1
            self.close(b"idle timeout", drained=False)

    def end(self) -> None:
        """Either side closed (or ``close``): close the other once written to."""
        if self.done:
            return
        self.done = True
        grace = self._grace
        if grace is not None:
            self._grace = None
            grace.cancel()
        self.down.state.tunnels.discard(self)
        conn = self.conn
        if conn is not None:
            self.conn = None
            conn.close()
        ep = self.ep
        if ep is not None:
            self.ep = None
            ep.leave()
        rm = self.rm
        if rm is not None:
            rm.upgraded_open -= 1
            rm.upgraded_seconds.observe(time.monotonic() - self.t_open)
        self.down.close()

    # -- ending with close frames ------------------------------------------------------------

    def _close_up(self, conn: upstream.UpstreamConnection) -> None:
        self._up_done = True
        conn.write(websocket_frames.close_frame(GOING_AWAY, self._closing, mask=True))

    def _close_down(self) -> None:
        self._down_done = True
        self.down.write(websocket_frames.close_frame(GOING_AWAY, self._closing))

    def _closing_up(
        self,
        conn: upstream.UpstreamConnection,
        frames: websocket_frames.FrameTracker,
        data: bytes,
    ) -> None:
        """A client read while ending: relayed up to the frame boundary where our close
        frame goes (unless the upstream has one), then only watched for the client's."""
        if not self._up_done:
            k = frames.until_boundary(data)
            if k < 0:
                conn.write(data)
                return
            if k:
                conn.write(data[:k])
            data = data[k:]
            if frames.closed:  # the client's own close frame ended right there
                self._up_done = True
            else:
                self._close_up(conn)
        frames.feed(data)
        self._check_closed()

    def _closing_down(self, frames: websocket_frames.FrameTracker, data: bytes) -> None:
        """An upstream read while ending: the mirror image of ``_closing_up``."""
        if not self._down_done:
            k = frames.until_boundary(data)
            if k < 0:
                self.down.write(data)
                return
            if k:
                self.down.write(data[:k])
            data = data[k:]
            if frames.closed:
                self._down_done = True
            else:
                self._close_down()
        frames.feed(data)
        self._check_closed()

    def _check_closed(self) -> None:
        """The client has our close frame (or the server's) and answered with its own:
        the closing handshake is complete on the client's side, so the tunnel ends."""
        up = self.up_frames
        down = self.down_frames
        if up is None or down is None or up.broken or down.broken:
            self.end()  # no frames to wait for any more
        elif self._down_done and up.closed and up.at_boundary():
            self.end()

    # -- upstream side (upstream.Sink) ------------------------------------------------------

    def on_head(
        self,
        conn: upstream.UpstreamConnection,
        status: int,
        info: upstream.ResponseHead,
        framing: int,
    ) -> None:
        """Never called: the upstream connection parses no more HTTP after a 101."""

    def on_raw(self, data: bytes) -> None:
        self.idle_ticks = 0
        frames = self.down_frames
        if frames is None:
            self.down.write(data)
        elif not self._closing:
            frames.feed(data)
            self.down.write(data)
        else:
            self._closing_down(frames, data)

    def on_body(self, data: bytes) -> None:
        self.on_raw(data)

    def flush(self) -> None:
        """Nothing to do: ``on_raw`` queued the bytes on the client connection."""

    def on_complete(self, conn: upstream.UpstreamConnection, keep_alive: bool) -> None:
        self.end()

    def on_lost(self, conn: upstream.UpstreamConnection, bad_response: bool) -> None:
        self.end()  # the upstream closed: so does the client, once written to

    def pause_source(self) -> None:
        self.down.pause_reading(exchange.PAUSE_UPSTREAM)

    def resume_source(self) -> None:
        self.down.resume_reading(exchange.PAUSE_UPSTREAM)
