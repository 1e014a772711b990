"""Differential HTTP fuzzing of the builtin router against nginx (issue 11 §3).

Generated client byte streams (malformed framing, duplicate and conflicting headers,
``Connection`` tokens, chunk extensions, pipelining, HTTP/1.0 and 0.9) go through the
builtin router and through nginx, each to its own ``Recorder``: an upstream that parses
what it receives with its own small RFC 9112 parser and records each request's method
and body, or why it could not frame the bytes. The property: the router never makes an
upstream frame differently from what nginx made of the same bytes (no desync):

* the recorder behind the router never meets bytes it cannot frame unambiguously
  (both Content-Length and Transfer-Encoding, two lengths, a coding other than chunked,
  a broken chunk, bytes that are not a request);
* wherever both proxies forwarded a request at the same position of the stream, method
  and body are the same;
* the router forwards more requests than nginx only where nginx refused the stream
  (answered 4xx/5xx or closed): a stricter or laxer reading, counted, never a desync.

The proxies run once per session: the router on a thread's event loop, nginx as a
process with a generated configuration (upstream keep-alive, as bench/ runs it).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from hypothesis import strategies as st

from bench import nginx_conf
from changeover.endpoints import Endpoint
from changeover.traffic.builtin import BuiltinRouter, Registry, Settings

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"  # Debian's, as bench/ runs it
END = b"GET /end HTTP/1.1\r\nhost: fuzz\r\nconnection: close\r\n\r\n"
SMUGGLED = b"GET /smuggled HTTP/1.1\r\nhost: evil\r\n\r\n"
ANSWER = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


# -- the recording upstream ---------------------------------------------------------------


class Unframeable(Exception):
    """The bytes cannot be framed as one unambiguous request."""


@dataclasses.dataclass
class Seen:
    method: bytes
    target: bytes
    body: bytes


def _parse_head(head: bytes) -> tuple[bytes, bytes, list[tuple[bytes, bytes]]]:
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        raise Unframeable(f"request line {lines[0][:60]!r}")
    fields = []
    for line in lines[1:]:
        if not line:
            continue
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip() or b" " in name:
            raise Unframeable(f"field line {line[:60]!r}")
        fields.append((name.lower(), value.strip(b" \t")))
    return parts[0], parts[1], fields


def frame(buf: bytes) -> tuple[Seen, int] | None:
    """One request from the start of ``buf``: (what it is, bytes used); None: incomplete.
    Strict where framing is concerned (RFC 9112 §6)."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        if len(buf) > 65536 or (b"\n" in buf and b"\r\n" not in buf):
            raise Unframeable("no head end")
        return None
    method, target, fields = _parse_head(buf[:end])
    pos = end + 4
    lengths = [v for n, v in fields if n == b"content-length"]
    codings = [v for n, v in fields if n == b"transfer-encoding"]
    if lengths and codings:
        raise Unframeable("both Content-Length and Transfer-Encoding")
    if codings:
        tokens = [t.strip().lower() for v in codings for t in v.split(b",")]
        if tokens != [b"chunked"]:
            raise Unframeable(f"transfer codings {tokens}")
        return _chunked(buf, pos, method, target)
    if len(lengths) > 1:
        raise Unframeable(f"{len(lengths)} Content-Length fields")
    length = 0
    if lengths:
        if not lengths[0].isdigit():
            raise Unframeable(f"Content-Length {lengths[0]!r}")
        length = int(lengths[0])
    if len(buf) < pos + length:
        return None
    return Seen(method, target, buf[pos : pos + length]), pos + length


def _chunked(buf: bytes, pos: int, method: bytes, target: bytes) -> tuple[Seen, int] | None:
    body = b""
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size_text = buf[pos:eol].split(b";")[0]
        try:
            size = int(size_text, 16)
        except ValueError:
            raise Unframeable(f"chunk size {size_text!r}") from None
        pos = eol + 2
        if size == 0:
            end = buf.find(b"\r\n\r\n", pos - 2)  # trailers, then the empty line
            if end < 0:
                return None
            return Seen(method, target, body), end + 4
        if len(buf) < pos + size + 2:
            return None
        if buf[pos + size : pos + size + 2] != b"\r\n":
            raise Unframeable("chunk data not followed by CRLF")
        body += buf[pos : pos + size]
        pos += size + 2


