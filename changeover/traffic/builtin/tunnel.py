"""Upgraded (WebSocket) connections: the upgrade request, then bytes relayed both ways.

``upgrade_request`` checks an ``Upgrade`` request's framing and rebuilds its head for the
upstream (``exchange.Exchange.want_upgrade``). When the upstream answers 101,
``exchange.Exchange.on_upgrade`` answers the client's upgrade request with the upstream's
101; ``proxy.ClientConnection.start_tunnel`` then hands both connections to a ``Tunnel``,
which from there on is the upstream connection's sink (``upstream.Sink``) and gets every
client read (``relay_up``). Bytes go through as they come, unbuffered, until either side
closes or the router ends the tunnel (``close``: a drain's grace period is over).

A tunnel holds its endpoint (``ep.in_flight``) while open, so a replica's drain waits for
it; per revision ``upgraded_open`` counts the open ones and ``upgraded_seconds`` how long
each lasted.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from changeover.traffic.builtin import exchange, metrics, pool, upstream, wire

if TYPE_CHECKING:
    from changeover.traffic.builtin import proxy


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
    __slots__ = ("conn", "done", "down", "ep", "revision", "rm", "t_open")

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
        extra = st.rev_headers.get(self.revision) or st.revision_header(self.revision)
        extra += b"connection: upgrade\r\nupgrade: " + protocol + b"\r\n"
        down.write(base + extra + b"\r\n")
        if rest:
            down.write(rest)
        conn = self.conn
        if early and conn is not None:
            conn.write(early)

    # -- client side ----------------------------------------------------------------------

    def relay_up(self, data: bytes) -> None:
        """Bytes from the client, to the upstream as they came."""
        conn = self.conn
        if conn is not None:
            conn.write(data)

    def close(self) -> None:
        """The router ends the tunnel (its drain grace period is over): both sides close
        after what was already read has been written."""
        if not self.done:
            rm = self.rm
            if rm is not None:
                rm.upgraded_drained += 1
            self.end()

    def end(self) -> None:
        """Either side closed (or ``close``): close the other once written to."""
        if self.done:
            return
        self.done = True
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
        self.down.write(data)

    def on_body(self, data: bytes) -> None:
        self.down.write(data)

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
