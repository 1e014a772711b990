"""One keep-alive connection from the proxy to a backend replica (an ``asyncio.Protocol``).

A connection is either idle in its ``pool.EndpointState`` or bound to a ``Sink``: the
client-side exchange (``builtin.exchange``) or a mirror copy (``builtin.mirror``).

httptools validates the response and finds its end, but the bytes themselves are passed on
*raw*: the proxy never pipelines requests upstream, so a response always starts at the
beginning of a read, and everything after its head is its body. The sink gets the raw head
once (``on_head``), then each read's body bytes as they arrive (``on_raw``), which keeps
LLM token streams unbuffered and costs no Python call per header or per chunk. Only a
chunked body for an HTTP/1.0 client has to be de-chunked (``on_body``, from httptools).

A content-length body is cut at its length; bytes past the end of a response, or a
parser error, make the response fail (``on_lost``) before anything past it is written.
``on_complete`` is called after the read that ended the response has been handed over, so
the sink can flush once per read.

Two response shapes need help beyond httptools: a response to HEAD carries no body even
with a content-length (httptools cannot be told, so the exchange ends at the head and the
connection is not reused), and a close-delimited body ends at EOF, which httptools never
reports (so ``connection_lost`` completes it).
"""

from __future__ import annotations

import asyncio
import socket
import time
import typing
from typing import Any, Protocol

import httptools

from changeover.traffic.builtin import batch, pool, token_streams, wire

# How the response body is framed: decides client framing and the end of the message.
LENGTH, CHUNKED, CLOSE, NO_BODY = range(4)
# Linux: acknowledge received data at once instead of delaying the ACK (0 elsewhere).
TCP_QUICKACK: int = getattr(socket, "TCP_QUICKACK", 0)


def framing_of(fields: list[wire.Field], status: int, head_only: bool) -> tuple[int, int]:
    """(framing, content length) from a response head's ``wire.response_fields``."""
    if head_only or status in (204, 304) or status < 200:
        return NO_BODY, 0
    length = -1
    codings: list[bytes] = []
    for _, name, value in fields:  # lower-cased by response_fields
        if name == b"transfer-encoding":
            codings.append(value)
        elif name == b"content-length":
            length = int(value.strip().split(b",")[0])
    if codings:
        # As llhttp frames it (RFC 9112 §6.3): chunked only when it is the final coding;
        # any other transfer coding means the body runs to the connection's close.
        return (CHUNKED, 0) if wire.final_coding_chunked(codings) else (CLOSE, 0)
    if length >= 0:
        return (LENGTH, length) if length else (NO_BODY, 0)
    return CLOSE, 0


class ResponseHead:
    """One response head, analysed: its hop-by-hop and framing fields, how its body is
    framed (for any request but HEAD), and ``base``, the head as the client gets it
    without its final CRLF (``base + extra + CRLF``).

    Each connection keeps the last one it analysed: a service repeats its response heads
    (only ``Date`` changes, once a second), so most responses skip the field scan and the
    rewrite for one comparison of bytes (``python -m bench.micro``). A head unlike the last
    (a request id, a cookie, another length) is analysed as before, plus this object
    (``bench.micro --unique-heads`` measures that case).
    """

    __slots__ = ("base", "fields", "framing", "head", "length", "stream")

    def __init__(self, head: bytes, status: int) -> None:
        self.head = head  # the status is part of it: same head, same status
        self.stream = token_streams.kind_of(head)  # a token stream to account for, or 0
        self.fields = wire.response_fields(head)
        self.framing, self.length = framing_of(self.fields, status, False)
        self.base = wire.clean_response_head(head, self.fields, b"")[:-2]


