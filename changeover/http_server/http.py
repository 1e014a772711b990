"""A small HTTP/1.1 server protocol for the JSON API: asyncio + httptools, no framework.

``api.server`` builds one ``HttpProtocol`` per connection with an ``app`` coroutine
(``Request -> Response``). This layer owns the wire: parsing, keep-alive, pipelined
requests answered in order, limits (header and body size, idle time) and the status-line
bookkeeping. It never lets an exception out of ``app`` reach the socket as a traceback:
``app`` is expected to map its own errors, and anything that still escapes becomes a
plain 500.

Limits are deliberately small: this API carries rollout specs and status documents, not
uploads, and a client that sends more is either broken or hostile. ``Limits`` also bounds
time and memory per client: a request head must arrive whole within
``header_timeout`` of its first byte and its body within ``body_timeout`` (so one header
line every 50 s no longer holds a connection for minutes), a response the client does not
read for ``send_timeout`` ends the connection, at most ``max_pipeline`` requests wait per
connection before it is no longer read (and responses wait for the client to read the
previous ones: memory stays bounded when a client pipelines and never reads), and at most
``max_connections`` are open at once, past which new ones get a 503 and a log line.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import parse_qs, unquote

import httptools

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 4 * 1024 * 1024
MAX_HEADER_BYTES = 64 * 1024
IDLE_TIMEOUT_SECONDS = 60.0
LINGER_SECONDS = 2.0
FULL_LOG_EVERY = 10.0  # seconds between two "connection limit reached" log lines


@dataclass(frozen=True, kw_only=True)
class Limits:
    """Per-connection time limits (seconds) and counts; the defaults are ``serve``'s."""

    header_timeout: float = 10.0  # a whole request head, from its first byte
    body_timeout: float = 30.0  # a whole request body, from the end of its head
    send_timeout: float = 30.0  # a response the client does not read
    idle_timeout: float = IDLE_TIMEOUT_SECONDS  # a keep-alive connection with no request
    max_connections: int = 512
    max_pipeline: int = 16  # requests waiting per connection before reading pauses


# ``serve`` reads overrides from its environment: CHANGEOVER_API_<FIELD> (upper case), e.g.
# CHANGEOVER_API_MAX_CONNECTIONS=2048 or CHANGEOVER_API_HEADER_TIMEOUT=5.
ENV_PREFIX = "CHANGEOVER_API_"


def limits_from_env(environ: Mapping[str, str]) -> Limits:
    """``Limits`` with the CHANGEOVER_API_* overrides in ``environ`` applied; a value that
    is not a positive number is a ValueError naming the variable and what it expects.

    >>> limits_from_env({"CHANGEOVER_API_MAX_CONNECTIONS": "64"}).max_connections
    64
    >>> limits_from_env({"CHANGEOVER_API_HEADER_TIMEOUT": "soon"})
    Traceback (most recent call last):
    ...
    ValueError: CHANGEOVER_API_HEADER_TIMEOUT='soon': expected a number of seconds > 0
    """
    changes: dict[str, float | int] = {}
    for f in dataclasses.fields(Limits):
        name = ENV_PREFIX + f.name.upper()
        raw = environ.get(name)
        if raw is None:
            continue
        count = f.name.startswith("max_")
        try:
            value: float | int = int(raw) if count else float(raw)
        except ValueError:
            value = 0
        if not value > 0 or value != value or value == float("inf"):
            what = "a whole number > 0" if count else "a number of seconds > 0"
            raise ValueError(f"{name}={raw!r}: expected {what}")
        changes[f.name] = value
    return dataclasses.replace(Limits(), **changes)  # type: ignore[arg-type]


DEFAULT_LIMITS = Limits()
_full_logged = [0.0]  # when "connection limit reached" was last logged (monotonic)


