"""How the builtin router ends a WebSocket it relays: a close frame (1001 Going Away) to
each side at a frame boundary, never a dropped TCP connection in the middle of a message;
and an idle connection closed the same way after ``upgrade_idle`` seconds.

A real ``websockets`` client; the upstream is the example echo server, or a hand-written
server that holds a frame half-sent (to end the connection in the middle of a message)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from collections.abc import Callable

import pytest
from router_helpers import RouterFactory
from websocket_helpers import EchoServer, version, ws_connect
from websockets.exceptions import ConnectionClosed

from changeover.endpoints import Endpoint
from changeover.traffic.builtin import BuiltinRouter, Settings, metrics_text
from changeover.traffic.builtin.websocket_frames import FrameTracker

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3


async def test_an_idle_websocket_gets_a_close_frame_and_a_busy_one_stays(
    make_router: RouterFactory, echoes: dict[int, EchoServer]
) -> None:
    router = await make_router(settings=Settings(upgrade_idle=2.0))
    await router.set_backends(1, [echoes[1].endpoint])
    await router.set_weight({1: 100})
    async with ws_connect(router.port) as idle, ws_connect(router.port) as busy:
        for _ in range(25):  # 5 s of a message every 0.2 s: never 2 s without one
            assert await version(busy) == "v1"
            await asyncio.sleep(0.2)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(idle.recv(), 10)
        assert (idle.close_code, idle.close_reason) == (1001, "idle timeout")
        assert await version(busy) == "v1"  # still open: its bytes kept it alive
    m = router.metrics.revisions[1]
    assert (m.upgraded_idle, m.upgraded_drained) == (1, 0)  # an idle close is not a drain
    text = metrics_text.render(router.metrics_registry)
    assert 'changeover_upgraded_connections_idle_closed_total{rollout="web",revision="1"} 1' in text


async def test_a_router_stopping_says_going_away_without_waiting_its_drain_grace(
    make_router: RouterFactory, echoes: dict[int, EchoServer]
) -> None:
    router = await make_router(settings=Settings(drain_grace=30.0))
    await router.set_backends(1, [echoes[1].endpoint])
    await router.set_weight({1: 100})
    async with ws_connect(router.port) as ws:
        assert await version(ws) == "v1"
        t0 = time.monotonic()
        await router.close()
        # The client answered the close frame, so the router did not wait its 30 s.
        assert time.monotonic() - t0 < 15
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
        assert (ws.close_code, ws.close_reason) == (1001, "router stopping")


class HalfFrameServer:
    """A WebSocket server by hand: after the handshake it sends the first half of a
    binary frame, the second half when ``finish`` is set, and keeps what it receives."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.finish = asyncio.Event()
        self.received = b""
        self.sent_half = asyncio.Event()
        self.server: asyncio.Server | None = None

    async def start(self) -> Endpoint:
        self.server = await asyncio.start_server(self.serve, "127.0.0.1", 0)
        return Endpoint("127.0.0.1", self.server.sockets[0].getsockname()[1])

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        key = next(
            line.split(b":", 1)[1].strip()
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key:")
        )
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n"
            b"connection: Upgrade\r\nsec-websocket-accept: " + accept + b"\r\n\r\n"
        )
        n = len(self.payload)
        frame = bytes((0x82, 126)) + n.to_bytes(2, "big") + self.payload
        writer.write(frame[: n // 2])
        await writer.drain()
        self.sent_half.set()
        await self.finish.wait()
        writer.write(frame[n // 2 :])
        await writer.drain()
        while chunk := await reader.read(65536):
            self.received += chunk
        writer.close()

    def stop(self) -> None:
        if self.server is not None:
            self.server.close()


async def test_a_drain_in_the_middle_of_a_message_closes_after_it(
    make_router: RouterFactory,
) -> None:
    payload = bytes(range(256)) * 40  # 10 KiB, one binary frame
    upstream = HalfFrameServer(payload)
    router = await make_router(settings=Settings(upgrade_drain=0.0))
    await router.set_backends(1, [await upstream.start()])
    await router.set_weight({1: 100})
    try:
        async with ws_connect(router.port) as ws:
            await asyncio.wait_for(upstream.sent_half.wait(), 10)
            await wait_until(lambda: mid_frame(router))  # the router has relayed the half
            await router.set_weight({2: 100})  # revision 1 loses its traffic: closed at once
            await asyncio.sleep(0.2)  # the router has decided; the frame is still half-sent
            upstream.finish.set()
            # The whole message first (cutting it would corrupt the stream), then 1001.
            assert await asyncio.wait_for(ws.recv(), 10) == payload
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            assert (ws.close_code, ws.close_reason) == (1001, "draining")
        # The upstream got a close frame too, masked as a client's must be: 1001.
        await wait_until(lambda: has_close_frame(upstream.received))
        assert upstream.received[0] == 0x88 and upstream.received[1] & 0x80
        key, body = upstream.received[2:6], upstream.received[6 : 6 + (upstream.received[1] & 0x7F)]
        unmasked = bytes(b ^ key[i & 3] for i, b in enumerate(body))
        assert unmasked == (1001).to_bytes(2, "big") + b"draining"
    finally:
        upstream.stop()
    m = router.metrics.revisions[1]
    assert (m.upgraded_drained, m.upgraded_open) == (1, 0)


def mid_frame(router: BuiltinRouter) -> bool:
    """Whether the router's one tunnel has relayed part of a frame to its client."""
    (tunnel,) = router.state.tunnels
    return tunnel.down_frames is not None and not tunnel.down_frames.at_boundary()


def has_close_frame(data: bytes) -> bool:
    """Whether ``data`` holds a whole close frame (the upstream's view of the stream)."""
    t = FrameTracker()
    t.feed(data)
    return t.closed and t.at_boundary()


async def wait_until(condition: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)