class Sink(Protocol):
    def on_head(
        self, conn: UpstreamConnection, status: int, info: ResponseHead, framing: int
    ) -> None:
        """The head (analysed: ``info``) and how this response's body is framed."""

    def on_raw(self, data: bytes) -> None:
        """Body bytes as received (chunk framing included when the body is chunked)."""

    def on_body(self, data: bytes) -> None:
        """De-chunked body bytes (only after ``conn.dechunk = True`` in ``on_head``)."""

    def on_complete(self, conn: UpstreamConnection, keep_alive: bool) -> None: ...

    def on_lost(self, conn: UpstreamConnection, bad_response: bool) -> None:
        """The connection ended (or sent garbage) before the response completed."""

    def flush(self) -> None:
        """Called after each read: write what the callbacks collected in one go."""

    def pause_source(self) -> None:
        """The upstream socket's send buffer is full: stop reading the request body."""

    def resume_source(self) -> None: ...


class UpgradeSink(Protocol):
    def on_upgrade(self, conn: UpstreamConnection, info: ResponseHead, rest: bytes) -> None:
        """The upstream answered 101: from now on its bytes go to ``on_raw`` unparsed;
        ``rest`` followed the head in the same read."""


class UpstreamConnection(asyncio.Protocol):
    __slots__ = (
        "_acc",
        "_complete",
        "_framing",
        "_head_only",
        "_in_body",
        "_last_head",
        "_left",
        "_out",
        "_tunnel",
        "_upgrade",
        "closed",
        "dechunk",
        "ep",
        "got_bytes",
        "idle_ticks",
        "parser",
        "reads_paused",
        "sink",
        "sock",
        "transport",
        "watch",
        "writes",
    )

    def __init__(self, ep: pool.EndpointState, writes: batch.WriteBatch) -> None:
        self.ep = ep
        self.writes = writes
        self._out: list[bytes] = []  # bytes for the upstream, written after this loop pass
        self.transport: asyncio.Transport | None = None
        self.sock: Any = None  # the transport's socket (setsockopt only); None: no quick ACKs
        self.parser = httptools.HttpResponseParser(self)
        self.sink: Sink | None = None
        self.idle_ticks = 0
        self.closed = False
        self.got_bytes = False  # any response byte since bind: a failure is then not a retry
        self.reads_paused = False
        self.dechunk = False  # the sink wants on_body (de-chunked) instead of on_raw
        self.watch: token_streams.StreamWatch | None = None  # fed the de-chunked body of a stream
        self._head_only = False
        self._in_body = False
        self._acc: bytes | None = None  # bytes of the response head seen so far
        self._framing = NO_BODY
        self._left = 0  # content-length bytes still expected
        self._last_head: ResponseHead | None = None
        self._upgrade: UpgradeSink | None = None  # an upgrade request is in flight
        self._tunnel = False  # after a 101: bytes are relayed, not parsed
        # 0: in progress; ended in this read: 1 (keep-alive), 3 (not); 2: bytes after the end
        self._complete = 0

    # -- used by the pool and the sinks ------------------------------------------------

    def usable(self) -> bool:
        t = self.transport
        return not self.closed and self.sink is None and t is not None and not t.is_closing()

    def bind(self, sink: Sink, *, head_only: bool, upgrade_to: UpgradeSink | None = None) -> None:
        """Take ``sink``'s request; ``upgrade_to`` (the same object): it may get a 101."""
        self.sink = sink
        self._upgrade = upgrade_to
        self.got_bytes = False
        self.dechunk = False
        self.watch = None
        self._head_only = head_only
        self._in_body = False
        self._acc = b""
        self._complete = 0

    def write(self, data: bytes) -> None:
        """Queue ``data`` for the upstream; it is written after this loop pass."""
        out = self._out
        if not out:
            self.writes.queue(self)
        out.append(data)

    def flush_out(self) -> None:
        """Hand the queued bytes to the transport (one ``write``)."""
        if self._out:
            batch.write_out(self.transport, self._out)

    def close(self) -> None:
        self.sink = None
        self.closed = True
        self.flush_out()
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.sink = None
        self.closed = True
        self._out.clear()
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
        if TCP_QUICKACK:
            self.sock = transport.get_extra_info("socket")

    def ack_now(self) -> None:
        """Acknowledge what was received at once. A response that arrives in pieces (a
        head and then its body, as Python's ``http.server`` sends them with Nagle's
        algorithm on) has its next piece held by the upstream until this ACK, which Linux
        delays by up to 40 ms on a reused request/response connection. Called only when a
        read leaves a response incomplete: a response in one read costs nothing."""
        sock = self.sock
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, TCP_QUICKACK, 1)
            except OSError:
                self.sock = None

    def data_received(self, data: bytes) -> None:
        sink = self.sink
        if sink is None:
            # Bytes on an idle connection break HTTP framing: never reuse it.
            self.close()
            return
        if self._tunnel:
            sink.on_raw(data)
            sink.flush()
            return
        self.got_bytes = True
        acc = self._acc
        if acc is not None:
            self._acc = acc + data if acc else data  # the head is not complete yet
        elif not self.dechunk:
            if self._framing == LENGTH:
                left = self._left
                if len(data) > left:
                    self._lost(sink)  # more bytes than the content-length said
                    return
                self._left = left - len(data)
            sink.on_raw(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._lost(sink)
            return
        except httptools.HttpParserUpgrade:
            if not self._tunnel:  # a 101 nobody asked for: not HTTP any more
                self._lost(sink)
                return
        if self.sink is not sink:
            return  # the sink let go of the connection while handling the head (HEAD)
        if self._complete:
            if self._complete == 2:
                self._lost(sink)
                return
            self.sink = None
            sink.on_complete(self, self._complete == 1 and not self.closed)
        else:
            sink.flush()
            self.ack_now()

    def _lost(self, sink: Sink) -> None:
        self.abort()
        sink.on_lost(self, True)

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
        if self._complete:
            self._complete = 2  # a second response on a request we sent once

    def on_headers_complete(self) -> None:
        acc = self._acc
        sink = self.sink
        if acc is None or sink is None:
            return
        end = acc.find(b"\r\n\r\n") + 4
        status = self.parser.get_status_code()
        upgrade = self._upgrade
        if status == 101 and upgrade is not None:
            self._acc = None
            self._tunnel = True
            upgrade.on_upgrade(self, ResponseHead(acc[:end], 101), acc[end:])
            return
        if status < 200:
            # 1xx (e.g. an upstream's own 100 Continue): not forwarded; the final answer
            # follows on the same connection.
            self._acc = acc[end:]
            return
        head = acc[:end]
        self._acc = None
        info = self._last_head
        if info is None or info.head != head:
            info = self._last_head = ResponseHead(head, status)
        if self._head_only:
            framing = NO_BODY
            self._left = 0
        else:
            framing = info.framing
            self._left = info.length
        self._framing = framing
        self._in_body = True
        sink.on_head(self, status, info, framing)
        if self._head_only:
            if self.sink is sink:
                # httptools would wait for a body the HEAD response does not have.
                self.sink = None
                sink.on_complete(self, False)
            return
        rest = acc[end:]
        if rest and not self.dechunk and framing != NO_BODY:
            if framing == LENGTH:
                if len(rest) > self._left:
                    self._complete = 2
                    return
                self._left -= len(rest)
            sink.on_raw(rest)

    def on_body(self, body: bytes) -> None:
        if self.dechunk:
            sink = self.sink
            if sink is not None:
                sink.on_body(body)
        watch = self.watch
        if watch is not None:
            watch.feed(body, time.monotonic())

    def on_message_complete(self) -> None:
        if self._acc is not None or self._tunnel:  # the end of a 1xx, or a 101
            return
        if not self._complete:
            # Asked here: httptools forgets the message's flags once it has ended.
            self._complete = 1 if self.parser.should_keep_alive() else 3
