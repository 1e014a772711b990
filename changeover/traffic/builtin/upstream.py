"""One keep-alive connection from the proxy to a backend replica (an ``asyncio.Protocol``).

A connection is either idle in its ``pool.EndpointState`` or bound to a ``Sink``: the
client-side exchange (``builtin.exchange``) or a mirror copy (``builtin.mirror``). It parses
the response with httptools and hands the sink the head, each body piece as it arrives
(that is what keeps LLM token streams unbuffered), and the end. The sink decides whether
the connection goes back to the pool.

Two response shapes need help beyond httptools: a response to HEAD carries no body even
with a content-length (httptools cannot be told, so the exchange ends at the head and the
connection is not reused), and a close-delimited body ends at EOF, which httptools never
reports (so ``connection_lost`` completes it).
"""

from __future__ import annotations

import asyncio
import typing
from typing import Protocol

import httptools

from changeover.traffic.builtin import pool

# How the response body is framed: decides client framing and the end of the message.
LENGTH, CHUNKED, CLOSE, NO_BODY = range(4)


class Sink(Protocol):
    def on_head(
        self,
        conn: UpstreamConnection,
        status: int,
        reason: bytes,
        headers: list[tuple[bytes, bytes]],
        framing: int,
    ) -> None: ...

    def on_body(self, data: bytes) -> None: ...

    def on_complete(self, conn: UpstreamConnection, keep_alive: bool) -> None: ...

    def on_lost(self, conn: UpstreamConnection, bad_response: bool) -> None:
        """The connection ended (or sent garbage) before the response completed."""

    def flush(self) -> None:
        """Called after each read: write what the callbacks collected in one go."""

    def pause_source(self) -> None:
        """The upstream socket's send buffer is full: stop reading the request body."""

    def resume_source(self) -> None: ...


class UpstreamConnection(asyncio.Protocol):
    __slots__ = (
        "_framing",
        "_head_only",
        "_headers",
        "_in_body",
        "_informational",
        "_reason",
        "closed",
        "ep",
        "got_bytes",
        "idle_ticks",
        "parser",
        "reads_paused",
        "sink",
        "transport",
    )

    def __init__(self, ep: pool.EndpointState) -> None:
        self.ep = ep
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.sink: Sink | None = None
        self.idle_ticks = 0
        self.closed = False
        self.got_bytes = False  # any response byte since bind: a failure is then not a retry
        self.reads_paused = False
        self._head_only = False
        self._informational = False
        self._in_body = False
        self._headers: list[tuple[bytes, bytes]] = []
        self._reason = b""
        self._framing = NO_BODY

    # -- used by the pool and the sinks ------------------------------------------------

    def usable(self) -> bool:
        t = self.transport
        return not self.closed and self.sink is None and t is not None and not t.is_closing()

    def bind(self, sink: Sink, *, head_only: bool) -> None:
        self.sink = sink
        self.got_bytes = False
        self._head_only = head_only

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def close(self) -> None:
        self.sink = None
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.sink = None
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def pause_reading(self) -> None:
        if not self.reads_paused and self.transport is not None:
            self.reads_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.reads_paused and self.transport is not None:
            self.reads_paused = False
            self.transport.resume_reading()

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = typing.cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.sink is None:
            # Bytes on an idle connection break HTTP framing: never reuse it.
            self.close()
            return
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            sink = self.sink
            self.abort()
            if sink is not None:
                sink.on_lost(self, True)
            return
        sink = self.sink
        if sink is not None:
            sink.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        sink = self.sink
        if sink is None:
            self.ep.forget(self)
            return
        self.sink = None
        if self._framing == CLOSE and self._in_body:
            sink.on_complete(self, False)  # a close-delimited body ends here
        else:
            sink.on_lost(self, False)

    def pause_writing(self) -> None:
        if self.sink is not None:
            self.sink.pause_source()

    def resume_writing(self) -> None:
        if self.sink is not None:
            self.sink.resume_source()

    # -- httptools callbacks ------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._headers = []
        self._reason = b""
        self._framing = NO_BODY
        self._in_body = False

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:
            # 1xx (e.g. an upstream's own 100 Continue): not forwarded; the final answer
            # follows on the same connection.
            self._informational = True
            return
        headers = self._headers
        framing = CLOSE
        if self._head_only or status in (204, 304):
            framing = NO_BODY
        else:
            for name, value in headers:
                if name == b"transfer-encoding" and b"chunked" in value.lower():
                    framing = CHUNKED
                    break
                if name == b"content-length":
                    framing = LENGTH
        self._framing = framing
        self._in_body = True
        sink = self.sink
        if sink is None:
            return
        sink.on_head(self, status, self._reason, headers, framing)
        if self._head_only and self.sink is sink:
            # httptools would wait for a body the HEAD response does not have.
            self.sink = None
            sink.on_complete(self, False)

    def on_body(self, body: bytes) -> None:
        sink = self.sink
        if sink is not None:
            sink.on_body(body)

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            return
        sink = self.sink
        if sink is None:
            return
        self.sink = None
        sink.on_complete(self, self.parser.should_keep_alive())
