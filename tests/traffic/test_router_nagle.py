"""A plain ``http.server`` upstream answers through the router about as fast as directly
(issue 12). ``BaseHTTPRequestHandler`` sends a response's head and body in two writes with
Nagle's algorithm on, so on a reused keep-alive connection the body waits for the ACK of
the head; the router acknowledges at once instead of delaying that ACK (~40 ms).
"""

from __future__ import annotations

import asyncio
import http.server
import socket
import statistics
import threading
import time
from collections.abc import Iterator

import pytest
from router_helpers import RouterFactory

from changeover.endpoints import Endpoint

BODY = b'{"ok":true}\n'


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the case Nagle and delayed ACKs bite

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def sequential_ms(port: int, n: int, *, fresh: bool = False) -> list[float]:
    """``n`` GETs one after another on one keep-alive connection (blocking socket), or
    each on a new connection (``fresh``, as ``curl`` does)."""
    out = []
    sock: socket.socket | None = None
    for _ in range(n):
        t0 = time.perf_counter()
        if sock is None:
            sock = socket.create_connection(("127.0.0.1", port))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        data = b""
        while not data.endswith(BODY):
            piece = sock.recv(65536)
            assert piece, "connection closed"
            data += piece
        out.append((time.perf_counter() - t0) * 1000)
        if fresh:
            sock.close()
            sock = None
    if sock is not None:
        sock.close()
    return out


async def test_an_http_server_upstream_is_about_as_fast_through_the_router(
    make_router: RouterFactory, http_server: int
) -> None:
    router = await make_router()
    await router.set_backends(1, [Endpoint("127.0.0.1", http_server)])
    await router.set_weight({1: 100})
    # The client runs in a thread: the router needs this event loop. Directly, a new
    # connection per request (as curl does): a fresh connection acknowledges at once.
    direct = await asyncio.to_thread(sequential_ms, http_server, 40, fresh=True)
    through = await asyncio.to_thread(sequential_ms, router.port, 40)
    # Through the router's reused upstream connection, delayed ACKs made it 40+ ms a
    # request; allow a generous factor for a loaded machine.
    assert statistics.median(through) < 5 * statistics.median(direct) + 15, (direct, through)
