"""LLM serving metrics: token streams through the real router from examples/model_service.py
(a real process whose time to first token and time per token the test sets)."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from router_helpers import RouterFactory
from test_router_metrics import parse, sample

from changeover.analysis import sampler
from changeover.traffic.base import Endpoint
from changeover.traffic.builtin import BuiltinRouter, metrics_text

pytestmark = pytest.mark.slow
LOOPS = ("uvloop",)  # the router's loop in `changeover serve`; timings need one run only

MODEL_SERVICE = Path(__file__).resolve().parents[2] / "examples" / "model_service.py"
CHAT = b'{"stream": true, "messages": [{"role": "user", "content": "hello"}]}'
StartModel = Callable[..., Awaitable[int]]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def model_service() -> AsyncIterator[StartModel]:
    """``await model_service("--ttft-ms", "200")``: the example service's port once it listens."""
    procs: list[asyncio.subprocess.Process] = []

    async def start(*args: str) -> int:
        port = _port()
        cmd = [sys.executable, str(MODEL_SERVICE), "--port", str(port), *args]
        proc = await asyncio.create_subprocess_exec(*cmd, stderr=subprocess.DEVNULL)
        procs.append(proc)
        deadline = time.monotonic() + 15
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                return port
            except OSError:
                if proc.returncode is not None or time.monotonic() > deadline:
                    raise RuntimeError("examples/model_service.py did not start") from None
                await asyncio.sleep(0.05)

    yield start
    for proc in procs:
        proc.kill()
        await asyncio.wait_for(proc.wait(), 10)


