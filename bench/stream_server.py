"""A small upstream for the benchmark: ``python -m bench.stream_server MODE PORT...``.

MODE ``stream``: every request is answered with a chunked body of 20 pieces sent 5 ms apart
(an LLM token stream); ``long``: 60 SSE events 0.5 s apart (a 30-second stream, for many
concurrent long-lived streams); ``slow``: every request is answered (~100 bytes) after 1 second, a
shadow that cannot keep up. Runs on uvloop; HTTP/1.1 keep-alive; request bodies are read
by content-length only (the benchmark sends none).
"""

from __future__ import annotations

import asyncio
import signal
import sys

import uvloop

CHUNKS = 20
GAP = 0.005
SHAPES = {"stream": (CHUNKS, GAP), "long": (60, 0.5)}  # pieces, seconds apart
SLOW = 1.0
BODY = b'{"id":"bench","choices":[{"text":"' + b"x" * 54 + b'"}],"model":"m"}\n'


class Conn(asyncio.Protocol):
    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.buf = b""
        self.t: asyncio.Transport | None = None
        self.busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.t = None

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self._next()

    def _next(self) -> None:
        if self.busy:
            return
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        self.buf = self.buf[end + 4 :]
        self.busy = True
        loop = asyncio.get_running_loop()
        if self.mode in SHAPES:
            self._write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                b"transfer-encoding: chunked\r\n\r\n"
            )
            self._piece(0)
        else:
            loop.call_later(SLOW, self._plain)

    def _write(self, data: bytes) -> None:
        if self.t is not None:
            self.t.write(data)

    def _piece(self, i: int) -> None:
        if self.t is None:
            return  # the client left: stop streaming to it
        chunks, gap = SHAPES[self.mode]
        piece = b"data: token-%02d\n\n" % i
        self._write(b"%x\r\n%b\r\n" % (len(piece), piece))
        if i + 1 < chunks:
            asyncio.get_running_loop().call_later(gap, self._piece, i + 1)
        else:
            self._write(b"0\r\n\r\n")
            self._done()

    def _plain(self) -> None:
        self._write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%b" % (len(BODY), BODY))
        self._done()

    def _done(self) -> None:
        self.busy = False
        self._next()


async def main(mode: str, ports: list[int]) -> None:
    loop = asyncio.get_running_loop()
    servers = [
        await loop.create_server(lambda: Conn(mode), "127.0.0.1", p, backlog=1024) for p in ports
    ]
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    for s in servers:
        s.close()


if __name__ == "__main__":
    uvloop.run(main(sys.argv[1], [int(p) for p in sys.argv[2:]]))
