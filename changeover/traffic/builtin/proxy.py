"""The client side of the builtin proxy: one ``asyncio.Protocol`` per accepted connection.

``BuiltinRouter`` serves ``ClientConnection`` on its listener (and, with ``preview=True``,
on the preview listener). httptools parses requests; each parsed head becomes an
``exchange.Exchange``, routed at once against the current routing table, and exchanges
run one at a time in arrival order, so keep-alive and pipelining answer in order.

Backpressure both ways: a full client send buffer pauses reading the upstream response, a
full upstream send buffer (or too much body buffered, or a long pipeline) pauses reading
the client.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import typing

import httptools

from changeover.traffic.builtin import exchange, table, wire
from changeover.traffic.builtin import state as state_mod

log = logging.getLogger(__name__)

MAX_PIPELINE = 16  # queued requests per connection before reading pauses


class ClientConnection(asyncio.Protocol):
    __slots__ = (
        "_current",
        "_dirty",
        "_headers",
        "_parsing",
        "_paused",
        "_queue",
        "_url",
        "client_ip",
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
        self.http11 = True
        self.in_feed = False
        self.write_paused = False
        self.idle_ticks = 0
        self._paused = 0  # exchange.PAUSE_* bits
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._current: exchange.Exchange | None = None
        self._parsing: exchange.Exchange | None = None
        self._queue: collections.deque[exchange.Exchange] = collections.deque()
        self._dirty: list[exchange.Exchange] = []

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = typing.cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and peer:
            self.client_ip = str(peer[0]).encode()
        self.state.connections.add(self)

    def data_received(self, data: bytes) -> None:
        self.idle_ticks = 0
        self.in_feed = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass  # the exchange already answered 501 and closes the connection
        except httptools.HttpParserCallbackError:
            log.exception("builtin router: internal error while proxying")
            self._fail(500, b"internal proxy error\n")
        except httptools.HttpParserError:
            self.state.metrics.bad_requests += 1
            self._fail(400, b"malformed request\n")
        finally:
            self.in_feed = False
        dirty = self._dirty
        if dirty:
            for ex in dirty:
                ex.flush_up()
            dirty.clear()

    def connection_lost(self, exc: Exception | None) -> None:
        self.state.connections.discard(self)
        current, self._current = self._current, None
        if current is not None:
            current.client_lost()
        self._queue.clear()

    def pause_writing(self) -> None:
        self.write_paused = True
        cur = self._current
        if cur is not None and cur.conn is not None:
            cur.conn.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        cur = self._current
        if cur is not None and cur.conn is not None:
            cur.conn.resume_reading()

    # -- httptools callbacks ------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        headers = self._headers
        self.http11 = parser.get_http_version() == "1.1"
        chunked = expect = False
        extra_hop: frozenset[bytes] = frozenset()
        for name, value in headers:
            if name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"expect":
                expect = value.lower() == b"100-continue"
            elif name == b"connection":
                extra_hop = wire.connection_tokens(value)
        method = parser.get_method()
        head = wire.request_head(
            method,
            self._url,
            headers,
            client_ip=self.client_ip,
            framing=wire.CHUNKED if chunked else b"",
            extra_hop=extra_hop,
        )
        ex = exchange.Exchange(
            self,
            method=method,
            url=self._url,
            headers=headers,
            head=head,
            keep_alive=parser.should_keep_alive(),
            chunked_in=chunked,
            expect_continue=expect,
        )
        self._route(ex)
        if parser.should_upgrade():
            # WebSocket and CONNECT tunnels are not proxied (yet): say so and close.
            ex.local = _not_implemented
        self._parsing = ex
        if self._current is None:
            self._current = ex
            ex.start()
        else:
            self._queue.append(ex)
            if len(self._queue) >= MAX_PIPELINE:
                self.pause_reading(exchange.PAUSE_PIPELINE)

    def on_body(self, body: bytes) -> None:
        ex = self._parsing
        if ex is not None:
            ex.feed_body(body)

    def on_message_complete(self) -> None:
        ex, self._parsing = self._parsing, None
        if ex is not None:
            ex.end_body()

    # -- routing ----------------------------------------------------------------------------

    def _route(self, ex: exchange.Exchange) -> None:
        st = self.state
        tbl = st.table  # read once: this request sees one consistent table
        if self.preview:
            ex.prepare(tbl.preview, [])
            return
        retry_after = tbl.maintenance_retry_after
        if retry_after is not None:
            st.metrics.maintenance += 1
            ex.local = lambda keep_alive: wire.maintenance_response(
                retry_after, keep_alive=keep_alive
            )
            return
        revision: int | None = None
        mirror_to: list[int] = []
        if tbl.needs_headers or tbl.mirrors:
            hd = table.header_dict(ex.headers)
            cookies = table.parse_cookies(hd.get(b"cookie")) if tbl.needs_cookies else {}
            revision = tbl.match(hd, cookies)
            if tbl.mirrors:
                mirror_to = tbl.mirror_targets(hd, cookies)
        if revision is None:
            wheel = tbl.wheel
            if wheel:
                slot = st.slot
                st.slot = slot + 1 if slot < 99 else 0
                revision = wheel[slot]
        ex.prepare(revision, mirror_to)

    # -- used by exchanges --------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def abort(self) -> None:
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

    def exchange_done(self, ex: exchange.Exchange, *, close: bool) -> None:
        if self._current is ex:
            self._current = None
        if close:
            self._queue.clear()
            if self.transport is not None:
                self.transport.close()  # flushes what was written first
            return
        self.idle_ticks = 0
        if self._queue:
            nxt = self._queue.popleft()
            self.resume_reading(exchange.PAUSE_PIPELINE)
            self._current = nxt
            nxt.start()

    def _fail(self, status: int, body: bytes) -> None:
        """A request could not be parsed: answer it if nothing else is in progress."""
        current = self._current
        if current is None:
            self.write(wire.simple_response(status, body, keep_alive=False))
        else:
            self._current = None
            current.client_lost()
        self._queue.clear()
        if self.transport is not None:
            self.transport.close()

    def idle(self) -> bool:
        return self._current is None and not self._queue


def _not_implemented(keep_alive: bool) -> bytes:
    return wire.simple_response(501, b"protocol upgrades are not supported\n", keep_alive=False)
