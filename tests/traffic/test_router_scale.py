"""The builtin router under size and load: 100 MB bodies with flat memory, 2,000 keep-alive
connections, 100 weight changes a second without a failed request."""

from __future__ import annotations

import asyncio
import contextlib
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
import router_helpers
from router_helpers import RouterFactory, UpstreamFactory, ep

pytestmark = pytest.mark.slow
LOOPS = ("uvloop",)  # the production loop; these are slow

SIZE = 100 * 1024 * 1024
PIECE = b"x" * 65536

ROUTER = """
import asyncio, sys, uvloop
from changeover.endpoints import Endpoint
from changeover.traffic.builtin import BuiltinRouter

async def main():
    r = BuiltinRouter("big", port=0)
    await r.start()
    await r.set_backends(1, [Endpoint("127.0.0.1", int(sys.argv[1]))])
    await r.set_weight({1: 100})
    print("READY", r.port, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await r.close()

uvloop.run(main())
"""


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


async def big_upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """POST: count the body; GET: send SIZE bytes."""
    try:
        while True:
            head = (await reader.readuntil(b"\r\n\r\n")).lower()
            if head.startswith(b"post"):
                length = int(head.split(b"content-length:")[1].split(b"\r\n")[0])
                got = 0
                while got < length:
                    got += len(await reader.read(min(1 << 20, length - got)))
                body = b"%d" % got
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
            else:
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % SIZE)
                for _ in range(SIZE // len(PIECE)):
                    writer.write(PIECE)
                    await writer.drain()
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def test_100_mb_both_ways_with_flat_router_memory() -> None:
    server = await asyncio.start_server(big_upstream, "127.0.0.1", 0)
    up_port = server.sockets[0].getsockname()[1]
    proc = subprocess.Popen(  # noqa: ASYNC220 (started once; readiness awaited in a thread)
        [sys.executable, "-c", ROUTER, str(up_port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
        port = int(line.split()[1])
        base = rss(proc.pid)
        peak = base
        done = False

        async def sample() -> None:
            nonlocal peak
            while not done:
                peak = max(peak, rss(proc.pid))
                await asyncio.sleep(0.02)

        sampler = asyncio.create_task(sample())
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /up HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n" % SIZE)
        for _ in range(SIZE // len(PIECE)):
            writer.write(PIECE)
            await writer.drain()
        reply = await asyncio.wait_for(router_helpers.read_reply(reader), 60)
        assert reply.body == b"%d" % SIZE
        writer.write(b"GET /down HTTP/1.1\r\nhost: x\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        assert b"content-length: %d" % SIZE in head.lower()
        got = 0
        while got < SIZE:
            chunk = await asyncio.wait_for(reader.read(1 << 20), 30)
            assert chunk
            got += len(chunk)
        assert got == SIZE
        writer.close()
        done = True
        await sampler
    finally:
        with contextlib.suppress(Exception):
            proc.communicate(b"", timeout=15)
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        server.close()
    # Streamed, not buffered: the router grew by far less than one body.
    assert peak - base < 32 * 1024 * 1024, (base, peak)


async def test_2000_concurrent_keep_alive_connections(
    make_router: RouterFactory, upstream: UpstreamFactory
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 8192:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(8192, hard), hard))
    up = await upstream("v1")
    router = await make_router()
    await router.set_backends(1, [ep(up)])
    await router.set_weight({1: 100})
    replies = await router_helpers.load(router.port, 4000, concurrency=2000)
    failed = [r for r in replies if not isinstance(r, router_helpers.Reply) or r.status != 200]
    assert len(replies) == 4000 and not failed, failed[:3]
    assert len(router.state.connections) == 0 or len(router.state.connections) <= 2000


async def test_256_busy_clients_reuse_their_upstream_connections(
    make_router: RouterFactory, upstream: UpstreamFactory
) -> None:
    """Given 256 keep-alive clients each sending requests back to back, the upstream sees
    about one connection per client, not a new connect for every few requests (which is
    what a pool keeping only 64 idle connections did: throughput fell as clients grew)."""
    up = await upstream("v1")
    router = await make_router()
    await router.set_backends(1, [ep(up)])
    await router.set_weight({1: 100})
    # A 20 ms answer keeps all 256 requests in flight at once, as a busy service does.
    replies = await router_helpers.load(
        router.port, 256 * 8, concurrency=256, path="/slow?delay=0.02"
    )
    failed = [r for r in replies if not isinstance(r, router_helpers.Reply) or r.status != 200]
    assert not failed, failed[:3]
    assert up.connections <= 256, up.connections


async def test_100_weight_changes_a_second_under_load_fail_nothing(
    make_router: RouterFactory, upstream: UpstreamFactory
) -> None:
    v1, v2 = await upstream("v1"), await upstream("v2")
    router = await make_router()
    await router.set_backends(1, [ep(v1)])
    await router.set_backends(2, [ep(v2)])
    await router.set_weight({1: 50, 2: 50})
    stop = False
    changes = 0

    async def flip() -> None:
        nonlocal changes
        t0 = time.monotonic()
        while not stop:
            w = changes % 101
            await router.set_weight({1: w, 2: 100 - w})
            changes += 1
            await asyncio.sleep(max(0.0, t0 + changes * 0.01 - time.monotonic()))

    flipper = asyncio.create_task(flip())
    t0 = time.monotonic()
    replies = await router_helpers.load(router.port, 6000, concurrency=64)
    elapsed = time.monotonic() - t0
    stop = True
    await flipper
    failed = [r for r in replies if not isinstance(r, router_helpers.Reply) or r.status != 200]
    assert not failed, failed[:3]
    assert {r.body for r in replies if isinstance(r, router_helpers.Reply)} == {b"v1", b"v2"}
    assert changes >= 50 * elapsed  # ~100/s, allowing for a busy machine
