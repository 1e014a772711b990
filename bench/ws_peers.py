"""The two ends of the WebSocket benchmark: an echo server and a load client (RFC 6455).

Both are minimal and cheap per frame on purpose, so that the proxy in between is what the
benchmark measures, not ``websockets``' per-message work (``examples/websocket_echo.py``
is the real-library server the tests use). The server answers a handshake with 101 and
echoes every data frame unmasked; the client keeps ``window`` small masked frames in
flight per connection and counts the echoes.

    python -m bench.ws_peers server PORT
    python -m bench.ws_peers throughput PORT --connections 32 --window 64 --seconds 5
    python -m bench.ws_peers setup PORT --connections 2000 --concurrency 16

The client commands print one JSON line (``messages``/``connections``, ``seconds``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import sys
import time

import uvloop

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
PAYLOAD = b"x" * 32  # a small message: a token, a cursor move, a chat line
MASK = b"\x12\x34\x56\x78"


def accept_key(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def unmask(payload: bytes, mask: bytes) -> bytes:
    n = len(payload)
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


def frame(opcode: int, payload: bytes, mask: bytes | None = None) -> bytes:
    """One final frame; masked (as a client must send) when ``mask`` is given."""
    n = len(payload)
    bit = 0x80 if mask is not None else 0
    if n < 126:
        head = bytes([0x80 | opcode, bit | n])
    elif n < 65536:
        head = bytes([0x80 | opcode, bit | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, bit | 127]) + n.to_bytes(8, "big")
    if mask is None:
        return head + payload
    return head + mask + unmask(payload, mask)


class EchoServer(asyncio.Protocol):
    """HTTP until the handshake (``GET /healthz`` answers 200), then frames echoed."""

    def __init__(self) -> None:
        self.buf = b""
        self.upgraded = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.upgraded:
            self._handshake()
        if self.upgraded:
            self._frames()

    def _handshake(self) -> None:
        assert self.transport is not None
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head, self.buf = self.buf[:end], self.buf[end + 4 :]
        key = b""
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"sec-websocket-key":
                key = value.strip()
        if not key:
            ok = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\nconnection: close\r\n\r\nok\n"
            self.transport.write(ok)
            self.transport.close()
            return
        self.transport.write(
            b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n"
            b"connection: upgrade\r\nsec-websocket-accept: " + accept_key(key) + b"\r\n\r\n"
        )
        self.upgraded = True

    def _frames(self) -> None:
        assert self.transport is not None
        buf, at, out = self.buf, 0, []
        while len(buf) - at >= 6:
            b0, b1 = buf[at], buf[at + 1]
            n, pos = b1 & 0x7F, at + 2
            if n == 126:
                n, pos = int.from_bytes(buf[pos : pos + 2], "big"), pos + 2
            elif n == 127:
                n, pos = int.from_bytes(buf[pos : pos + 8], "big"), pos + 8
            if len(buf) < pos + 4 + n:
                break
            payload = unmask(buf[pos + 4 : pos + 4 + n], buf[pos : pos + 4])
            at = pos + 4 + n
            opcode = b0 & 0x0F
            if opcode == 8:  # close: answer it and end
                out.append(frame(8, payload[:2]))
                self.transport.write(b"".join(out))
                self.transport.close()
                self.buf = b""
                return
            out.append(frame(10 if opcode == 9 else opcode, payload))
        self.buf = buf[at:]
        if out:
            self.transport.write(b"".join(out))


def handshake_request(port: int) -> bytes:
    key = base64.b64encode(os.urandom(16))
    return (
        b"GET /bench HTTP/1.1\r\nhost: 127.0.0.1:%d\r\nupgrade: websocket\r\n"
        b"connection: Upgrade\r\nsec-websocket-version: 13\r\nsec-websocket-key: %b\r\n"
        b"x-user-id: bench\r\n\r\n" % (port, key)
    )


async def open_ws(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(handshake_request(port))
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101 "):
        raise RuntimeError(f"handshake refused: {head[:60]!r}")
    return reader, writer


async def throughput(port: int, connections: int, window: int, seconds: float) -> dict[str, float]:
    batch = frame(2, PAYLOAD, MASK) * window
    echoed = len(frame(2, PAYLOAD)) * window
    counts = [0] * connections
    peers = [await open_ws(port) for _ in range(connections)]
    start = time.monotonic()
    stop_at = start + seconds

    async def run(i: int) -> None:
        reader, writer = peers[i]
        while time.monotonic() < stop_at:
            writer.write(batch)
            await reader.readexactly(echoed)
            counts[i] += window

    await asyncio.gather(*(run(i) for i in range(connections)))
    took = time.monotonic() - start
    for _, writer in peers:
        writer.close()
    return {"messages": float(sum(counts)), "seconds": took}


async def setup(port: int, connections: int, concurrency: int) -> dict[str, float]:
    """Connections opened, one message each way, closed (close frames both ways)."""
    left = [connections]
    message = frame(1, b"hello", MASK)
    close = frame(8, b"\x03\xe8", MASK)

    async def worker() -> None:
        while left[0] > 0:
            left[0] -= 1
            reader, writer = await open_ws(port)
            writer.write(message)
            await reader.readexactly(len(frame(1, b"hello")))
            writer.write(close)
            await reader.readexactly(4)
            writer.close()
            await writer.wait_closed()

    start = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {"connections": float(connections), "seconds": time.monotonic() - start}


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(EchoServer, "127.0.0.1", port, backlog=4096)
    print(f"READY {port}", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="bench.ws_peers")
    p.add_argument("role", choices=["server", "throughput", "setup"])
    p.add_argument("port", type=int)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--window", type=int, default=64)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--concurrency", type=int, default=16)
    args = p.parse_args(argv)
    if args.role == "server":
        uvloop.run(serve(args.port))
        return
    if args.role == "throughput":
        result = uvloop.run(throughput(args.port, args.connections, args.window, args.seconds))
    else:
        result = uvloop.run(setup(args.port, args.connections, args.concurrency))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
