"""Test helpers for the builtin router: a tiny real upstream server and raw HTTP clients.

``Upstream`` is an asyncio HTTP/1.1 server (keep-alive, content-length and chunked request
bodies) that answers with its name, and on special paths:

    /stream?n=5&delay=0.1   chunked body, one piece per ``delay`` seconds
    /sse?n=5&delay=0.1      the same as text/event-stream
    /status/503             that status
    /slow?delay=1           answers after ``delay`` seconds
    /echo                   JSON of method, path, headers and body
    /close                  close-delimited body (no content-length, no chunking)
    /drop-reused            on a reused connection: close without answering (the
                            keep-alive race a proxy must absorb)

It records every request (``requests``) and counts accepted connections (``connections``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from changeover.endpoints import Endpoint
from changeover.traffic.builtin import BuiltinRouter


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Upstream:
    name: str
    port: int = 0
    requests: list[Seen] = field(default_factory=list)
    connections: int = 0
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    async def start(self) -> Upstream:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for w in list(self._writers):
                w.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        served = 0
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, target, _version = lines[0].split(" ", 2)
                headers: dict[str, str] = {}
                for line in lines[1:]:
                    if line:
                        k, _, v = line.partition(":")
                        headers[k.strip().lower()] = v.strip()
                body = await _read_body(reader, headers)
                self.requests.append(Seen(method, target, headers, body))
                if target == "/drop-reused" and served:
                    return
                served += 1
                keep = await self._answer(writer, method, target, headers, body)
                if not keep or headers.get("connection", "").lower() == "close":
                    return
        except (ConnectionError, asyncio.CancelledError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _answer(
        self,
        writer: asyncio.StreamWriter,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes,
    ) -> bool:
        url = urllib.parse.urlsplit(target)
        q = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
        path = url.path
        name = self.name.encode()
        if path in ("/stream", "/sse"):
            n, delay = int(q.get("n", "5")), float(q.get("delay", "0.05"))
            ctype = b"text/event-stream" if path == "/sse" else b"text/plain"
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: " + ctype + b"\r\n"
                b"x-upstream: " + name + b"\r\ntransfer-encoding: chunked\r\n\r\n"
            )
            for i in range(n):
                piece = b"data: %s-%d\n\n" % (name, i) if path == "/sse" else b"%s-%d\n" % (name, i)
                writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                await writer.drain()
                if i < n - 1:
                    await asyncio.sleep(delay)
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            return True
        status = 200
        out = name
        if path.startswith("/status/"):
            status = int(path.rsplit("/", 1)[1])
        elif path == "/slow":
            await asyncio.sleep(float(q.get("delay", "1")))
        elif path == "/echo":
            out = json.dumps(
                {"method": method, "path": target, "headers": headers, "body": body.decode()}
            ).encode()
        elif path == "/close":
            writer.write(b"HTTP/1.1 200 OK\r\nx-upstream: " + name + b"\r\n\r\n" + name)
            await writer.drain()
            return False
        payload = b"" if method == "HEAD" else out
        writer.write(
            b"HTTP/1.1 %d X\r\ncontent-length: %d\r\nx-upstream: %s\r\n\r\n%s"
            % (status, len(out), name, payload)
        )
        await writer.drain()
        return True


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
    length = int(headers.get("content-length", "0"))
    return await reader.readexactly(length) if length else b""


def free_port() -> int:
    """A port nothing listens on (bound then closed): connecting to it is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def raw_request(port: int, data: bytes, *, read_until_close: bool = True) -> bytes:
    """Send raw bytes, return everything the proxy answers until it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(-1), 5)
    finally:
        writer.close()


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


async def read_reply(reader: asyncio.StreamReader) -> Reply:
    """One content-length or chunked response (what the router sends for these upstreams)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if line:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
    return Reply(status, headers, await _read_body(reader, headers))


async def load(
    port: int,
    n: int,
    *,
    concurrency: int = 16,
    path: str = "/",
    on_reply: Callable[[Reply], None] | None = None,
) -> list[Reply | BaseException]:
    """``n`` GETs over ``concurrency`` keep-alive connections; a light raw client, so the
    client is not the bottleneck. A failed request is returned as its exception."""
    out: list[Reply | BaseException] = []
    remaining = iter(range(n))
    request = b"GET %s HTTP/1.1\r\nhost: load\r\n\r\n" % path.encode()

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for _ in remaining:
                try:
                    writer.write(request)
                    reply = await read_reply(reader)
                except (OSError, asyncio.IncompleteReadError) as exc:
                    out.append(exc)
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    continue
                out.append(reply)
                if on_reply is not None:
                    on_reply(reply)
                if reply.headers.get("connection") == "close":
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return out


# Fixture types (the fixtures are in conftest.py; test modules import these from here, since
# another test package's ``conftest`` may be the one importable under that name).
UpstreamFactory = Callable[[str], Awaitable[Upstream]]
RouterFactory = Callable[..., Awaitable[BuiltinRouter]]


def ep(up: Upstream) -> Endpoint:
    return Endpoint("127.0.0.1", up.port)