class Recorder:
    """The upstream behind one proxy: records what it can frame, and what it cannot."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.problems: list[str] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def reset(self) -> None:
        self.seen = []
        self.problems = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        buf = b""
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    if buf:
                        self.problems.append(f"connection closed inside a request {buf[:80]!r}")
                    return
                buf += data
                while buf:
                    try:
                        got = frame(buf)
                    except Unframeable as exc:
                        self.problems.append(f"{exc} in {buf[:120]!r}")
                        return
                    if got is None:
                        break
                    seen, used = got
                    buf = buf[used:]
                    self.seen.append(seen)
                    head_only = seen.method == b"HEAD"
                    writer.write(ANSWER[:-2] if head_only else ANSWER)
        except (ConnectionError, asyncio.CancelledError):
            return
        finally:
            writer.close()


# -- the proxies ----------------------------------------------------------------------------


@dataclasses.dataclass
class Proxies:
    router_port: int
    nginx_port: int
    behind_router: Recorder
    behind_nginx: Recorder


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nginx exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nginx did not listen on {port}")


@contextlib.contextmanager
def running(workdir: Path) -> Iterator[Proxies]:
    """The router (on a thread's event loop) and nginx, each with its own recorder."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    behind_router, behind_nginx = Recorder(), Recorder()
    settings = Settings(header_timeout=3, body_timeout=3, drain_grace=0.5)
    router = BuiltinRouter("fuzz", port=0, metrics=Registry(), settings=settings)

    async def start() -> None:
        await behind_router.start()
        await behind_nginx.start()
        await router.start()
        await router.set_backends(1, [Endpoint("127.0.0.1", behind_router.port)])
        await router.set_weight({1: 100})

    asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    nginx_port = _free_port()
    conf = nginx_conf.write(
        workdir,
        # The router's header/body timeouts, so both give up on a stalled client alike.
        http="  client_header_timeout 3s; client_body_timeout 3s;\n"
        + nginx_conf.reverse_proxy(listen=nginx_port, upstream=behind_nginx.port),
        worker_connections=1024,
        error_log_level="crit",
    )
    nginx = subprocess.Popen(
        nginx_conf.argv(conf, NGINX),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _wait_port(nginx_port, nginx)
        yield Proxies(router.port, nginx_port, behind_router, behind_nginx)
    finally:
        nginx.terminate()
        nginx.wait(10)

        async def stop() -> None:
            await router.close()
            await behind_router.stop()
            await behind_nginx.stop()
            await asyncio.sleep(0.05)

        asyncio.run_coroutine_threadsafe(stop(), loop).result(15)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


def exchange(port: int, data: bytes, *, gap: float = 1.0, total: float = 4.0) -> bytes:
    """Send ``data`` and read the answer until the proxy closes, ``gap`` seconds pass with
    nothing new, or ``total`` seconds in all. (No half-close: a proxy may take a client's
    EOF as an abort, as nginx does.)"""
    out = b""
    deadline = time.monotonic() + total
    with socket.create_connection(("127.0.0.1", port), gap) as sock, contextlib.suppress(OSError):
        sock.sendall(data)
        while time.monotonic() < deadline:
            piece = sock.recv(65536)
            if not piece:
                break
            out += piece
    return out


def settle(*recorders: Recorder) -> None:
    """Wait until the recorders are idle: a proxy may close the client before its
    upstream's bytes have been read."""
    time.sleep(0.003)


# -- what is sent -----------------------------------------------------------------------------

METHODS = [b"GET", b"POST", b"PUT", b"HEAD", b"DELETE", b"OPTIONS", b"PATCH", b"get", b"GE T"]
TARGETS = [b"/", b"/a?b=1", b"/%2e%2e/x", b"http://fuzz/x", b"*", b"//x", b"/a\tb"]
VERSIONS = [b" HTTP/1.1"] * 6 + [b" HTTP/1.0"] * 2
VERSIONS += [b"", b" HTTP/2.0", b" HTTP/1.10", b" http/1.1"]
BODIES = [b"", b"hello", SMUGGLED, b"0\r\n\r\n" + SMUGGLED, b"x" * 300]
CONNECTION_TOKENS = [
    b"close",
    b"keep-alive",
    b"content-length",
    b"transfer-encoding",
    b"host",
    b"x-a",
    b"upgrade",
    b"te",
    b"Content-Length",
]
CODINGS = [
    b"chunked",
    b"Chunked",
    b"chunked, gzip",
    b"gzip, chunked",
    b" chunked",
    b"chunked ",
    b"identity",
    b"chunked, chunked",
    b"xchunked",
    b"chunked\x0b",
]
LENGTH_FORMS = [b"%d", b" %d", b"+%d", b"%d, %d", b"0%d", b"-%d", b"%d ", b"%dx"]
EXTRA_FIELDS = [
    b"x-changeover-shadow: 1",
    b"x-forwarded-proto: https",
    b"x-forwarded-for: 1.2.3.4",
    b"expect: 100-continue",
    b"upgrade: websocket",
    b"te: trailers",
    b"x_under: 1",
    b"x-space : 1",
    b" folded: continuation",
    b"x-a: 1",
    b"host: other",
    b"content-length: 0",
    b"transfer-encoding: chunked",
    b"x-nul: a\x00b",
    b"x-high: \xff\xfe",
]


@st.composite
def chunked_body(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` as chunks, sometimes malformed: sizes off by one, extensions, bare LFs,
    trailers, a missing last chunk."""
    out = b""
    rest = data
    while rest:
        n = draw(st.integers(1, max(1, len(rest))))
        piece, rest = rest[:n], rest[n:]
        size = len(piece) + draw(st.sampled_from([0, 0, 0, 0, 1, -1]))
        ext = draw(st.sampled_from([b"", b"", b";a=b", b";x", b' ;q="v"', b";" + b"e" * 200]))
        eol = draw(st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\n"]))
        out += b"%x" % max(size, 0) + ext + eol + piece + eol
    last = draw(
        st.sampled_from([b"0\r\n\r\n", b"0\r\n\r\n", b"0\r\nx-t: 1\r\n\r\n", b"0\n\n", b""])
    )
    return out + last


@st.composite
def request(draw: st.DrawFn) -> bytes:
    method = draw(st.sampled_from(METHODS))
    target = draw(st.sampled_from(TARGETS))
    version = draw(st.sampled_from(VERSIONS))
    eol = draw(st.sampled_from([b"\r\n"] * 8 + [b"\n"]))
    fields: list[bytes] = []
    if draw(st.integers(0, 9)):
        fields.append(b"host: fuzz")
    body = draw(st.sampled_from(BODIES))
    framing = draw(
        st.sampled_from(["none", "length", "length", "chunked", "chunked", "both", "two-lengths"])
    )
    if framing in ("length", "both", "two-lengths"):
        form = draw(st.sampled_from(LENGTH_FORMS[:1] * 6 + LENGTH_FORMS[1:]))
        declared = len(body) + draw(st.sampled_from([0, 0, 0, 0, 1, -1, 5]))
        value = form % ((declared, declared) if form.count(b"%d") == 2 else (declared,))
        fields.append(b"content-length: " + value)
        if framing == "two-lengths":
            fields.append(b"content-length: %d" % draw(st.sampled_from([declared, declared + 1])))
    if framing in ("chunked", "both"):
        fields.append(b"transfer-encoding: " + draw(st.sampled_from(CODINGS)))
        body = draw(chunked_body(body))
    if draw(st.booleans()):
        tokens = draw(st.lists(st.sampled_from(CONNECTION_TOKENS), min_size=1, max_size=3))
        fields.append(b"connection: " + b", ".join(tokens))
    fields += draw(st.lists(st.sampled_from(EXTRA_FIELDS), max_size=3))
    fields = draw(st.permutations(fields))
    head = method + b" " + target + version + eol + b"".join(f + eol for f in fields) + eol
    if framing == "none" and draw(st.booleans()):
        body = b""
    return head + body


@st.composite
def stream(draw: st.DrawFn) -> bytes:
    """One to three requests on one connection, then a closing request (so that a proxy
    that reads the stream as the generator meant it closes at the end)."""
    parts = draw(st.lists(request(), min_size=1, max_size=3))
    return b"".join(parts) + END


# -- the comparison ---------------------------------------------------------------------------


@dataclasses.dataclass
class Outcome:
    desync: str | None  # why this case is a desync, or None
    diverged: bool  # the two proxies accepted different numbers of requests


def _refused(answer: bytes) -> bool:
    return b"HTTP/1.1 4" in answer or b"HTTP/1.1 5" in answer or b"HTTP/1.0 4" in answer


def compare(
    data: bytes,
    router_seen: list[Seen],
    router_problems: list[str],
    nginx_seen: list[Seen],
    nginx_answer: bytes,
) -> Outcome:
    if router_problems:
        return Outcome(f"upstream could not frame the router's bytes: {router_problems}", True)
    for i, (r, n) in enumerate(zip(router_seen, nginx_seen, strict=False)):
        if r.method != n.method or r.body != n.body:
            return Outcome(
                f"request {i}: router forwarded {r.method!r} {r.body[:80]!r}, "
                f"nginx {n.method!r} {n.body[:80]!r}",
                True,
            )
    refused = _refused(nginx_answer)
    if (
        any(s.target == b"/smuggled" for s in router_seen)
        and not refused
        and not any(s.target == b"/smuggled" for s in nginx_seen)
    ):
        return Outcome("the router forwarded the request hidden in a body", True)
    if len(router_seen) > len(nginx_seen) and not refused:
        return Outcome(
            f"router forwarded {len(router_seen)} requests, nginx {len(nginx_seen)} "
            "without refusing any",
            True,
        )
    return Outcome(None, len(router_seen) != len(nginx_seen))
