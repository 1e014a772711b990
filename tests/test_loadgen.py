"""The load generator: safety limits, what it reports, and how it copes with real servers.

Given a real examples/app.py process (or a tiny in-test server when the test needs to
control the bytes on the wire), when load runs, then the report says what users saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from changeover import loadgen

APP = Path(__file__).resolve().parents[1] / "examples" / "app.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def app_process(*args: str) -> Iterator[str]:
    """examples/app.py on a free port, ready; yields its base URL."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(APP), "--port", str(port), *args],
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("examples/app.py did not start") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def gen(url: str, rate: float = 200, **kwargs: object) -> loadgen.LoadGenerator:
    params: dict[str, object] = {"concurrency": 8, "max_requests": 10_000, "max_seconds": 30}
    params.update(kwargs)
    return loadgen.LoadGenerator(url, rate, **params)  # type: ignore[arg-type]


# --- safety rules ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/",
        "http://10.0.0.1:8080/",
        "http://192.168.1.2/",
        "http://0.0.0.0:8080/",
        "http://localhost.example.com/",
        "https://127.0.0.1/",
        "ftp://127.0.0.1/",
    ],
)
def test_refuses_anything_but_loopback_http(url: str) -> None:
    with pytest.raises(ValueError):
        gen(url)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080", "http://localhost:1/", "http://[::1]:9/", "http://127.9.9.9/"]
)
def test_accepts_loopback(url: str) -> None:
    gen(url)


@pytest.mark.parametrize(
    ("rate", "kwargs"),
    [
        (0, {}),
        (loadgen.MAX_RATE_PER_S + 1, {}),
        (10, {"concurrency": 0}),
        (10, {"max_requests": 0}),
        (10, {"max_seconds": 0}),
        (10, {"max_seconds": loadgen.MAX_SECONDS + 1}),
        (10, {"path": "no-slash"}),
    ],
)
def test_rejects_unbounded_or_silly_settings(rate: float, kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        gen("http://127.0.0.1:8080", rate, **kwargs)


def test_limits_are_mandatory() -> None:
    with pytest.raises(TypeError):
        loadgen.LoadGenerator("http://127.0.0.1:8080", 10, concurrency=1)  # type: ignore[call-arg]


def test_percentile_is_nearest_rank() -> None:
    assert loadgen._percentile([1, 2, 3, 4], 50) == 2
    assert loadgen._percentile([float(i) for i in range(1, 101)], 99) == 99
    assert loadgen._percentile([], 99) == 0.0


# --- against examples/app.py -------------------------------------------------------------


@pytest.mark.slow
async def test_holds_the_rate_and_counts_the_revision() -> None:
    with app_process("--version", "v7") as url:
        report = await gen(url, 300, max_seconds=2).run()
    assert report.stopped_by == "max_seconds"
    assert 540 <= report.total <= 610  # 300/s for 2 s
    assert report.failures == 0 and report.ok == report.total
    assert report.by_revision == {"v7": report.total}
    assert report.status_counts == {200: report.total}
    assert sum(sum(second.values()) for second in report.timeline) == report.total
    assert len(report.timeline) in (2, 3)
    assert all(second.keys() == {"v7"} for second in report.timeline)
    assert 0 < report.latency_p50_ms <= report.latency_p99_ms < 1000
    assert report.share("v7") == 1.0


@pytest.mark.slow
async def test_max_requests_ends_the_run() -> None:
    with app_process() as url:
        report = await gen(url, 500, max_requests=40).run()
    assert report.stopped_by == "max_requests"
    assert report.total == 40


@pytest.mark.slow
async def test_stop_returns_what_was_sent_so_far() -> None:
    with app_process() as url:
        g = gen(url, 100)
        await g.start()
        await asyncio.sleep(0.5)
        live = g.snapshot()
        report = await g.stop()
        assert await g.stop() is report  # idempotent
    assert report.stopped_by == "stopped"
    assert 30 <= report.total <= 70
    assert live.stopped_by == "running" and live.total <= report.total


@pytest.mark.slow
async def test_failures_are_counted_with_examples() -> None:
    with app_process("--version", "bad", "--error-rate", "0.5") as url:
        report = await gen(url, 300, max_requests=400).run()
    assert 120 <= report.failures <= 280
    assert report.failures_by_revision == {"bad": report.failures}
    assert set(report.status_counts) == {200, 500}
    assert report.failure_examples and all("HTTP 500" in e for e in report.failure_examples)
    assert sum(report.failure_timeline) == report.failures
    assert report.error_rate == pytest.approx(report.failures / report.total)


@pytest.mark.slow
async def test_reads_sse_streams_to_the_end() -> None:
    with app_process("--version", "v2") as url:
        g = gen(url, 50, max_requests=20, path="/stream?chunks=3&interval_ms=20")
        report = await g.run()
    assert report.total == 20 and report.failures == 0
    assert report.by_revision == {"v2": 20}  # from x-app-version: the body is not JSON
    assert report.latency_p50_ms >= 40  # two 20 ms gaps between three chunks


async def test_connection_refused_is_a_failure_not_a_crash() -> None:
    report = await gen(f"http://127.0.0.1:{free_port()}", 100, max_requests=10).run()
    assert report.total == report.failures == 10
    assert report.by_revision == {"unknown": 10}
    assert "ConnectionRefusedError" in report.failure_examples[0]


# --- against a server whose bytes the test controls ------------------------------------


@contextlib.asynccontextmanager
async def tiny_server(*, close_after_each: bool) -> AsyncIterator[str]:
    """Echoes x-user-id back as the revision header; can hang up like an idle timeout."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                user = "none"
                for line in head.decode().split("\r\n"):
                    if line.lower().startswith("x-user-id:"):
                        user = line.split(":", 1)[1].strip()
                body = b"{}"
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + f"x-changeover-revision: rev-{user}\r\n".encode()
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
                if close_after_each:
                    # No "Connection: close": the client learns only when it reuses it.
                    await asyncio.sleep(0.01)
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}"


async def test_headers_fn_and_the_revision_header() -> None:
    async with tiny_server(close_after_each=False) as url:
        report = await gen(
            url, 200, max_requests=30, headers_fn=lambda i: {"x-user-id": str(i % 3)}
        ).run()
    assert report.by_revision == {"rev-0": 10, "rev-1": 10, "rev-2": 10}


async def test_retries_a_keep_alive_connection_the_server_dropped() -> None:
    async with tiny_server(close_after_each=True) as url:
        report = await gen(url, 50, concurrency=1, max_requests=20).run()
    assert report.failures == 0, report.failure_examples
    assert report.total == 20