async def stream_once(port: int, body: bytes = CHAT) -> bytes:
    """POST a streamed chat completion; everything the router sends until the body ends
    (its last chunk) or the connection is cut."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(body), body)
    )
    received = b""
    try:
        while not received.endswith(b"\r\n0\r\n\r\n"):
            data = await asyncio.wait_for(reader.read(65536), 10)
            if not data:
                break
            received += data
    finally:
        writer.close()
    return received


async def router_for(make_router: RouterFactory, port: int) -> BuiltinRouter:
    router = await make_router()
    await router.set_backends(1, [Endpoint("127.0.0.1", port)])
    await router.set_weight({1: 100})
    return router


async def test_ttft_itl_and_tokens_are_measured_as_the_service_set_them(
    make_router: RouterFactory, model_service: StartModel
) -> None:
    # The head and a keep-alive comment go out at once; the first token 250 ms later.
    knobs = ("--ttft-ms", "250", "--token-ms", "60", "--tokens", "6", "--keepalive-comment", "1")
    port = await model_service(*knobs)
    router = await router_for(make_router, port)
    replies = await asyncio.gather(*(stream_once(router.port) for _ in range(4)))
    assert all(r.count(b"data: {") == 7 and b"data: [DONE]" in r for r in replies)

    parsed = parse(metrics_text.render(router.metrics_registry))

    def web(name: str, **labels: str) -> float:
        return sample(parsed, name, rollout="web", revision="1", **labels)

    ttft_n = web("changeover_time_to_first_token_seconds_count")
    ttft = web("changeover_time_to_first_token_seconds_sum") / ttft_n
    ttfb_sum = web("changeover_time_to_first_byte_seconds_sum")
    assert ttft_n == 4 and 0.25 <= ttft < 0.33, ttft  # not the first byte
    assert ttfb_sum / 4 < 0.2
    itl_n = web("changeover_inter_token_latency_seconds_count")
    itl = web("changeover_inter_token_latency_seconds_sum") / itl_n
    assert itl_n == 4 * 5 and 0.055 <= itl < 0.09, itl  # the empty final delta is no token
    assert web("changeover_output_tokens_total") == 24
    assert web("changeover_streams_total") == 4 and web("changeover_streams_cut_total") == 0
    assert web("changeover_stream_output_tokens_bucket", le="5.0") == 0
    assert web("changeover_stream_output_tokens_bucket", le="10.0") == 4

    # The builtin provider's names for the same numbers, over a window.
    window = sampler.Sampler(router.metrics_registry).window("web", 1, 60, time.monotonic())
    assert 0.25 <= window.value("ttft-mean") < 0.33
    assert 0.25 <= window.value("ttft-p95") <= 0.5  # bucket-interpolated
    assert window.value("tokens-per-response") == 6
    # 6 tokens over ~0.25 + 5 × 0.06 s per stream
    assert 8 <= window.value("tokens-per-second") <= 6 / 0.55
    assert window.value("stream-cut-rate") == 0
    assert window.summary()["streams"] == 4


async def test_usage_object_counts_tokens_and_cut_streams_fail(
    make_router: RouterFactory, model_service: StartModel
) -> None:
    # The usage object says 6; the events carry 6 tokens too, so ask for fewer events than
    # the usage claims by cutting: a cut stream is counted as cut even though it was a 200.
    fine = await model_service("--ttft-ms", "0", "--token-ms", "0", "--tokens", "6", "--usage", "1")
    cut = await model_service(
        "--ttft-ms", "0", "--token-ms", "5", "--tokens", "8", "--cut-rate", "1"
    )
    router = await make_router()
    await router.set_backends(1, [Endpoint("127.0.0.1", fine)])
    await router.set_backends(2, [Endpoint("127.0.0.1", cut)])
    await router.set_weight({1: 100, 2: 0})
    assert b"data: [DONE]" in await stream_once(router.port)
    await router.set_weight({1: 0, 2: 100})
    cut_reply = await stream_once(router.port)
    assert cut_reply.startswith(b"HTTP/1.1 200") and b"[DONE]" not in cut_reply

    revisions = router.metrics_registry.snapshot()["web"]["revisions"]
    assert revisions["1"]["streams"] | {"ttft": None, "itl": None, "tokensPerResponse": None} == {
        "count": 1,
        "cut": 0,
        "outputTokens": 6,
        "seconds": revisions["1"]["streams"]["seconds"],
        "ttft": None,
        "itl": None,
        "tokensPerResponse": None,
    }
    two = revisions["2"]["streams"]
    assert (two["count"], two["cut"], two["outputTokens"]) == (1, 1, 4)
    window = sampler.Sampler(router.metrics_registry).window("web", 2, 60, time.monotonic())
    assert window.value("stream-cut-rate") == 1.0


async def test_plain_json_answers_are_not_streams(
    make_router: RouterFactory, model_service: StartModel
) -> None:
    port = await model_service("--ttft-ms", "0", "--token-ms", "0")
    router = await router_for(make_router, port)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{router.port}") as client:
        reply = await client.post("/v1/chat/completions", content=json.dumps({"messages": []}))
    assert reply.status_code == 200 and reply.json()["object"] == "chat.completion"
    snap = router.metrics_registry.snapshot()["web"]["revisions"]["1"]
    assert snap["streams"]["count"] == 0 and snap["requests"]["2xx"] == 1


async def test_hundreds_of_concurrent_streams_all_complete(make_router: RouterFactory) -> None:
    """A bounded version of bench/many_streams.py: every stream open at once, none lost."""
    n, events = 300, 10

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:  # keep-alive: the router reuses its upstream connections
            try:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
            except (asyncio.IncompleteReadError, ConnectionError):
                writer.close()
                return
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                b"transfer-encoding: chunked\r\n\r\n"
            )
            for i in range(events):
                piece = b"data: token-%d\n\n" % i
                writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                await writer.drain()
                await asyncio.sleep(0.1)
            writer.write(b"0\r\n\r\n")

    upstream = await asyncio.start_server(serve, "127.0.0.1", 0, backlog=1024)
    port = upstream.sockets[0].getsockname()[1]
    try:
        router = await router_for(make_router, port)
        gate = asyncio.Semaphore(100)

        async def one() -> bytes:
            async with gate:
                return await stream_once(router.port)

        replies = await asyncio.gather(*(one() for _ in range(n)))
    finally:
        upstream.close()
    assert [r.count(b"data: token-") for r in replies] == [events] * n
    snap = router.metrics_registry.snapshot()["web"]["revisions"]["1"]["streams"]
    assert (snap["count"], snap["cut"], snap["outputTokens"]) == (n, 0, n * events)
