"""The client side of the builtin proxy: one ``asyncio.Protocol`` per accepted connection.

``BuiltinRouter`` serves ``ClientConnection`` on its listener (and, with ``preview=True``,
on the preview listener). httptools validates and frames requests; each parsed head becomes
an ``exchange.Exchange``, routed at once against the current routing table, and exchanges
run one at a time in arrival order, so keep-alive and pipelining answer in order.

The fast path never asks httptools for individual headers (no ``on_header`` callback): the
connection tracks where each message starts in the byte stream, takes the raw head, and one
regex (``RoutingTable.request_fields``) finds the few fields that matter: hop-by-hop,
framing and forwarding fields, and the headers routing reads. A head with none of the
first three kinds is forwarded as received plus ``wire.forwarding_tail``; any other head
is rebuilt. The one place where the start of the next message cannot be known is after a
chunked request body that ends inside a read with more bytes behind it (pipelining after
a chunked upload): that exchange closes the connection after its response, and the bytes
behind it are not read, as a server may do with any keep-alive connection.

Writes to the client are queued and leave after the event-loop pass (``builtin.batch``).

Backpressure both ways: a full client send buffer pauses reading the upstream response, a
full upstream send buffer (or too much body buffered, or a long pipeline) pauses reading
the client.

An ``Upgrade`` request (WebSocket) is routed like any request and must be a bodiless
HTTP/1.1 GET-like message (CONNECT stays 501). Reading stops after its head; bytes the
client sent behind it wait (never reach the upstream) until the upstream answers 101.
Then the connection becomes a byte relay (``_tunnel``, a ``tunnel.Tunnel``): every read
goes to the upstream as is. Any other answer is an ordinary response after which the
connection closes, so bytes sent early can never be read as a request by either side.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
import typing

import httptools

from changeover.traffic.builtin import batch, exchange, table, upstream, wire
from changeover.traffic.builtin import state as state_mod
from changeover.traffic.builtin import tunnel as tunnel_mod

log = logging.getLogger(__name__)

MAX_PIPELINE = 16  # queued requests per connection before reading pauses
MAX_HEAD = 64 * 1024  # bytes of one request head (nginx: 4 x 8k by default)
FULL_LOG_EVERY = 10.0  # seconds between two "max_connections reached" log lines
LINGER_SECONDS = 2.0  # reading and discarding after an error answer (nginx: lingering_close)
_full_logged = [-FULL_LOG_EVERY]  # when that was last logged (time.monotonic)


class ClientConnection(asyncio.Protocol):
    __slots__ = (
        "_acc",
        "_base",
        "_body_t",
        "_current",
        "_data",
        "_dirty",
        "_head_t",
        "_in_head",
        "_in_msg",
        "_last",
        "_lingering",
        "_lost",
        "_next",
        "_out",
        "_parsing",
        "_paused",
        "_queue",
        "_send_t",
        "_tunnel",
        "client_ip",
        "fwd_tail",
        "http11",
        "idle_ticks",
        "in_feed",
        "loop",
        "parser",
        "preview",
        "state",
        "transport",
        "write_paused",
    )

    def __init__(self, state: state_mod.ProxyState, *, preview: bool = False) -> None:
        self.state = state
        self.preview = preview
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.client_ip = b"unknown"
        self.fwd_tail = wire.forwarding_tail(self.client_ip)
        self.http11 = True
        self.in_feed = False
        self.write_paused = False
        self.idle_ticks = 0
        self._paused = 0  # exchange.PAUSE_* bits
        self._current: exchange.Exchange | None = None
        self._tunnel: tunnel_mod.Tunnel | None = None  # relaying bytes since a 101
        self._parsing: exchange.Exchange | None = None
        self._last: exchange.Exchange | None = None
        self._queue: collections.deque[exchange.Exchange] = collections.deque()
        self._dirty: list[exchange.Exchange] = []
        self._out: list[bytes] = []  # bytes for the client, written after this loop pass
        # Where messages start: ``_base`` is the stream offset of ``_data`` (this read),
        # ``_next`` the offset where the next message starts (-1: unknown), ``_acc`` the
        # bytes of the head being parsed, from its first byte.
        self._data = b""
        self._base = 0
        self._next = 0
        self._acc = b""
        self._in_head = False
        self._in_msg = False
        self._lost = False
        self._lingering = False
        # Since when (loop time; 0: not) a head is being read, the body was last read,
        # our writes have been paused by a client that does not read. The router's sweep
        # checks them (``check_timeouts``): no timer per request.
        self._head_t = 0.0
        self._body_t = 0.0
        self._send_t = 0.0

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = typing.cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and peer:
            self.client_ip = str(peer[0]).encode()
            self.fwd_tail = wire.forwarding_tail(self.client_ip)
        st = self.state
        if len(st.connections) >= st.settings.max_connections:
            self._refuse()
            return
        st.connections.add(self)

    def _refuse(self) -> None:
        """Over ``max_connections``: 503 and close, logged at most every few seconds."""
        self._lost = True
        now = time.monotonic()
        if now - _full_logged[0] >= FULL_LOG_EVERY:
            _full_logged[0] = now
            log.warning(
                "builtin router: %d client connections open (max_connections): "
                "refusing new ones with 503",
                self.state.settings.max_connections,
            )
        self.write(wire.simple_response(503, b"too many connections\n", keep_alive=False))
        self.close()

    def data_received(self, data: bytes) -> None:
        tunnel = self._tunnel
        if tunnel is not None:
            tunnel.relay_up(data)
            return
        if self._lost:
            return  # closing after the exchange in progress (see the module docstring)
        self.idle_ticks = 0
        self._data = data
        if self._in_head:
            acc = self._acc + data
            if len(acc) > MAX_HEAD:
                self._fail(431, b"request header fields too large\n")
                return
            self._acc = acc
        self.in_feed = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            # The parser stops after an upgrade request's head: what follows in this read
            # is held by the exchange until the upstream agrees to switch protocols.
            last = self._last
            if last is not None and last.upgrade and exc.args and isinstance(exc.args[0], int):
                last.hold_early(data[exc.args[0] :])
        except httptools.HttpParserCallbackError:
            log.exception("builtin router: internal error while proxying")
            self._fail(500, b"internal proxy error\n")
        except httptools.HttpParserError:
            self.state.metrics.bad_requests += 1
            self._fail(400, b"malformed request\n")
        finally:
            self.in_feed = False
        self._base += len(data)
        if self._in_head and not self._lost and len(self._acc) > MAX_HEAD:
            self._fail(431, b"request header fields too large\n")
        dirty = self._dirty
        if dirty:
            for ex in dirty:
                ex.flush_up()
            dirty.clear()

    def connection_lost(self, exc: Exception | None) -> None:
        self.state.connections.discard(self)
        self._out.clear()
        tunnel, self._tunnel = self._tunnel, None
        if tunnel is not None:
            tunnel.end()  # the upstream gets what the client sent, then a close
        current, self._current = self._current, None
        if current is not None:
            current.client_lost()
        self._queue.clear()

    def pause_writing(self) -> None:
        self.write_paused = True
        self._send_t = self.loop.time()
        conn = self._reading()
        if conn is not None:
            conn.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        self._send_t = 0.0
        conn = self._reading()
        if conn is not None:
            conn.resume_reading()

    def _reading(self) -> upstream.UpstreamConnection | None:
        """The upstream connection whose bytes are on their way to this client."""
        tunnel = self._tunnel
        if tunnel is not None:
            return tunnel.conn
        cur = self._current
        return cur.conn if cur is not None else None

    # -- httptools callbacks ------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._in_msg = True
        self._in_head = True
        self._head_t = self.loop.time()
        pos = self._next - self._base
        if self._next < 0 or pos < 0 or pos > len(self._data):
            # After a chunked body that ended inside this read: where this message starts
            # is unknown. Finish what is in progress, then close.
            self._lost = True
            self._in_head = False
            last = self._last
            if last is not None and not last.done:
                last.keep_alive = False
            else:
                self.close()
            return
        self._acc = self._data[pos:] if pos else self._data

    def on_headers_complete(self) -> None:
        if self._lost:
            return
        self._in_head = False
        self._head_t = 0.0
        acc = self._acc
        self._acc = b""
        end = acc.find(b"\r\n\r\n") + 4
        if end > MAX_HEAD:
            self._fail(431, b"request header fields too large\n")
            return
        head_end = self._base + len(self._data) - (len(acc) - end)
        head = acc[:end]
        parser = self.parser
        # httptools has validated the request line; reading its version off the head
        # spares building a version string per request.
        http11 = self.http11 = head.startswith(b" HTTP/1.1\r\n", head.find(b"\r\n") - 9)
        if not http11 and not head.startswith(b" HTTP/1.0\r\n", head.find(b"\r\n") - 9):
            # HTTP/0.9 (llhttp then reads field lines nginx would not) or 2.0 in HTTP/1
            # syntax: where a request ends is not agreed on, so none is forwarded.
            self.state.metrics.bad_requests += 1
            self._fail(505, b"only HTTP/1.0 and HTTP/1.1 are supported\n")
            return
        method = parser.get_method()
        tbl = self.state.table
        rebuild = not http11
        chunked = expect = False
        codings: list[bytes] | None = None
        length = -1  # no content-length field
        hd: dict[bytes, bytes] | None = {} if tbl.needs_headers or tbl.mirrors else None
        for _, name, value in tbl.request_fields.findall(head):
            lname = name.lower()
            if lname in wire.HOP_BY_HOP:
                rebuild = True
                if lname == b"transfer-encoding":
                    codings = [value] if codings is None else [*codings, value]
                elif lname == b"expect":
                    expect = value.strip().lower() == b"100-continue"
            elif lname == b"content-length":
                length = int(value.strip() or b"0")
            elif lname in _FORWARDING or lname in tbl.flag_headers:
                rebuild = True  # ours to set: the client's copy is dropped
            if hd is not None and lname not in hd:
                hd[lname] = value.rstrip(b" \t")
        if codings is not None:
            # llhttp refuses a request whose final coding is not chunked; this is the same
            # reading of the same fields, so the body is framed as the parser frames it.
            chunked = wire.final_coding_chunked(codings)
            length = -1
        self._next = -1 if chunked else head_end + max(length, 0)
        keep_alive = True  # an HTTP/1.1 head without a Connection field (not rebuilt)
        if rebuild:
            start, headers = wire.parse_head(head)
            extra_hop: frozenset[bytes] = frozenset()
            for name, value in headers:
                if name == b"connection":
                    extra_hop = extra_hop | wire.connection_tokens(value)
            # "close" wins over "keep-alive" (llhttp keeps an HTTP/1.0 connection open
            # when both are listed; nginx closes it, and so must we: nothing after a
            # request that says close may be read as a request).
            keep_alive = parser.should_keep_alive() and b"close" not in extra_hop
            url = start.split(b" ", 2)[1]
            # Re-framed from what the parser read, never from the fields as sent.
            if chunked:
                framing = wire.CHUNKED
            elif length >= 0:
                framing = b"content-length: %d\r\n" % length
            else:
                framing = b""
            if tbl.flags:
                extra_hop = extra_hop | tbl.flag_headers
            up_head = wire.request_head(
                method, url, headers, client_ip=self.client_ip, framing=framing, extra_hop=extra_hop
            )
        else:
            up_head = head[:-2] + self.fwd_tail
        variants: list[tuple[str, str]] | None = None
        if tbl.flags and hd is not None:
            variants = _variants(tbl, hd)
            up_head = up_head[:-2] + _flag_lines(tbl, variants) + b"\r\n"
        ex = exchange.Exchange(
            self,
            method,
            head,
            up_head,
            keep_alive,
            chunked,
            expect,
            chunked or length > 0,
        )
        ex.variants = variants
        if not ex.body_done:
            self._body_t = self.loop.time()
        # llhttp refuses space before a colon: "\r\nhost:" in any case finds every Host.
        no_host = b"\r\nHost:" not in head and b"\r\nhost:" not in head
        if http11 and no_host and b"\r\nhost:" not in head.lower():
            # RFC 9112 §3.2 (and nginx): 400 for an HTTP/1.1 request without Host, in its
            # turn in the pipeline; then the connection closes (_lost: nothing after it is
            # read). Two spellings tried first: the common case costs one scan.
            self.state.metrics.bad_requests += 1
            ex.local = _bad_host
            ex.keep_alive = False
            self._lost = True
        else:
            self._route(ex, tbl, hd, as_received=not rebuild)
        # An upgrade needs Upgrade and Connection fields (so a rebuilt head), or CONNECT.
        if (rebuild or method == b"CONNECT") and parser.should_upgrade():
            tunnel_mod.upgrade_request(self, ex, method, head, chunked or length > 0)
        self._parsing = self._last = ex
        if self._current is None:
            self._current = ex
            ex.start()
        else:
            self._queue.append(ex)
            if len(self._queue) >= MAX_PIPELINE:
                self.pause_reading(exchange.PAUSE_PIPELINE)

    def on_body(self, body: bytes) -> None:
        self._body_t = self.loop.time()
        ex = self._parsing
        if ex is not None:
            ex.feed_body(body)

    def on_message_complete(self) -> None:
        self._in_msg = False
        self._body_t = 0.0
        ex, self._parsing = self._parsing, None
        if ex is not None:
            ex.end_body()

    def start_tunnel(
        self,
        ex: exchange.Exchange,
        conn: upstream.UpstreamConnection,
        base: bytes,
        protocol: bytes,
        rest: bytes,
        early: bytes,
    ) -> None:
        """The upstream answered 101 (``tunnel.Tunnel.open`` says what the arguments
        are): from now on every read is relayed to it as is."""
        tunnel = self._tunnel = tunnel_mod.Tunnel(self, ex, conn)
        tunnel.open(base, protocol, rest, early)
        self._head_t = self._body_t = 0.0
        self.resume_reading(exchange.PAUSE_UPGRADE)

    # -- routing ----------------------------------------------------------------------------

    def _route(
        self,
        ex: exchange.Exchange,
        tbl: table.RoutingTable,
        hd: dict[bytes, bytes] | None,
        *,
        as_received: bool,
    ) -> None:
        st = self.state
        if self.preview:
            ex.prepare(tbl.preview, None)
            return
        retry_after = tbl.maintenance_retry_after
        if retry_after is not None:
            st.metrics.maintenance += 1
            ex.local = lambda keep_alive: wire.maintenance_response(
                retry_after, keep_alive=keep_alive
            )
            return
        revision: int | None = None
        mirror_to: list[int] | None = None
        if hd is not None:
            cookies = table.parse_cookies(hd.get(b"cookie")) if tbl.needs_cookies else _NONE
            if tbl.needs_headers:
                revision = tbl.match(hd, cookies)
            if tbl.mirrors:
                mirror_to = tbl.mirror_targets(hd, cookies)
        if revision is None:
            wheel = tbl.wheel
            if wheel:
                slot = st.slot
                st.slot = slot + 1 if slot < 99 else 0
                revision = wheel[slot]
        ex.prepare(revision, mirror_to, as_received=as_received)

    # -- used by exchanges --------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Queue ``data`` for the client; it is written after this loop pass."""
        out = self._out
        if not out:
            self.state.batch.queue(self)
        out.append(data)

    def write_many(self, parts: list[bytes]) -> None:
        """Queue several pieces for the client (one response's head and body pieces)."""
        out = self._out
        if not out:
            self.state.batch.queue(self)
        out += parts

    def flush_out(self) -> None:
        """Hand the queued bytes to the transport (one ``write``)."""
        if self._out:
            batch.write_out(self.transport, self._out)

    def close(self, *, linger: bool = True) -> None:
        """Close after what was written so far has gone out. After an error answer the
        client may still be sending: closing with its bytes unread would reset the
        connection and can destroy the answer in flight, so the write side is shut and
        what arrives is discarded until the client closes or ``LINGER_SECONDS`` pass."""
        self.flush_out()
        transport = self.transport
        if transport is None:
            return
        linger = linger and self._lost and not self._lingering and not transport.is_closing()
        if linger and transport.can_write_eof():
            self._lingering = True
            transport.write_eof()
            if self._paused:
                self._paused = 0
                transport.resume_reading()
            self.loop.call_later(LINGER_SECONDS, transport.close)
            return
        transport.close()

    def abort(self) -> None:
        self._out.clear()
        if self.transport is not None:
            self.transport.abort()

    def mark_dirty(self, ex: exchange.Exchange) -> None:
        if not self.in_feed:
            ex.flush_up()
        elif ex not in self._dirty:
            self._dirty.append(ex)

    def pause_reading(self, reason: int) -> None:
        was = self._paused
        self._paused = was | reason
        if not was and self.transport is not None:
            self.transport.pause_reading()

    def resume_reading(self, reasons: int) -> None:
        was = self._paused
        if not was & reasons:
            return
        self._paused = was & ~reasons
        if not self._paused and self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()
            # The time we did not read is not the client's: its deadlines restart.
            if self._head_t or self._body_t:
                now = self.loop.time()
                self._head_t = now if self._head_t else 0.0
                self._body_t = now if self._body_t else 0.0

    def exchange_done(self, ex: exchange.Exchange, *, close: bool) -> None:
        if self._current is ex:
            self._current = None
        if close:
            self._queue.clear()
            self.close()
            return
        self.idle_ticks = 0
        if self._queue:
            nxt = self._queue.popleft()
            self.resume_reading(exchange.PAUSE_PIPELINE)
            self._current = nxt
            nxt.start()

    def _fail(self, status: int, body: bytes) -> None:
        """A request could not be parsed: answer it if nothing else is in progress."""
        self._lost = True
        current = self._current
        if current is None:
            self.write(wire.simple_response(status, body, keep_alive=False))
        else:
            self._current = None
            current.client_lost()
        self._queue.clear()
        self.close()

    def check_timeouts(self, now: float) -> None:
        """Called by the router's sweep: the response timeout of the exchange in progress,
        the head and body deadlines of the request being read, the send timeout."""
        st = self.state.settings
        cur = self._current
        if cur is not None:
            cur.check_timeout(now, st.response_timeout)
        if self._lost:
            return
        if self._send_t and now - self._send_t > st.send_timeout:
            self.abort()  # the client does not read: nothing more can reach it
            return
        if self._paused:
            return  # not reading on purpose: whatever is half-read waits for us
        if self._head_t and self._current is None and now - self._head_t > st.header_timeout:
            self._stalled(b"header")
        elif self._body_t and now - self._body_t > st.body_timeout:
            self._stalled(b"body")

    def _stalled(self, what: bytes) -> None:
        """The client stopped sending a request: 408 (as nginx answers) if nothing of
        a response went out yet, and close; the upstream side of it is aborted."""
        self._lost = True
        cur = self._current
        answered = cur is not None and cur.responded
        if cur is not None:
            self._current = None
            cur.client_lost()
        self._queue.clear()
        if not answered:
            self._out.clear()
            msg = b"request " + what + b" not received in time\n"
            self.write(wire.simple_response(408, msg, keep_alive=False))
        self.close()

    @property
    def current(self) -> exchange.Exchange | None:
        return self._current

    def idle(self) -> bool:
        return self._current is None and not self._queue


_FORWARDING = frozenset(
    {b"x-forwarded-for", b"x-forwarded-proto", b"forwarded", b"x-changeover-shadow"}
)
_NONE: dict[bytes, bytes] = {}


def _bad_host(keep_alive: bool) -> bytes:
    return wire.simple_response(400, b"an HTTP/1.1 request needs a Host field\n", keep_alive=False)


def _variants(tbl: table.RoutingTable, headers: dict[bytes, bytes]) -> list[tuple[str, str]]:
    """(flag, variant) of every flag this router evaluates, for this request."""
    cookies = table.parse_cookies(headers.get(b"cookie")) if tbl.needs_cookies else {}
    return [(f.name, f.variant(headers, cookies)) for f in tbl.flags]


def _flag_lines(tbl: table.RoutingTable, variants: list[tuple[str, str]]) -> bytes:
    """The variants as header lines for upstream (``tbl.flags``' order)."""
    return b"".join(
        [
            f.header + b": " + v.encode() + b"\r\n"
            for f, (_, v) in zip(tbl.flags, variants, strict=True)
        ]
    )
