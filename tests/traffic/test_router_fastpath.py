"""The raw-head fast path: message boundaries, header rewriting, failures, timeouts.

The proxy forwards request and response heads as received (plus forwarding fields) and
passes response bodies through raw; these tests pin what that must never get wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import router_helpers
from router_helpers import RouterFactory, UpstreamFactory, ep

from changeover.endpoints import Endpoint
from changeover.traffic.builtin import BuiltinRouter, Settings


async def one_revision(
    make_router: RouterFactory, upstream: UpstreamFactory, **kw: object
) -> tuple[BuiltinRouter, router_helpers.Upstream]:
    up = await upstream("v1")
    router = await make_router(**kw)
    await router.set_backends(1, [ep(up)])
    await router.set_weight({1: 100})
    return router, up


async def read_n(reader: asyncio.StreamReader, n: int) -> list[router_helpers.Reply]:
    return [await asyncio.wait_for(router_helpers.read_reply(reader), 5) for _ in range(n)]


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def raw_upstream(handler: Handler) -> AsyncIterator[int]:
    """A server that answers with whatever bytes ``handler`` writes."""
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


def answer(response: bytes, *, keep_open: bool = False) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(response)
            await writer.drain()
            if keep_open:
                await reader.read()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    return handle


async def test_pipelined_mix_of_bodies_and_heads_split_byte_by_byte(
    make_router: RouterFactory, upstream: UpstreamFactory
) -> None:
    router, _ = await one_revision(make_router, upstream)
    reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
    batch = (
        b"GET /echo?a HTTP/1.1\r\nhost: x\r\n\r\n"
        b"POST /echo?b HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nhello"
        b"GET /echo?c HTTP/1.1\r\nhost: x\r\nX-Forwarded-For: 9.9.9.9\r\n\r\n"
    )
    writer.write(batch)
    # The same again, one byte per write: heads and bodies split across reads.
    for i in range(len(batch)):
        writer.write(batch[i : i + 1])
        await writer.drain()
        if i % 7 == 0:
            await asyncio.sleep(0)
    replies = await read_n(reader, 6)
    writer.close()
    seen = [json.loads(r.body) for r in replies]
    assert [s["path"] for s in seen] == ["/echo?a", "/echo?b", "/echo?c"] * 2
    assert seen[1]["body"] == "hello" and seen[4]["body"] == "hello"
    assert seen[2]["headers"]["x-forwarded-for"] == "9.9.9.9, 127.0.0.1"
    assert seen[0]["headers"]["x-forwarded-for"] == "127.0.0.1"
    assert seen[0]["headers"]["forwarded"] == "for=127.0.0.1;proto=http"
    assert all(r.status == 200 for r in replies)


async def test_pipelining_behind_a_chunked_upload_closes_after_it(
    make_router: RouterFactory, upstream: UpstreamFactory
) -> None:
    router, _ = await one_revision(make_router, upstream)
    reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
    writer.write(
        b"POST /echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\nGET /echo HTTP/1.1\r\nhost: x\r\n\r\n"
    )
    first = await asyncio.wait_for(router_helpers.read_reply(reader), 5)
    assert json.loads(first.body)["body"] == "abc"
    assert first.headers.get("connection") == "close"
    assert await asyncio.wait_for(reader.read(), 5) == b""  # then closed, cleanly
    writer.close()


async def test_hop_by_hop_request_fields_are_dropped_and_forwarding_set(
    make_router: RouterFactory, upstream: UpstreamFactory
) -> None:
    router, _ = await one_revision(make_router, upstream)
    reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
    writer.write(
        b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, X-Secret\r\n"
        b"X-Secret: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Authorization: a\r\n"
        b"Forwarded: for=10.1.1.1\r\nX-Kept: yes\r\n\r\n"
    )
    (reply,) = await read_n(reader, 1)
    writer.close()
    headers = json.loads(reply.body)["headers"]
    for gone in ("connection", "x-secret", "keep-alive", "te", "proxy-authorization"):
        assert gone not in headers
    assert headers["x-kept"] == "yes"
    assert headers["forwarded"] == "for=10.1.1.1, for=127.0.0.1;proto=http"
    assert headers["x-forwarded-proto"] == "http"


async def test_hop_by_hop_response_fields_are_dropped(make_router: RouterFactory) -> None:
    resp = (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive, X-Hop\r\n"
        b"X-Hop: 1\r\nKeep-Alive: timeout=5\r\nX-Kept: yes\r\n\r\nok"
    )
    async with raw_upstream(answer(resp, keep_open=True)) as port:
        router = await make_router()
        await router.set_backends(1, [Endpoint("127.0.0.1", port)])
        await router.set_weight({1: 100})
        reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
        writer.write(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        (reply,) = await read_n(reader, 1)
        writer.close()
    assert reply.body == b"ok"
    assert reply.headers["x-kept"] == "yes"
    assert "x-hop" not in reply.headers and "keep-alive" not in reply.headers
    assert "connection" not in reply.headers  # keep-alive is HTTP/1.1's default


async def test_a_keep_alive_upstream_changing_its_heads_is_read_afresh_each_time(
    make_router: RouterFactory,
) -> None:
    # The proxy reuses its analysis of a head identical to the connection's last one; a
    # head that differs by anything (framing, a header, the status) must be read anew.
    responses = [
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-n: 1\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-n: 1\r\n\r\nOK",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nx-n: 2\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        b"HTTP/1.1 404 Not Found\r\ncontent-length: 4\r\nconnection: x-n\r\nx-n: 3\r\n\r\nnope",
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-n: 1\r\n\r\nok",
    ]
    connections = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            for response in responses:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(response)
                await writer.drain()
            await reader.read()
        writer.close()

    async with raw_upstream(serve) as port:
        router = await make_router()
        await router.set_backends(1, [Endpoint("127.0.0.1", port)])
        await router.set_weight({1: 100})
        reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
        replies = []
        for _ in responses:
            writer.write(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            replies += await read_n(reader, 1)
        writer.close()
    assert connections == 1  # all five on one upstream connection
    assert [(r.status, r.body) for r in replies] == [
        (200, b"ok"),
        (200, b"OK"),
        (200, b"abc"),
        (404, b"nope"),
        (200, b"ok"),
    ]
    assert [r.headers.get("x-n") for r in replies] == ["1", "1", "2", None, "1"]
    assert replies[2].headers["transfer-encoding"] == "chunked"
    assert "transfer-encoding" not in replies[4].headers


async def test_bytes_past_the_content_length_never_reach_the_client(
    make_router: RouterFactory,
) -> None:
    resp = (
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
        b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nevil"
    )
    async with raw_upstream(answer(resp, keep_open=True)) as port:
        router = await make_router()
        await router.set_backends(1, [Endpoint("127.0.0.1", port)])
        await router.set_weight({1: 100})
        data = await router_helpers.raw_request(router.port, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
    assert b"evil" not in data
    assert router.metrics.revision(1).bad_responses == 1


async def test_garbage_from_upstream_is_502_and_counted(make_router: RouterFactory) -> None:
    async with raw_upstream(answer(b"SSH-2.0-OpenSSH\r\n\r\n")) as port:
        router = await make_router()
        await router.set_backends(1, [Endpoint("127.0.0.1", port)])
        await router.set_weight({1: 100})
        data = await router_helpers.raw_request(
            router.port, b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
        )
    assert data.startswith(b"HTTP/1.1 502 ")
    assert router.metrics.revision(1).bad_responses == 1


async def test_head_then_get_on_one_connection(
    make_router: RouterFactory, upstream: UpstreamFactory
) -> None:
    router, _ = await one_revision(make_router, upstream)
    reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
    writer.write(b"HEAD / HTTP/1.1\r\nhost: x\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert b"content-length: 2" in head.lower()
    writer.write(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
    (reply,) = await read_n(reader, 1)  # no stray HEAD body in front of it
    writer.close()
    assert reply.status == 200 and reply.body == b"v1"


async def test_chunked_response_passes_through_and_http10_gets_it_dechunked(
    make_router: RouterFactory, upstream: UpstreamFactory
) -> None:
    router, _ = await one_revision(make_router, upstream)
    reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
    writer.write(b"GET /stream?n=3&delay=0.01 HTTP/1.1\r\nhost: x\r\n\r\n")
    (reply,) = await read_n(reader, 1)
    writer.close()
    assert reply.headers["transfer-encoding"] == "chunked"
    assert reply.body == b"v1-0\nv1-1\nv1-2\n"
    data = await router_helpers.raw_request(
        router.port, b"GET /stream?n=3&delay=0.01 HTTP/1.0\r\nhost: x\r\n\r\n"
    )
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"transfer-encoding" not in head.lower()
    assert body == b"v1-0\nv1-1\nv1-2\n"


async def test_client_disconnect_mid_stream_closes_the_upstream(
    make_router: RouterFactory, upstream: UpstreamFactory
) -> None:
    router, up = await one_revision(make_router, upstream)
    reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
    writer.write(b"GET /stream?n=100&delay=0.02 HTTP/1.1\r\nhost: x\r\n\r\n")
    await asyncio.wait_for(reader.readuntil(b"v1-1\n"), 5)
    assert len(up._writers) == 1
    writer.close()
    for _ in range(100):
        if not up._writers:
            break
        await asyncio.sleep(0.02)
    assert not up._writers  # the upstream connection was closed, not left streaming
    assert router.metrics.revision(1).client_aborts == 1


async def test_connect_timeout_is_504_and_counted(make_router: RouterFactory) -> None:
    # A listener whose accept queue is full: SYNs are dropped, connects hang (loopback).
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(0)
    port = lsock.getsockname()[1]
    fillers = []
    for _ in range(4):
        s = socket.socket()
        s.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            s.connect(("127.0.0.1", port))
        fillers.append(s)
    try:
        router = await make_router(settings=Settings(connect_timeout=0.2, drain_grace=1.0))
        await router.set_backends(1, [Endpoint("127.0.0.1", port)])
        await router.set_weight({1: 100})
        data = await router_helpers.raw_request(
            router.port, b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
        )
    finally:
        for s in fillers:
            s.close()
        lsock.close()
    assert data.startswith(b"HTTP/1.1 504 ")
    rm = router.metrics.revision(1)
    assert rm.timeouts == 1 and rm.connect_errors >= 1


async def test_idle_client_connections_are_closed(
    make_router: RouterFactory, upstream: UpstreamFactory
) -> None:
    router, _ = await one_revision(
        make_router, upstream, settings=Settings(client_idle=1, drain_grace=1.0)
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
    writer.write(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
    await read_n(reader, 1)
    assert await asyncio.wait_for(reader.read(), 4) == b""  # closed by the sweep
    writer.close()


async def test_malformed_request_is_400_and_other_connections_carry_on(
    make_router: RouterFactory, upstream: UpstreamFactory
) -> None:
    router, _ = await one_revision(make_router, upstream)
    reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
    writer.write(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
    await read_n(reader, 1)
    for bad in (
        b"GET / HTTP/1.1\r\nhost x\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        b"GET / HTTP/1.1\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
    ):
        data = await router_helpers.raw_request(router.port, bad)
        assert data.startswith(b"HTTP/1.1 400 "), data
    big = b"GET / HTTP/1.1\r\nx-big: " + b"a" * 70_000 + b"\r\n\r\n"
    assert (await router_helpers.raw_request(router.port, big)).startswith(b"HTTP/1.1 431 ")
    writer.write(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
    (reply,) = await read_n(reader, 1)
    writer.close()
    assert reply.status == 200
    assert router.metrics.bad_requests == 3


@pytest.mark.parametrize("method", [b"GET", b"POST"])
async def test_expect_continue_fast_path(
    make_router: RouterFactory, upstream: UpstreamFactory, method: bytes
) -> None:
    router, _ = await one_revision(make_router, upstream)
    reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
    writer.write(
        method + b" /echo HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: 4\r\n\r\n"
    )
    assert (
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5) == b"HTTP/1.1 100 Continue\r\n\r\n"
    )
    writer.write(b"data")
    (reply,) = await read_n(reader, 1)
    writer.close()
    seen = json.loads(reply.body)
    assert seen["body"] == "data" and "expect" not in seen["headers"]
