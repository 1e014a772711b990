"""The builtin router's Python cost per request, without sockets: ``python -m bench.micro``.

Wires one ``ClientConnection`` and one pooled ``UpstreamConnection`` to fake transports
and drives N request/response pairs through them on a running (uv)loop: what is left is
parsing, routing, head rewriting, metrics and bookkeeping, i.e. what profiling can improve
(the socket syscalls are the same for every proxy). Prints microseconds per request.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import uvloop

from changeover.endpoints import Endpoint
from changeover.spec import models
from changeover.traffic.builtin import BuiltinRouter, Registry, proxy, upstream

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nx-user-id: bench\r\n\r\n"
BROWSER_REQUEST = (
    b"GET /api/v1/items?page=2 HTTP/1.1\r\nHost: shop.example.com\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/120.0\r\n"
    b"Accept: application/json\r\nAccept-Language: en-US,en;q=0.5\r\n"
    b"Accept-Encoding: gzip, deflate, br\r\nReferer: https://shop.example.com/\r\n"
    b"Cookie: session=abc123; theme=dark\r\nx-user-id: u-1234\r\nConnection: keep-alive\r\n\r\n"
)
BODY = b'{"id":"bench","choices":[{"text":"' + b"x" * 54 + b'"}],"model":"m"}\n'
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sun, 23 Nov 2026 19:00:00 GMT\r\n"
    b"Content-Type: application/json\r\nContent-Length: %d\r\nConnection: keep-alive\r\n\r\n%b"
    % (len(BODY), BODY)
)


class FakeTransport:
    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.out.append(data)

    def writelines(self, data: Any) -> None:
        self.out.extend(data)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    abort = close

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


def unique_responses(n: int) -> list[bytes]:
    """``RESPONSE`` with a distinct ``x-request-id`` each: no two heads alike (the worst
    case for the proxy's memo of response heads)."""
    at = RESPONSE.index(b"\r\n") + 2
    return [RESPONSE[:at] + b"x-request-id: %016x\r\n" % i + RESPONSE[at:] for i in range(n)]


# ``--flag``: one flag the router evaluates per request, 50% of users on (a rule, a split
# by the user header and the variant counted per revision).
FLAG = {
    "type": "boolean",
    "variants": {"on": True, "off": False},
    "defaultVariant": "off",
    "rules": [{"when": [{"attribute": "plan", "in": ["beta"]}], "variant": "on"}],
    "split": [{"variant": "on", "weight": 50}],
    "requestContext": {"targetingKey": {"header": "x-user-id"}},
    "router": {"rollout": "micro", "header": "x-flag-checkout"},
}


async def run(
    n: int, request: bytes, responses: list[bytes] | None = None, *, flag: bool = False
) -> float:
    router = BuiltinRouter("micro", port=0, metrics=Registry())
    await router.start()
    try:
        await router.set_backends(1, [Endpoint("127.0.0.1", 1)])
        await router.set_backends(2, [Endpoint("127.0.0.1", 1)])
        await router.set_weight({1: 90, 2: 10})
        match = models.RouteMatch(
            header_name="x-canary", header_value=models.StringMatch(exact="always")
        )
        await router.set_header_route("canary", 2, [match])
        await router.set_sticky_split(2, models.UserKey(header="x-user-id"), 10)
        if flag:
            await router.set_flag("checkout", FLAG)
        st = router.state
        client = proxy.ClientConnection(st)
        ct = FakeTransport()
        client.connection_made(ct)  # type: ignore[arg-type]
        ups: dict[int, upstream.UpstreamConnection] = {}
        uts: dict[int, FakeTransport] = {}
        for rev, rp in st.pool.revisions.items():
            ep = rp.endpoints[0]
            conn = upstream.UpstreamConnection(ep, st.batch)
            t = FakeTransport()
            conn.connection_made(t)  # type: ignore[arg-type]
            ep.release(conn)
            ups[rev], uts[rev] = conn, t
        pairs = list(zip(ups.values(), uts.values(), strict=True))
        flush = st.batch.flush  # writes wait for the end of the loop pass
        t0 = time.process_time()
        for i in range(n):
            client.data_received(request)
            flush()
            for conn, t in pairs:
                if t.out:
                    t.out.clear()
                    conn.data_received(RESPONSE if responses is None else responses[i])
                    break
            else:
                raise RuntimeError(f"nothing sent upstream; client got {ct.out[-1:]!r}")
            flush()
            if not i % 32:
                await asyncio.sleep(0)  # the loop's own pass, as with 32 connections
            if not ct.out:
                raise RuntimeError("the client got no response")
            ct.out.clear()
        return (time.process_time() - t0) / n * 1e6
    finally:
        await router.close()


def main() -> None:
    p = argparse.ArgumentParser(prog="bench.micro")
    p.add_argument("-n", type=int, default=200_000)
    p.add_argument("--browser", action="store_true", help="a 10-header browser request")
    p.add_argument(
        "--unique-heads", action="store_true", help="every response head distinct (memo misses)"
    )
    p.add_argument("--flag", action="store_true", help="evaluate a flag per request (FLAG)")
    args = p.parse_args()
    req = BROWSER_REQUEST if args.browser else REQUEST
    responses = unique_responses(args.n) if args.unique_heads else None
    best = min(uvloop.run(run(args.n, req, responses, flag=args.flag)) for _ in range(3))
    print(f"{best:.2f} us/request (best of 3, n={args.n})")


if __name__ == "__main__":
    main()
