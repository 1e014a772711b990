"""bench.ws_peers speaks WebSocket: the benchmark's echo server answers a real
``websockets`` client (text, binary, a 200 kB message, ping, close), and its load client
counts echoes and connections against it."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

# bench/ is not an installed package: importable from the repo's root (appended).
ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.append(ROOT)

from websockets.asyncio.client import connect  # noqa: E402

from bench import ws_peers  # noqa: E402


async def test_the_bench_echo_server_talks_to_a_real_client_and_the_load_client() -> None:
    server = await asyncio.get_running_loop().create_server(ws_peers.EchoServer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with connect(f"ws://127.0.0.1:{port}/x", compression=None, max_size=None) as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello"
            big = bytes(range(256)) * 800
            await ws.send(big)
            assert await ws.recv() == big
            await asyncio.wait_for(await ws.ping(), 5)
        assert ws.close_code == 1000
        load = await ws_peers.throughput(port, connections=2, window=8, seconds=0.3)
        assert load["messages"] >= 16 and load["messages"] % 8 == 0
        done = await ws_peers.setup(port, connections=20, concurrency=4)
        assert done["connections"] == 20
    finally:
        server.close()
