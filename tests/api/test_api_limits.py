"""The API's wire limits (issue 11 §2 items 2 and 3): deadlines for the request head and
body, a send timeout, a bounded pipeline with backpressure, a cap on connections.

Each test runs a real server on a free port with short limits, and a raw socket client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Callable

import pytest

from changeover.http_server import http as api_http

GET = b"GET /x HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n"


class Counting:
    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, request: api_http.Request) -> api_http.Response:
        self.calls += 1
        return api_http.Response.json(200, {"n": self.calls, "pad": "x" * 200})


@contextlib.asynccontextmanager
async def serve(
    limits: api_http.Limits, app: Counting | None = None
) -> AsyncIterator[tuple[int, set[api_http.HttpProtocol], Counting]]:
    app = app or Counting()
    connections: set[api_http.HttpProtocol] = set()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: api_http.HttpProtocol(app, connections, limits), "127.0.0.1", 0
    )
    try:
        yield server.sockets[0].getsockname()[1], connections, app
    finally:
        server.close()
        for conn in list(connections):
            conn.close()


async def until(condition: Callable[[], bool], seconds: float) -> None:
    """Poll ``condition`` (server-side state with no event to wait on) until it holds."""
    async with asyncio.timeout(seconds):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def read_all(reader: asyncio.StreamReader, seconds: float) -> bytes:
    return await asyncio.wait_for(reader.read(), seconds)


async def test_a_head_sent_one_line_at_a_time_gets_408_at_the_head_deadline() -> None:
    async with serve(api_http.Limits(header_timeout=0.5)) as (port, _, app):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /x HTTP/1.1\r\n")
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with contextlib.suppress(ConnectionError):
            for i in range(30):  # 6 s of trickle if nothing stopped it
                await asyncio.sleep(0.2)
                if reader.at_eof() or len(reader._buffer):  # type: ignore[attr-defined]
                    break
                writer.write(b"x-%d: 1\r\n" % i)
        answer = await read_all(reader, 5)
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b"request header not received in time" in answer
    assert loop.time() - t0 < 3
    assert app.calls == 0


async def test_a_body_trickled_byte_by_byte_gets_408_at_the_body_deadline() -> None:
    async with serve(api_http.Limits(body_timeout=0.5)) as (port, _, app):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /x HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 100\r\n\r\n")
        with contextlib.suppress(ConnectionError):
            for _ in range(30):
                await asyncio.sleep(0.1)
                if reader.at_eof() or len(reader._buffer):  # type: ignore[attr-defined]
                    break
                writer.write(b"a")
        answer = await read_all(reader, 5)
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b"request body not received in time" in answer
    assert app.calls == 0


async def test_pipelined_requests_never_read_are_bounded_and_the_client_is_dropped() -> None:
    """100,000 pipelined GETs that are never read: the server stops reading (a bounded
    queue), stops answering (responses wait for the client), then hangs up at the send
    timeout. Before, it answered all of them into an ever-growing send buffer."""
    limits = api_http.Limits(send_timeout=1.0, max_pipeline=16)
    async with serve(limits) as (port, connections, app):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        writer.write(GET * 100_000)
        with contextlib.suppress(TimeoutError, ConnectionError):
            await asyncio.wait_for(writer.drain(), 1.5)
        # The server answered a bounded number: what fits in the socket buffers, the
        # pipeline, and one read's worth of parsed requests.
        assert app.calls < 10_000
        await until(lambda: not connections, 5)  # dropped at the send timeout
        writer.close()


async def test_pipelining_within_the_limits_still_answers_everything_in_order() -> None:
    async with serve(api_http.Limits(max_pipeline=4)) as (port, _, app):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(GET * 200 + b"GET /x HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n")
        answer = await read_all(reader, 10)
        writer.close()
    assert answer.count(b"HTTP/1.1 200 OK") == 201
    assert app.calls == 201
    assert answer.index(b'"n":1,') < answer.index(b'"n":2,') < answer.index(b'"n":201,')


async def test_connections_over_the_cap_get_503_and_a_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with serve(api_http.Limits(max_connections=2)) as (port, connections, _):
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        await until(lambda: len(connections) == 2, 5)
        with caplog.at_level(logging.WARNING, logger="changeover.http_server.http"):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            answer = await read_all(reader, 5)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 503 ")
        assert "2 connections open (the limit)" in caplog.text
        # One that leaves makes room again.
        held[0][1].close()
        await until(lambda: len(connections) == 1, 5)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(GET)
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200 ")
        writer.close()
        for _, w in held[1:]:
            w.close()


async def test_serve_takes_the_limits_from_its_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from changeover import errors
    from changeover.api.server import start_api
    from changeover.testing.fake_service import FakeService

    monkeypatch.setenv("CHANGEOVER_API_MAX_CONNECTIONS", "1")
    api = await start_api(FakeService(), "127.0.0.1", 0, "tok")
    try:
        port = int(api.url.rsplit(":", 1)[1].rstrip("/"))
        _, held = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.sleep(0.05)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert (await read_all(reader, 5)).startswith(b"HTTP/1.1 503 ")
        writer.close()
        held.close()
    finally:
        await api.close()
    monkeypatch.setenv("CHANGEOVER_API_HEADER_TIMEOUT", "-1")
    with pytest.raises(errors.PermanentBackendError, match="CHANGEOVER_API_HEADER_TIMEOUT"):
        await start_api(FakeService(), "127.0.0.1", 0, "tok")
