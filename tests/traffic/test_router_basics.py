"""The builtin router as a client sees it: forwarding, framing, local answers."""

from __future__ import annotations

import asyncio
import json

import httpx
import router_helpers
from router_helpers import RouterFactory, UpstreamFactory, ep

from changeover import errors
from changeover.traffic.builtin import BuiltinRouter


async def one_revision(
    make_router: RouterFactory, upstream: UpstreamFactory
) -> tuple[BuiltinRouter, router_helpers.Upstream]:
    up = await upstream("v1")
    router = await make_router()
    await router.set_backends(1, [ep(up)])
    await router.set_weight({1: 100})
    return router, up


async def test_forwards_and_tags_the_revision(
    make_router: RouterFactory, upstream: UpstreamFactory
) -> None:
    router, _ = await one_revision(make_router, upstream)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{router.port}") as client:
        r = await client.get("/echo?x=1", headers={"x-custom": "yes", "x-forwarded-for": "1.2.3.4"})
    assert r.status_code == 200
    assert r.headers["x-changeover-revision"] == "1"
    seen = json.loads(r.content)
    assert seen["path"] == "/echo?x=1"
    assert seen["headers"]["x-custom"] == "yes"
    assert seen["headers"]["x-forwarded-for"] == "1.2.3.4, 127.0.0.1"
    assert seen["headers"]["host"] == f"127.0.0.1:{router.port}"


async def test_request_bodies_fixed_and_chunked(
    make_router: RouterFactory, upstream: UpstreamFactory
) -> None:
    router, up = await one_revision(make_router, upstream)

    async def gen():  # type: ignore[no-untyped-def]
        for i in range(3):
            yield b"part%d," % i
            await asyncio.sleep(0.01)

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{router.port}") as client:
        fixed = await client.post("/echo", content=b"x" * 200_000)
        chunked = await client.post("/echo", content=gen())
    assert json.loads(fixed.content)["body"] == "x" * 200_000
    assert json.loads(chunked.content)["body"] == "part0,part1,part2,"
    assert up.requests[1].headers["transfer-encoding"] == "chunked"


async def test_keep_alive_reuses_upstream_connections(
    make_router: RouterFactory, upstream: UpstreamFactory
) -> None:
    router, up = await one_revision(make_router, upstream)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{router.port}") as client:
        for _ in range(50):
            assert (await client.get("/")).text == "v1"
    assert up.connections == 1


async def test_pipelined_requests_answer_in_order(
    make_router: RouterFactory, upstream: UpstreamFactory
) -> None:
    router, _ = await one_revision(make_router, upstream)
    data = (
        b"".join(
            b"GET /slow?delay=%s HTTP/1.1\r\nhost: x\r\n\r\n" % d for d in (b"0.1", b"0", b"0.05")
        )
        + b"GET /echo HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    )
    out = await router_helpers.raw_request(router.port, data)
    assert out.count(b"HTTP/1.1 200") == 4
    assert out.rstrip().endswith(b"}")  # the echo answer came last


async def test_streams_chunks_as_they_arrive(
    make_router: RouterFactory, upstream: UpstreamFactory
) -> None:
    router, _ = await one_revision(make_router, upstream)
    loop = asyncio.get_running_loop()
    arrivals: list[tuple[float, bytes]] = []
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{router.port}") as client:
        t0 = loop.time()
        async with client.stream("GET", "/sse?n=5&delay=0.1") as r:
            assert r.headers["content-type"] == "text/event-stream"
            async for piece in r.aiter_raw():
                arrivals.append((loop.time() - t0, piece))
    assert b"".join(p for _, p in arrivals) == b"".join(b"data: v1-%d\n\n" % i for i in range(5))
    # Unbuffered: the first event is read while the upstream is still writing the rest
    # (0.1 s apart). Buffered, all would arrive together after 0.4 s.
    assert arrivals[0][1].startswith(b"data: v1-0\n\n")
    assert arrivals[-1][0] - arrivals[0][0] > 0.25


async def test_close_delimited_and_head(
    make_router: RouterFactory, upstream: UpstreamFactory
) -> None:
    router, _ = await one_revision(make_router, upstream)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{router.port}") as client:
        closed = await client.get("/close")
        head = await client.head("/")
        after = await client.get("/")
    assert closed.text == "v1" and closed.headers["transfer-encoding"] == "chunked"
    assert head.status_code == 200 and head.headers["content-length"] == "2" and head.content == b""
    assert after.text == "v1"


async def test_upstream_status_passes_through(
    make_router: RouterFactory, upstream: UpstreamFactory
) -> None:
    router, _ = await one_revision(make_router, upstream)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{router.port}") as client:
        r = await client.get("/status/503")
    assert r.status_code == 503 and r.headers["x-changeover-revision"] == "1"


async def test_expect_continue(make_router: RouterFactory, upstream: UpstreamFactory) -> None:
    router, _ = await one_revision(make_router, upstream)
    reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
    writer.write(
        b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\nexpect: 100-continue\r\n"
        b"connection: close\r\n\r\n"
    )
    assert (
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2) == b"HTTP/1.1 100 Continue\r\n\r\n"
    )
    writer.write(b"hello")
    rest = await asyncio.wait_for(reader.read(-1), 2)
    writer.close()
    assert rest.startswith(b"HTTP/1.1 200") and b'"body": "hello"' in rest


