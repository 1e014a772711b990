"""WebSocket test helpers: the example echo server as a process, a client connection.

``EchoServer`` runs ``examples/websocket_echo.py`` on a free port (ready once its
``/healthz`` answers); ``ws_connect`` opens a ``websockets`` client connection through a
router; ``version`` asks the server which version it is.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import router_helpers
from websockets.asyncio.client import ClientConnection, connect

from changeover.endpoints import Endpoint

ECHO = Path(__file__).resolve().parents[2] / "examples" / "websocket_echo.py"


class EchoServer:
    """``examples/websocket_echo.py`` as a process on a free port."""

    def __init__(self, version: str) -> None:
        self.version = version
        self.port = router_helpers.free_port()
        argv = [sys.executable, str(ECHO), "--port", str(self.port), "--version", version]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"echo server {version} did not start") from None
                time.sleep(0.05)

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint("127.0.0.1", self.port)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def ws_connect(port: int, path: str = "/chat", **headers: str) -> connect:
    return connect(
        f"ws://127.0.0.1:{port}{path}",
        additional_headers=headers,
        max_size=None,
        compression=None,
        open_timeout=5,
    )


async def version(ws: ClientConnection) -> str:
    await ws.send("version")
    answer = await asyncio.wait_for(ws.recv(), 5)
    assert isinstance(answer, str)
    return answer
