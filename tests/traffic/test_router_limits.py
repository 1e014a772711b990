"""What one client can hold on the builtin router (issue 11 §2 item 2): a deadline for
the request head, a body timeout, a response timeout that starts once the request has
been sent, a send timeout, and a cap on open connections. Short limits keep these fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
import router_helpers
import yaml
from router_helpers import RouterFactory, UpstreamFactory
from test_router_fastpath import one_revision, raw_upstream

from changeover import validation
from changeover.endpoints import Endpoint
from changeover.spec import traffic_settings
from changeover.traffic.builtin import Settings, proxy
from changeover.traffic.builtin import router as router_mod


def short(**kw: float) -> Settings:
    return Settings(drain_grace=1.0, **kw)  # type: ignore[arg-type]


async def until(condition: Callable[[], bool], seconds: float) -> None:
    async with asyncio.timeout(seconds):
        while not condition():  # noqa: ASYNC110 (router-side state, no event to wait on)
            await asyncio.sleep(0.02)


async def trickle(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pieces: list[bytes], gap: float
) -> None:
    """Send ``pieces`` ``gap`` seconds apart until the router answers or hangs up."""
    with contextlib.suppress(ConnectionError):
        for piece in pieces:
            await asyncio.sleep(gap)
            if reader.at_eof() or len(reader._buffer):  # type: ignore[attr-defined]
                return
            writer.write(piece)


async def test_a_head_trickled_line_by_line_gets_408_at_the_header_deadline(
    make_router: RouterFactory, upstream: UpstreamFactory
) -> None:
    router, up = await one_revision(
        make_router, upstream, settings=short(header_timeout=0.5, body_timeout=30)
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    writer.write(b"GET / HTTP/1.1\r\n")
    await trickle(reader, writer, [b"x-%d: 1\r\n" % i for i in range(40)], 0.2)
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert loop.time() - t0 < 4  # not the 8 s the trickle would take
    assert up.requests == []


async def test_a_stalled_body_gets_408_and_the_upstream_request_is_dropped(
    make_router: RouterFactory, upstream: UpstreamFactory
) -> None:
    router, up = await one_revision(make_router, upstream, settings=short(body_timeout=0.5))
    reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
    writer.write(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\nhello")
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b"request body not received in time" in answer
    assert up.requests == []  # the upstream never saw a complete request


async def test_the_response_timeout_starts_when_the_request_has_been_sent(
    make_router: RouterFactory, upstream: UpstreamFactory
) -> None:
    """A slow upload (2 s, in 0.2 s steps) under a 1 s response timeout: answered, not
    504 (the timeout used to run from the head, so a 1 byte/s upload got 504)."""
    router, up = await one_revision(
        make_router, upstream, settings=short(response_timeout=1.0, body_timeout=5.0)
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
    writer.write(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\n")
    await trickle(reader, writer, [b"a"] * 10, 0.2)
    reply = await asyncio.wait_for(router_helpers.read_reply(reader), 5)
    writer.close()
    assert reply.status == 200
    assert up.requests[0].body == b"a" * 10


async def test_the_response_timeout_still_fires_for_a_silent_upstream(
    make_router: RouterFactory, upstream: UpstreamFactory
) -> None:
    router, _ = await one_revision(make_router, upstream, settings=short(response_timeout=0.5))
    reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
    writer.write(b"GET /slow?delay=5 HTTP/1.1\r\nhost: x\r\n\r\n")
    reply = await asyncio.wait_for(router_helpers.read_reply(reader), 5)
    writer.close()
    assert reply.status == 504


async def test_a_client_that_never_reads_is_dropped_at_the_send_timeout(
    make_router: RouterFactory,
) -> None:
    piece = b"x" * 65536

    async def big(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % (len(piece) * 2000))
            for _ in range(2000):
                writer.write(piece)
                await writer.drain()
        writer.close()

    async with raw_upstream(big) as port:
        router = await make_router(settings=short(send_timeout=0.5))
        await router.set_backends(1, [Endpoint("127.0.0.1", port)])
        await router.set_weight({1: 100})
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", router.port))
        _, writer = await asyncio.open_connection(sock=sock)
        writer.write(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        await until(lambda: len(router.state.connections) == 1, 5)
        await until(lambda: not router.state.connections, 10)
        writer.close()


async def test_connections_past_the_cap_get_503_and_a_log_line(
    make_router: RouterFactory,
    upstream: UpstreamFactory,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(proxy, "_full_logged", [-60.0])  # logged once per 10 s
    router, _ = await one_revision(make_router, upstream, settings=short(max_connections=2))
    held = [await asyncio.open_connection("127.0.0.1", router.port) for _ in range(2)]
    await until(lambda: len(router.state.connections) == 2, 5)
    with caplog.at_level(logging.WARNING):
        reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
        answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 503 ")
    assert "2 client connections open (max_connections)" in caplog.text
    held[0][1].close()
    await until(lambda: len(router.state.connections) == 1, 5)
    reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
    writer.write(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
    assert (await asyncio.wait_for(router_helpers.read_reply(reader), 5)).status == 200
    writer.close()
    held[1][1].close()


def test_spec_traffic_builtin_sets_the_limits() -> None:
    spec = traffic_settings.BuiltinSettings.model_validate(
        {"headerTimeoutSeconds": 5, "bodyTimeoutSeconds": 7.5, "maxConnections": 300}
    )
    router = router_mod.factory("web", port=0, **spec.model_dump(exclude_none=True))
    assert router.settings.header_timeout == 5
    assert router.settings.body_timeout == 7.5
    assert router.settings.max_connections == 300
    assert router.settings.send_timeout == Settings().send_timeout
    with pytest.raises(ValueError, match="headerTimeoutSeconds"):
        traffic_settings.BuiltinSettings.model_validate({"headerTimeoutSeconds": 0})


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("websocketDrainSeconds", -1),
        ("websocketDrainSeconds", "soon"),
        ("websocketDrainSeconds", 86_401),
        ("websocketIdleTimeoutSeconds", 0),
        ("websocketIdleTimeoutSeconds", "1h"),
        ("websocketIdleTimeoutSeconds", 86_401),
    ],
)
def test_lint_names_the_websocket_field_when_it_is_bad(
    tmp_path: Path, field: str, bad: object
) -> None:
    doc = {
        "apiVersion": "changeover.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "web"},
        "spec": {
            "template": {"command": ["app"]},
            "service": {"port": 8080},
            "traffic": {"builtin": {field: bad}},
            "strategy": {"canary": {}},
        },
    }
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(doc))
    problems = [p for p in validation.lint(str(path)) if p.severity == "error"]
    assert problems, f"{bad!r} was accepted"
    assert all(field in f"{p.path} {p.message}" for p in problems)
    assert all(str(path) in p.file for p in problems)


def test_websocket_settings_reach_the_router_settings() -> None:
    spec = traffic_settings.BuiltinSettings.model_validate(
        {"websocketDrainSeconds": 0, "websocketIdleTimeoutSeconds": 90}
    )
    router = router_mod.factory("web", port=0, **spec.model_dump(exclude_none=True))
    assert (router.settings.upgrade_drain, router.settings.upgrade_idle) == (0, 90)
    default = router_mod.factory("web", port=0).settings
    assert (default.upgrade_drain, default.upgrade_idle) == (30.0, 3600.0)


def test_a_rollouts_limits_reach_its_router_process_config() -> None:
    """spec.traffic.builtin → the router process's factory arguments → Settings."""
    from changeover import local_server
    from changeover.spec import load

    (doc,) = load.parse_rollouts(
        load.load_text(
            "apiVersion: changeover.dev/v1alpha1\nkind: Rollout\nmetadata: {name: web}\n"
            "spec:\n  template: {command: [python3, app.py]}\n  service: {port: 8080}\n"
            "  strategy: {canary: {steps: [{setWeight: 50}]}}\n"
            "  traffic: {builtin: {sendTimeoutSeconds: 9, maxConnections: 77}}\n"
        )
    )
    config = local_server.router_config(doc)
    router = router_mod.factory("web", **{**config, "port": 0})
    assert router.settings.send_timeout == 9
    assert router.settings.max_connections == 77


async def test_an_error_answer_reaches_a_client_that_is_still_sending(
    make_router: RouterFactory, upstream: UpstreamFactory
) -> None:
    """A malformed request answered 400 while the client keeps uploading: the router
    closes lingering (as nginx does), so the answer is read, not lost to a reset."""
    router, up = await one_revision(make_router, upstream)
    reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
    writer.write(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: zz\r\n\r\n")
    with contextlib.suppress(ConnectionError):
        for _ in range(20):
            writer.write(b"x" * 16384)
            await writer.drain()
            await asyncio.sleep(0.01)
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert up.requests == []