async def test_no_backends_is_503(make_router: RouterFactory) -> None:
    router = await make_router()
    await router.set_weight({1: 100})
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{router.port}") as client:
        r = await client.get("/")
        unrouted = await make_router()
        r2 = await client.get(f"http://127.0.0.1:{unrouted.port}/")
    assert r.status_code == 503 and r2.status_code == 503
    assert router.metrics.revision(1).no_backend == 1


async def test_maintenance_page(make_router: RouterFactory, upstream: UpstreamFactory) -> None:
    router, _ = await one_revision(make_router, upstream)
    await router.set_maintenance(True, 30)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{router.port}") as client:
        r = await client.get("/")
        await router.set_maintenance(False, 0)
        r2 = await client.get("/")
    assert r.status_code == 503 and r.headers["retry-after"] == "30"
    assert "maintenance" in r.text and r.headers["content-type"].startswith("text/html")
    assert r2.status_code == 200


async def test_preview_port(make_router: RouterFactory, upstream: UpstreamFactory) -> None:
    v1, v2 = await upstream("v1"), await upstream("v2")
    router = await make_router(preview_port=0)
    assert router.preview_port and router.preview_port != router.port
    await router.set_backends(1, [ep(v1)])
    await router.set_backends(2, [ep(v2)])
    await router.set_weight({1: 100})
    async with httpx.AsyncClient() as client:
        none = await client.get(f"http://127.0.0.1:{router.preview_port}/")
        await router.set_preview(2)
        preview = await client.get(f"http://127.0.0.1:{router.preview_port}/")
        main = await client.get(f"http://127.0.0.1:{router.port}/")
    assert none.status_code == 503
    assert preview.text == "v2" and preview.headers["x-changeover-revision"] == "2"
    assert main.text == "v1"


async def test_malformed_request_is_400(
    make_router: RouterFactory, upstream: UpstreamFactory
) -> None:
    router, _ = await one_revision(make_router, upstream)
    out = await router_helpers.raw_request(router.port, b"GARBAGE\x00 / HTTP/1.1\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400")
    assert router.metrics.bad_requests == 1


async def test_port_in_use_is_a_permanent_error(make_router: RouterFactory) -> None:
    first = await make_router()
    second = BuiltinRouter("web", port=first.port)
    try:
        await second.start()
    except errors.PermanentBackendError as exc:
        assert str(first.port) in str(exc)
    else:
        raise AssertionError("expected PermanentBackendError")


async def test_http10_client_gets_a_close_delimited_stream(
    make_router: RouterFactory, upstream: UpstreamFactory
) -> None:
    router, _ = await one_revision(make_router, upstream)
    out = await router_helpers.raw_request(router.port, b"GET /stream?n=2&delay=0 HTTP/1.0\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"connection: close" in head
    assert b"transfer-encoding" not in head and body == b"v1-0\nv1-1\n"


async def test_close_lets_in_flight_requests_finish(
    make_router: RouterFactory, upstream: UpstreamFactory
) -> None:
    router, _ = await one_revision(make_router, upstream)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{router.port}") as client:
        in_flight = asyncio.create_task(client.get("/slow?delay=0.3"))
        await asyncio.sleep(0.1)
        await router.close()
        assert (await in_flight).status_code == 200