@dataclass(frozen=True, kw_only=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    # Lower-cased names; a repeated header keeps its last value.
    headers: dict[str, str]
    body: bytes
    client: str = ""


@dataclass(frozen=True, kw_only=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    # A streamed answer (server-sent events): ``body`` is ignored, each chunk is written
    # as it comes (waiting while the client does not read), then the connection closes.
    stream: AsyncIterator[bytes] | None = None

    @staticmethod
    def json(status: int, doc: Any, headers: dict[str, str] | None = None) -> Response:
        return Response(
            status=status,
            body=json.dumps(doc, separators=(",", ":")).encode() + b"\n",
            headers=headers or {},
        )

    @staticmethod
    def error(
        status: int, message: str, *, headers: dict[str, str] | None = None, **extra: Any
    ) -> Response:
        return Response.json(status, {"error": message, **extra}, headers)


App = Callable[[Request], Awaitable[Response]]


class _TooLarge(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class HttpProtocol(asyncio.Protocol):
    """One client connection. httptools calls the ``on_*`` methods while we feed it."""

    def __init__(
        self, app: App, connections: set[HttpProtocol], limits: Limits = DEFAULT_LIMITS
    ) -> None:
        self._app = app
        self._connections = connections
        self._limits = limits
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._client = ""
        # Per message being parsed.
        self._url = b""
        self._headers: dict[str, str] = {}
        self._header_bytes = 0
        self._body = bytearray()
        self._last_header = b""
        # Complete requests waiting for their turn: HTTP/1.1 answers in order.
        self._queue: collections.deque[tuple[Request, bool]] = collections.deque()
        self._worker: asyncio.Task[None] | None = None
        self._idle: asyncio.TimerHandle | None = None
        # The head's or the body's deadline, and the send deadline (armed while the
        # client does not read what we wrote).
        self._deadline: asyncio.TimerHandle | None = None
        self._send: asyncio.TimerHandle | None = None
        self._writable = asyncio.Event()
        self._writable.set()
        self._reading_paused = False
        self._closing = False

    # --- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports quack like asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        peer = self._transport.get_extra_info("peername")
        self._client = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else ""
        if len(self._connections) >= self._limits.max_connections:
            self._refuse()
            return
        self._connections.add(self)
        self._arm_idle()

    def _refuse(self) -> None:
        """Over ``max_connections``: a 503 and close, logged at most every few seconds."""
        self._closing = True
        loop = asyncio.get_running_loop()
        if loop.time() - _full_logged[0] >= FULL_LOG_EVERY:
            _full_logged[0] = loop.time()
            log.warning(
                "API: %d connections open (the limit): refusing new ones with 503",
                self._limits.max_connections,
            )
        self._write(
            Response.error(503, "too many connections", headers={"Retry-After": "1"}),
            keep_alive=False,
            head=False,
        )
        assert self._transport is not None
        self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._connections.discard(self)
        self._closing = True
        self._writable.set()
        for timer in (self._idle, self._deadline, self._send):
            if timer is not None:
                timer.cancel()
        if self._worker is not None and not self._worker.done():
            self._worker.cancel()

    def pause_writing(self) -> None:
        self._writable.clear()
        loop = asyncio.get_running_loop()
        self._send = loop.call_later(self._limits.send_timeout, self._timed_out, "send")

    def resume_writing(self) -> None:
        self._writable.set()
        if self._send is not None:
            self._send.cancel()
            self._send = None

    def data_received(self, data: bytes) -> None:
        if self._closing:
            # After a protocol error we read and drop what the client is still sending, so
            # the kernel does not reset the connection before it reads our error response.
            return
        self._arm_idle()
        try:
            self._parser.feed_data(data)
        except _TooLarge as exc:
            self._fail(exc.status, str(exc))
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, _TooLarge):
                self._fail(cause.status, str(cause))
            else:
                self._fail(400, "malformed HTTP request")
        except httptools.HttpParserUpgrade:
            self._fail(400, "protocol upgrades are not supported")
        except httptools.HttpParserError:
            self._fail(400, "malformed HTTP request")

    # --- httptools callbacks -------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = {}
        self._header_bytes = 0
        self._body = bytearray()
        self._set_deadline(self._limits.header_timeout, "header")

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._count_header(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_header(len(name) + len(value))
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        length = self._headers.get("content-length", "")
        if length.isdigit() and int(length) > MAX_BODY_BYTES:
            raise _TooLarge(413, f"request body larger than {MAX_BODY_BYTES} bytes")
        # curl sends this for bodies over 1 KiB and waits a second for the go-ahead.
        if self._headers.get("expect", "").lower() == "100-continue" and self._transport:
            self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self._set_deadline(self._limits.body_timeout, "body")

    def on_body(self, body: bytes) -> None:
        self._body += body
        if len(self._body) > MAX_BODY_BYTES:
            raise _TooLarge(413, f"request body larger than {MAX_BODY_BYTES} bytes")

    def on_message_complete(self) -> None:
        method = self._parser.get_method().decode("ascii", "replace")
        try:
            parsed = httptools.parse_url(self._url)
            path = unquote(parsed.path.decode("latin-1"))
            query = parse_qs(parsed.query.decode("latin-1")) if parsed.query else {}
        except httptools.HttpParserInvalidURLError:
            path, query = "", {}
        request = Request(
            method=method,
            path=path,
            query=query,
            headers=self._headers,
            body=bytes(self._body),
            client=self._client,
        )
        self._set_deadline(None, "")
        self._queue.append((request, self._parser.should_keep_alive()))
        if len(self._queue) >= self._limits.max_pipeline and self._transport is not None:
            # Backpressure: no more reading until the queue has room again.
            self._reading_paused = True
            self._transport.pause_reading()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._serve_queue())

    # --- internals -----------------------------------------------------------------------

    def _count_header(self, n: int) -> None:
        self._header_bytes += n
        if self._header_bytes > MAX_HEADER_BYTES:
            raise _TooLarge(431, "request headers too large")

    def _arm_idle(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
        loop = asyncio.get_running_loop()
        self._idle = loop.call_later(self._limits.idle_timeout, self._on_idle)

    def _set_deadline(self, seconds: float | None, what: str) -> None:
        """(Re)arm the one deadline of the message being read (None: clear it)."""
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if seconds is not None:
            loop = asyncio.get_running_loop()
            self._deadline = loop.call_later(seconds, self._timed_out, what)

    def _timed_out(self, what: str) -> None:
        """A head or body deadline passed (408, as nginx answers), or the client did not
        read our responses for ``send_timeout`` (nothing more can reach it: hang up)."""
        if self._closing or self._transport is None:
            return
        if what == "send":
            self._closing = True
            self._transport.abort()
            return
        self._fail(408, f"request {what} not received in time")

    def _on_idle(self) -> None:
        # Only drop a connection that is not in the middle of answering.
        if self._transport is not None and (self._worker is None or self._worker.done()):
            self._transport.close()

    async def _serve_queue(self) -> None:
        while self._queue and not self._closing:
            request, keep_alive = self._queue.popleft()
            if self._reading_paused and len(self._queue) < self._limits.max_pipeline:
                self._reading_paused = False
                if self._transport is not None and not self._transport.is_closing():
                    self._transport.resume_reading()
            try:
                response = await self._app(request)
            except Exception:
                log.exception("unhandled error answering %s %s", request.method, request.path)
                response = Response.error(500, "internal error (see the server log)")
            if response.stream is not None:
                await self._write_stream(response, head=request.method == "HEAD")
                self._close()
                return
            # Backpressure: the next response waits until the client reads this one.
            await self._writable.wait()
            self._write(response, keep_alive=keep_alive, head=request.method == "HEAD")
            if not keep_alive:
                self._close()
                return
            self._arm_idle()

    def _fail(self, status: int, message: str) -> None:
        """A protocol-level error: answer once, then hang up (the stream is unusable).

        Closing at once would make the kernel answer the client's unsent remainder (a
        413's body, say) with a reset that can destroy our response in flight; so we
        half-close, keep draining for a moment, and only then close."""
        self._queue.clear()
        self._set_deadline(None, "")
        self._write(Response.error(status, message), keep_alive=False, head=False)
        self._closing = True
        transport = self._transport
        if transport is None:
            return
        if self._reading_paused:
            self._reading_paused = False
            transport.resume_reading()  # drain what the client still sends (see above)
        if transport.can_write_eof():
            transport.write_eof()
        if self._idle is not None:
            self._idle.cancel()
        self._idle = asyncio.get_running_loop().call_later(LINGER_SECONDS, transport.close)

    async def _write_stream(self, response: Response, *, head: bool) -> None:
        """The head, then every chunk of ``response.stream`` until it ends, the client
        goes away or the server closes (``connection_lost`` cancels this task)."""
        assert response.stream is not None
        stream = response.stream
        try:
            await self._writable.wait()
            self._write(response, keep_alive=False, head=True, length=False)
            if head:
                return
            async for chunk in stream:
                await self._writable.wait()
                if self._closing or self._transport is None or self._transport.is_closing():
                    return
                self._transport.write(chunk)
        except Exception:
            log.exception("a streamed answer failed; the connection is closed")
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()

    def _close(self) -> None:
        self._closing = True
        if self._transport is not None:
            self._transport.close()

    def _write(
        self, response: Response, *, keep_alive: bool, head: bool, length: bool = True
    ) -> None:
        if self._transport is None or self._transport.is_closing():
            return
        try:
            reason = HTTPStatus(response.status).phrase
        except ValueError:
            reason = "Unknown"
        lines = [
            f"HTTP/1.1 {response.status} {reason}",
            f"Content-Type: {response.content_type}",
            *([f"Content-Length: {len(response.body)}"] if length else []),
            "Cache-Control: no-store",
            "X-Content-Type-Options: nosniff",
            f"Connection: {'keep-alive' if keep_alive else 'close'}",
        ]
        lines += [f"{name}: {value}" for name, value in response.headers.items()]
        head_bytes = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self._transport.write(head_bytes if head else head_bytes + response.body)

    def close(self) -> None:
        """Used by the server on shutdown."""
        self._close()
