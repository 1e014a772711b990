"""Streaming through a proxy: time to the first chunk and to the last, per request.

A blocking keep-alive client (time.perf_counter around recv) that parses the chunked
response as it arrives and notes when each chunk's data is complete. A proxy that buffers
shows up as a late first chunk and as chunks arriving together ("batched": chunks whose
data completed less than 1 ms after the previous one, when the upstream spaced them 5 ms).
"""

from __future__ import annotations

import itertools
import socket
import time
from dataclasses import dataclass


@dataclass
class StreamTiming:
    ttfb_ms: float  # request sent → first chunk's data complete
    total_ms: float  # request sent → terminating chunk
    chunks: int
    batched: int


class _Conn:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), 5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.t_last = 0.0

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        self.t_last = time.perf_counter()
        if not data:
            raise ConnectionError("closed mid-response")
        self.buf += data

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def close(self) -> None:
        self.sock.close()


def one(conn: _Conn, path: str = "/stream") -> StreamTiming:
    req = b"GET %s HTTP/1.1\r\nhost: bench\r\naccept: text/event-stream\r\n\r\n" % path.encode()
    t0 = time.perf_counter()
    conn.sock.sendall(req)
    status = conn.line()
    if b" 200 " not in status + b" ":
        raise RuntimeError(f"stream answered {status!r}")
    while conn.line():
        pass
    times: list[float] = []
    while True:
        size = int(conn.line().split(b";")[0], 16)
        if size == 0:
            conn.line()
            times.append(conn.t_last)
            break
        conn.exactly(size + 2)
        times.append(conn.t_last)
    data_times = times[:-1]
    batched = sum(1 for a, b in itertools.pairwise(data_times) if b - a < 0.001)
    return StreamTiming(
        ttfb_ms=(data_times[0] - t0) * 1000,
        total_ms=(times[-1] - t0) * 1000,
        chunks=len(data_times),
        batched=batched,
    )


def measure(port: int, n: int) -> list[StreamTiming]:
    conn = _Conn(port)
    try:
        one(conn)  # warm the proxy's upstream connection
        return [one(conn) for _ in range(n)]
    finally:
        conn.close()
