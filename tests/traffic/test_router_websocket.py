"""WebSocket through the builtin router: a real ``websockets`` client, the example echo
server (``examples/websocket_echo.py``) as real processes, the router on both loops.

The revision is chosen once per connection (weights, header and cookie routes, sticky
users); frames are relayed both ways; the upgrade request is validated and bytes sent
before the 101 never reach a server that refused to switch; upgraded connections on a
revision that lost its traffic, or on a stopping replica, are closed after the grace."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import re
import time
from collections.abc import Callable

import pytest
import router_helpers
from router_helpers import RouterFactory, UpstreamFactory
from websocket_helpers import EchoServer, version, ws_connect
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from changeover.endpoints import Endpoint
from changeover.spec import models
from changeover.traffic.builtin import BuiltinRouter, Settings, metrics_text, table


async def two_revisions(
    make_router: RouterFactory, echoes: dict[int, EchoServer], **kw: object
) -> BuiltinRouter:
    router = await make_router(**kw)
    for rev, server in echoes.items():
        await router.set_backends(rev, [server.endpoint])
    await router.set_weight({1: 100})
    return router


def open_ws(router: BuiltinRouter, **headers: str) -> connect:
    return ws_connect(router.port, **headers)


async def test_echo_relays_many_small_messages_and_a_large_one(
    make_router: RouterFactory, echoes: dict[int, EchoServer]
) -> None:
    router = await two_revisions(make_router, echoes)
    async with open_ws(router) as ws:
        assert ws.response is not None and ws.response.status_code == 101
        assert ws.response.headers["x-changeover-revision"] == "1"
        for i in range(500):
            await ws.send(f"m{i}")
        assert [await ws.recv() for _ in range(500)] == [f"m{i}" for i in range(500)]
        big = bytes(range(256)) * (12 * 1024)  # 3 MiB, binary
        await ws.send(big)
        assert await asyncio.wait_for(ws.recv(), 10) == big
        assert await version(ws) == "v1"
    m = router.metrics.revisions[1]
    assert (m.upgraded, m.codes[1]) == (1, 1)  # one connection, its handshake as a 1xx
    await wait_for(lambda: m.upgraded_open == 0)
    assert m.in_flight == 0 and m.upgraded_seconds.count == 1
    text = metrics_text.render(router.metrics_registry)
    assert 'changeover_upgraded_connections_total{rollout="web",revision="1"} 1' in text
    assert 'changeover_upgraded_connections_open{rollout="web",revision="1"} 0' in text


async def test_weights_choose_the_revision_once_per_connection(
    make_router: RouterFactory, echoes: dict[int, EchoServer]
) -> None:
    router = await two_revisions(make_router, echoes)
    await router.set_weight({1: 70, 2: 30})
    seen: collections.Counter[str] = collections.Counter()
    for _ in range(100):
        async with open_ws(router) as ws:
            first = await version(ws)
            await router.set_weight({1: 70, 2: 30})  # a table swap does not move it
            assert ws.response is not None
            assert await version(ws) == first == "v" + ws.response.headers["x-changeover-revision"]
            seen[first] += 1
    assert seen == {"v1": 70, "v2": 30}  # the wheel is exact over 100 connections


async def test_header_and_cookie_routes_pick_the_revision(
    make_router: RouterFactory, echoes: dict[int, EchoServer]
) -> None:
    router = await two_revisions(make_router, echoes)
    header = models.RouteMatch(header_name="x-beta", header_value=models.StringMatch(exact="yes"))
    cookie = models.RouteMatch(cookie_name="beta", cookie_value=models.StringMatch(exact="1"))
    await router.set_header_route("beta", 2, [header, cookie])
    async with open_ws(router, **{"x-beta": "yes"}) as ws:
        assert await version(ws) == "v2"
    async with open_ws(router, cookie="a=b; beta=1") as ws:
        assert await version(ws) == "v2"
    async with open_ws(router, **{"x-beta": "no"}) as ws:
        assert await version(ws) == "v1"


async def test_sticky_users_stay_on_their_side(
    make_router: RouterFactory, echoes: dict[int, EchoServer]
) -> None:
    router = await two_revisions(make_router, echoes)
    key = models.UserKey(header="x-user")
    await router.set_sticky_split(2, key, 50)
    users = [f"user-{i}" for i in range(20)]
    for _ in range(2):
        for user in users:
            async with open_ws(router, **{"x-user": user}) as ws:
                expected = "v2" if table.bucket(user.encode()) < 50 else "v1"
                assert await version(ws) == expected


async def test_a_websocket_is_never_mirrored_nor_compared(
    make_router: RouterFactory, echoes: dict[int, EchoServer]
) -> None:
    router = await two_revisions(make_router, echoes)
    await router.set_mirror_route("shadow", 2, 100, [], models.MirrorCompare())
    async with open_ws(router) as ws:
        assert await version(ws) == "v1"
    await router.mirror_idle()
    shadow = router.metrics.revision(2)
    assert shadow.mirror_sent + shadow.mirror_failed + shadow.mirror_dropped == 0
    assert shadow.shadow is not None and shadow.shadow.not_compared["incomplete"] == 1


async def test_connection_on_a_revision_that_lost_its_traffic_is_closed_after_the_grace(
    make_router: RouterFactory, echoes: dict[int, EchoServer]
) -> None:
    router = await two_revisions(make_router, echoes, settings=Settings(upgrade_drain=1.5))
    async with open_ws(router) as old:
        assert await version(old) == "v1"
        await router.set_weight({2: 100})  # the promotion
        t0 = time.monotonic()
        async with open_ws(router) as new:
            assert await version(new) == "v2"
            await asyncio.sleep(0.5)
            assert await version(old) == "v1"  # drained, not cut: still served
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(old.recv(), 5)
            closed_after = time.monotonic() - t0
            assert 1.5 <= closed_after < 3.5
            # A close frame, not a dropped TCP connection (1006, no code).
            assert (old.close_code, old.close_reason) == (1001, "draining")
            assert await version(new) == "v2"  # the new revision's connection stays
    m = router.metrics.revisions[1]
    assert (m.upgraded_drained, m.upgraded_open) == (1, 0)


async def test_traffic_back_before_the_grace_keeps_the_connection(
    make_router: RouterFactory, echoes: dict[int, EchoServer]
) -> None:
    router = await two_revisions(make_router, echoes, settings=Settings(upgrade_drain=1.0))
    async with open_ws(router) as ws:
        await router.set_weight({2: 100})
        await asyncio.sleep(0.3)
        await router.set_weight({1: 100})  # an abort brings the old revision back
        await asyncio.sleep(2.0)
        assert await version(ws) == "v1"
    assert router.metrics.revisions[1].upgraded_drained == 0


async def test_replica_drain_closes_its_connections_within_the_upgrade_grace(
    make_router: RouterFactory, echoes: dict[int, EchoServer]
) -> None:
    router = await two_revisions(make_router, echoes, settings=Settings(upgrade_drain=1.0))
    async with open_ws(router) as ws:
        assert await version(ws) == "v1"
        t0 = time.monotonic()
        left = await router.drain(echoes[1].endpoint, 10.0)
        took = time.monotonic() - t0
        assert left == 0 and 1.0 <= took < 3.0  # not the replica's whole 10 s
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == 1001
    await router.set_backends(1, [echoes[1].endpoint])  # the next test's replica is back


async def test_a_server_refusing_the_upgrade_is_an_ordinary_response(
    make_router: RouterFactory, echoes: dict[int, EchoServer]
) -> None:
    router = await two_revisions(make_router, echoes)
    with pytest.raises(InvalidStatus) as refused:
        async with connect(f"ws://127.0.0.1:{router.port}/deny", open_timeout=5):
            pass
    assert refused.value.response.status_code == 403
    assert refused.value.response.body == b"no websocket for you\n"


STATUS_LINE = re.compile(rb"HTTP/1\.[01] \d{3} ")
SMUGGLED = b"GET /smuggled HTTP/1.1\r\nhost: x\r\n\r\n"
UPGRADE = (
    b"GET /chat HTTP/1.1\r\nhost: x\r\nconnection: Upgrade\r\nupgrade: websocket\r\n"
    b"sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n"
)


async def test_bytes_before_the_101_never_reach_a_server_that_did_not_switch(
    make_router: RouterFactory, upstream: UpstreamFactory
) -> None:
    up = await upstream("plain")  # an HTTP server: answers 200 to the upgrade request
    router = await make_router()
    await router.set_backends(1, [Endpoint("127.0.0.1", up.port)])
    await router.set_weight({1: 100})
    data = await router_helpers.raw_request(router.port, UPGRADE + b"\r\n" + SMUGGLED)
    assert data.startswith(b"HTTP/1.1 200 ") and len(STATUS_LINE.findall(data)) == 1
    assert b"connection: close" in data.lower()
    assert [r.path for r in up.requests] == ["/chat"]
    seen = up.requests[0].headers
    assert (seen["upgrade"], seen["connection"]) == ("websocket", "upgrade")


async def test_a_frame_sent_with_the_handshake_reaches_the_server_after_the_101(
    make_router: RouterFactory, echoes: dict[int, EchoServer]
) -> None:
    router = await two_revisions(make_router, echoes)
    mask = b"\x01\x02\x03\x04"
    masked = bytes(c ^ mask[i % 4] for i, c in enumerate(b"version"))
    reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
    writer.write(UPGRADE + b"\r\n" + b"\x81\x87" + mask + masked)  # one write
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101 ") and b"x-changeover-revision: 1\r\n" in head
    assert await asyncio.wait_for(reader.readexactly(4), 5) == b"\x81\x02v1"
    writer.close()


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (UPGRADE + b"content-length: 5\r\n\r\nhello" + SMUGGLED, 400),
        (UPGRADE + b"transfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400),
        (UPGRADE.replace(b"HTTP/1.1", b"HTTP/1.0") + b"\r\n", 400),
        (b"CONNECT example.com:443 HTTP/1.1\r\nhost: example.com:443\r\n\r\n", 501),
    ],
    ids=["content-length-body", "chunked-body", "http10", "connect"],
)
async def test_malformed_upgrades_are_refused_and_never_reach_upstream(
    make_router: RouterFactory, upstream: UpstreamFactory, request_bytes: bytes, status: int
) -> None:
    up = await upstream("v1")
    router = await make_router()
    await router.set_backends(1, [Endpoint("127.0.0.1", up.port)])
    await router.set_weight({1: 100})
    data = await router_helpers.raw_request(router.port, request_bytes)
    assert data.startswith(b"HTTP/1.1 %d " % status) and len(STATUS_LINE.findall(data)) == 1
    assert b"connection: close" in data.lower()
    assert up.requests == []


async def test_a_101_nobody_asked_for_is_a_502(make_router: RouterFactory) -> None:
    async def rogue(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\nconnection: upgrade\r\n\r\n"
        )
        with contextlib.suppress(ConnectionError):
            await reader.read()

    server = await asyncio.start_server(rogue, "127.0.0.1", 0)
    router = await make_router()
    await router.set_backends(1, [Endpoint("127.0.0.1", server.sockets[0].getsockname()[1])])
    await router.set_weight({1: 100})
    request = b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    data = await router_helpers.raw_request(router.port, request)
    server.close()
    assert data.startswith(b"HTTP/1.1 502 ")


async def wait_for(condition: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)
