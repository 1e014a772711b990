"""A small WebSocket service that echoes and reports its version (``websockets`` library).

The workload of the WebSocket tests and ``bench/websocket.py``: a realtime API behind the
router. Plain HTTP requests are answered too, so the local platform can probe it.

    GET /healthz        200 "ok" (plain HTTP: the readiness probe)
    GET /deny           403 (plain HTTP: a server that refuses to upgrade)
    WebSocket, any other path:
        "version"       answered with the version (``--version`` / APP_VERSION)
        anything else   echoed back as sent (text or binary)

SIGTERM (or SIGINT) closes every connection with 1001 (going away) and exits 0.

    python3 examples/websocket_echo.py --port 8081 --version v2
"""

from __future__ import annotations

import argparse
import asyncio
import http
import os
import signal

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import SERVER, Request, Response


async def handler(conn: ServerConnection, version: str) -> None:
    try:
        async for message in conn:
            await conn.send(version if message == "version" else message)
    except ConnectionClosed:
        pass


def plain_http(conn: ServerConnection, request: Request) -> Response | None:
    if request.path == "/healthz":
        return conn.respond(http.HTTPStatus.OK, "ok\n")
    if request.path == "/deny":
        return conn.respond(http.HTTPStatus.FORBIDDEN, "no websocket for you\n")
    return None  # a WebSocket handshake


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    parser.add_argument("--version", default=os.environ.get("APP_VERSION", "v1"))
    args = parser.parse_args()
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with serve(
        lambda conn: handler(conn, args.version),
        "127.0.0.1",
        args.port,
        process_request=plain_http,
        server_header=f"{SERVER} websocket_echo/{args.version}",
        max_size=16 * 1024 * 1024,
        compression=None,
    ):
        await stop


if __name__ == "__main__":
    asyncio.run(main())
