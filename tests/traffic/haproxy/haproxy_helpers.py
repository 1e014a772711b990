"""Raw HTTP clients for the haproxy router's tests (light, so HAProxy is never waiting on
the client): one request with chosen headers, and keep-alive load that records replies."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

import router_helpers
from router_helpers import Reply, Upstream

from changeover.endpoints import Endpoint
from changeover.traffic.haproxy import HAProxyRouter

Headers = Mapping[str, str]
UpstreamFactory = Callable[[str], Awaitable[Upstream]]
HAProxyFactory = Callable[..., Awaitable[HAProxyRouter]]


def ep(up: Upstream) -> Endpoint:
    return Endpoint("127.0.0.1", up.port)


def _request(path: str, headers: Headers) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "host: test"] + [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def get(port: int, path: str = "/", headers: Headers | None = None) -> Reply:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(_request(path, headers or {}))
        return await asyncio.wait_for(router_helpers.read_reply(reader), 10)
    finally:
        writer.close()


async def load(
    port: int,
    n: int,
    *,
    concurrency: int = 8,
    path: str = "/",
    headers_fn: Callable[[int], Headers] | None = None,
) -> list[Reply | BaseException]:
    """``n`` GETs over ``concurrency`` keep-alive connections, in request order; a failed
    request is recorded as its exception."""
    out: list[Reply | BaseException | None] = [None] * n
    numbers = iter(range(n))

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for i in numbers:
                try:
                    writer.write(_request(path, headers_fn(i) if headers_fn else {}))
                    reply = await asyncio.wait_for(router_helpers.read_reply(reader), 10)
                except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
                    out[i] = exc
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    continue
                out[i] = reply
                if reply.headers.get("connection") == "close":
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return [r for r in out if r is not None]


def failures(replies: list[Reply | BaseException]) -> list[object]:
    return [
        r if isinstance(r, BaseException) else r.status
        for r in replies
        if isinstance(r, BaseException) or r.status != 200
    ]


def revisions(replies: list[Reply | BaseException]) -> dict[str, int]:
    """How many replies each revision answered (HAProxy's ``x-changeover-revision``)."""
    out: dict[str, int] = {}
    for r in replies:
        if isinstance(r, Reply):
            rev = r.headers.get("x-changeover-revision", "?")
            out[rev] = out.get(rev, 0) + 1
    return out
