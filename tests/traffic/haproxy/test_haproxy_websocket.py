"""WebSocket through the managed HAProxy: it proxies upgrades natively, so the router
declares ``websocket``; connections follow the weights and header routes, and frames are
relayed both ways. Real HAProxy, the example echo server, a real ``websockets`` client."""

from __future__ import annotations

import asyncio
import collections

import pytest
from haproxy_helpers import HAProxyFactory
from websocket_helpers import EchoServer, version, ws_connect

from changeover.spec import models
from changeover.traffic import base
from changeover.traffic.haproxy import router as router_mod

pytestmark = pytest.mark.slow


def test_haproxy_declares_websocket() -> None:
    assert base.Capability.WEBSOCKET in router_mod.CAPABILITIES


async def test_websocket_through_haproxy_by_weight_and_header_route(
    make_haproxy: HAProxyFactory, echoes: dict[int, EchoServer]
) -> None:
    router = await make_haproxy()
    for rev, server in echoes.items():
        await router.set_backends(rev, [server.endpoint])
    await router.set_weight({1: 50, 2: 50})
    seen: collections.Counter[str] = collections.Counter()
    for _ in range(40):
        async with ws_connect(router.port) as ws:
            first = await version(ws)
            assert await version(ws) == first  # one revision for the whole connection
            seen[first] += 1
    assert seen["v1"] >= 10 and seen["v2"] >= 10  # HAProxy's weights are per connection here
    match = models.RouteMatch(header_name="x-beta", header_value=models.StringMatch(exact="1"))
    await router.set_header_route("beta", 2, [match])
    await router.set_weight({1: 100})
    async with ws_connect(router.port, **{"x-beta": "1"}) as ws:
        assert await version(ws) == "v2"
        messages = [f"m{i}" for i in range(300)]
        for m in messages:
            await ws.send(m)
        assert [await asyncio.wait_for(ws.recv(), 5) for _ in messages] == messages
        big = b"\x01\x02" * (1024 * 1024)
        await ws.send(big)
        assert await asyncio.wait_for(ws.recv(), 10) == big
    async with ws_connect(router.port) as ws:
        assert await version(ws) == "v1"
