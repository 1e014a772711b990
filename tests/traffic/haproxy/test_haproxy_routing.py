"""The haproxy router routes as the builtin one does, with a real HAProxy on loopback.

Given upstreams answering with their name and a started HAProxyRouter, when weights, routes,
the sticky split, preview or maintenance are set, then requests land where they should.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import zlib

import pytest
from haproxy_helpers import (
    HAProxyFactory,
    UpstreamFactory,
    ep,
    failures,
    get,
    load,
    revisions,
)

from changeover import errors
from changeover.spec import models
from changeover.traffic.haproxy import HAProxyRouter

pytestmark = pytest.mark.slow


def header(name: str, **value: str) -> models.RouteMatch:
    return models.RouteMatch.model_validate({"headerName": name, "headerValue": value})


def cookie(name: str, **value: str) -> models.RouteMatch:
    return models.RouteMatch.model_validate({"cookieName": name, "cookieValue": value})


async def two_revisions(
    make_haproxy: HAProxyFactory, upstream: UpstreamFactory, **kw: object
) -> HAProxyRouter:
    router = await make_haproxy(**kw)
    await router.set_backends(1, [ep(await upstream("v1"))])
    await router.set_backends(2, [ep(await upstream("v2"))])
    return router


@pytest.mark.parametrize("canary", [10, 30, 1])
async def test_weights_are_exact_over_2000_requests(
    make_haproxy: HAProxyFactory, upstream: UpstreamFactory, canary: int
) -> None:
    router = await two_revisions(make_haproxy, upstream)
    await router.set_weight({1: 100 - canary, 2: canary})
    replies = await load(router.port, 2000, concurrency=8)
    assert failures(replies) == []
    # Every 100 consecutive weighted requests carry the weights exactly: 2,000 requests
    # are 20 turns of the wheel. (The brief asked for within 2 points.)
    assert revisions(replies) == {"1": 20 * (100 - canary), "2": 20 * canary}
    assert await router.verify_weight({1: 100 - canary, 2: canary})
    assert not await router.verify_weight({1: 50, 2: 50})


async def test_weights_are_spread_not_bunched(
    make_haproxy: HAProxyFactory, upstream: UpstreamFactory
) -> None:
    router = await two_revisions(make_haproxy, upstream)
    await router.set_weight({1: 90, 2: 10})
    replies = await load(router.port, 100, concurrency=1)
    order = [r.headers["x-changeover-revision"] for r in replies if not isinstance(r, Exception)]
    assert order.count("2") == 10
    # Never two canary requests within 5 of each other: smooth weighted round-robin.
    positions = [i for i, rev in enumerate(order) if rev == "2"]
    assert all(b - a >= 5 for a, b in itertools.pairwise(positions))


async def test_no_weights_is_503_and_no_mirroring(
    make_haproxy: HAProxyFactory, upstream: UpstreamFactory
) -> None:
    router = await two_revisions(make_haproxy, upstream)
    reply = await get(router.port)
    assert reply.status == 503
    with pytest.raises(errors.PermanentBackendError, match="cannot mirror"):
        await router.set_mirror_route("shadow", 2, 50, [])
    await router.set_mirror_route("shadow", None, 0, [])  # removing is fine


async def test_header_and_cookie_routes_win_over_weights(
    make_haproxy: HAProxyFactory, upstream: UpstreamFactory
) -> None:
    router = await two_revisions(make_haproxy, upstream)
    await router.set_weight({1: 100})
    pid = await router.worker_pid()
    await router.set_header_route(
        "beta",
        2,
        [
            header("X-Variant", exact="beta"),
            header("X-Tier", prefix="gold"),
            header("X-Build", regex="b[0-9]+"),
            header("X-Team", exact="red team"),
            cookie("variant", exact="b"),
        ],
    )
    assert router.reloads == 1  # the first route on new names grows the configuration

    async def rev(headers: dict[str, str]) -> str:
        reply = await get(router.port, headers=headers)
        assert reply.status == 200
        return reply.headers["x-changeover-revision"]

    assert await rev({}) == "1"
    assert await rev({"x-variant": "beta"}) == "2"
    assert await rev({"X-VARIANT": "beta"}) == "2"  # header names are case-insensitive
    assert await rev({"x-variant": "Beta"}) == "1"  # values are not
    assert await rev({"x-tier": "gold-plus"}) == "2"
    assert await rev({"x-tier": "silver"}) == "1"
    assert await rev({"x-build": "b123"}) == "2"
    assert await rev({"x-build": "b123x"}) == "1"  # regexes match the whole value
    assert await rev({"x-team": "red team"}) == "2"
    assert await rev({"x-team": "red"}) == "1"
    assert await rev({"cookie": "a=1; variant=b; c=2"}) == "2"
    assert await rev({"cookie": "variant=a"}) == "1"

    # Changing and removing routes on known names is data: no reload.
    await router.set_header_route("beta", 2, [header("X-Variant", exact="gamma")])
    assert await rev({"x-variant": "gamma"}) == "2"
    assert await rev({"x-variant": "beta"}) == "1"
    await router.remove_managed_routes()
    assert await rev({"x-variant": "gamma"}) == "1"
    assert router.reloads == 1
    assert await router.worker_pid() != pid  # (the one reload)


async def test_routed_requests_take_no_slot_of_the_weights(
    make_haproxy: HAProxyFactory, upstream: UpstreamFactory
) -> None:
    router = await two_revisions(make_haproxy, upstream)
    await router.set_weight({1: 90, 2: 10})
    await router.set_header_route("canary", 2, [header("X-Canary", exact="always")])

    def routed(i: int) -> bool:
        return i % 3 == 0

    replies = await load(
        router.port, 3000, headers_fn=lambda i: {"x-canary": "always"} if routed(i) else {}
    )
    assert failures(replies) == []
    by_route = revisions([r for i, r in enumerate(replies) if routed(i)])
    weighted = revisions([r for i, r in enumerate(replies) if not routed(i)])
    assert by_route == {"2": 1000}
    # 2,000 weighted requests are 20 turns of the wheel, exactly 90/10, whatever the
    # routed requests in between.
    assert weighted == {"1": 1800, "2": 200}


async def test_sticky_split_keeps_each_user_on_one_side(
    make_haproxy: HAProxyFactory, upstream: UpstreamFactory
) -> None:
    router = await two_revisions(make_haproxy, upstream)
    await router.set_weight({1: 100})
    await router.set_sticky_split(2, models.UserKey(header="X-User-Id"), 30)
    users = [f"user-{i}" for i in range(200)]
    replies = await load(
        router.port, 600, concurrency=8, headers_fn=lambda i: {"x-user-id": users[i % 200]}
    )
    assert failures(replies) == []
    seen: dict[str, set[str]] = {}
    for i, r in enumerate(replies):
        assert not isinstance(r, BaseException)
        seen.setdefault(users[i % 200], set()).add(r.headers["x-changeover-revision"])
    assert all(len(sides) == 1 for sides in seen.values())  # same key → same variant
    # HAProxy's crc32 is zlib's: a user lands where the builtin router would put them.
    for user, sides in seen.items():
        expected = "2" if zlib.crc32(user.encode()) % 100 < 30 else "1"
        assert sides == {expected}, user
    canary_users = sum(1 for sides in seen.values() if sides == {"2"})
    assert 40 <= canary_users <= 80  # about 30% of 200
    # Requests without the key fall through to the weights.
    assert (await get(router.port)).headers["x-changeover-revision"] == "1"
    # A cookie key works the same way.
    await router.set_sticky_split(2, models.UserKey(cookie="uid"), 100)
    reply = await get(router.port, headers={"cookie": "uid=someone"})
    assert reply.headers["x-changeover-revision"] == "2"
    await router.set_sticky_split(None, None, 0)
    reply = await get(router.port, headers={"cookie": "uid=someone"})
    assert reply.headers["x-changeover-revision"] == "1"


async def test_maintenance_page_is_503_with_retry_after(
    make_haproxy: HAProxyFactory, upstream: UpstreamFactory
) -> None:
    router = await two_revisions(make_haproxy, upstream)
    await router.set_weight({1: 100})
    await router.set_maintenance(True, 30)
    reply = await get(router.port)
    assert reply.status == 503
    assert reply.headers["retry-after"] == "30"
    assert reply.headers["content-type"].startswith("text/html")
    assert b"Down for maintenance" in reply.body
    await router.set_maintenance(False, 0)
    assert (await get(router.port)).status == 200
    await router.refresh_metrics()
    assert router.metrics.maintenance == 1


async def test_preview_port_serves_the_preview_revision(
    make_haproxy: HAProxyFactory, upstream: UpstreamFactory
) -> None:
    router = await two_revisions(make_haproxy, upstream, preview_port=0)
    assert router.preview_port
    await router.set_weight({1: 100})
    assert (await get(router.preview_port)).status == 503
    await router.set_preview(2)
    reply = await get(router.preview_port)
    assert (reply.status, reply.body) == (200, b"v2")
    assert (await get(router.port)).body == b"v1"
    await router.set_preview(None)
    assert (await get(router.preview_port)).status == 503


async def test_stream_chunks_are_forwarded_as_they_arrive(
    make_haproxy: HAProxyFactory, upstream: UpstreamFactory
) -> None:
    router = await two_revisions(make_haproxy, upstream)
    await router.set_weight({1: 100})
    reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
    start = time.monotonic()
    writer.write(b"GET /stream?n=20&delay=0.01 HTTP/1.1\r\nhost: t\r\n\r\n")
    arrivals: list[float] = []
    received = b""
    while b"0\r\n\r\n" not in received:
        data = await asyncio.wait_for(reader.read(65536), 5)
        assert data, "closed mid-stream"
        received += data
        arrivals.append(time.monotonic() - start)
    writer.close()
    assert received.count(b"v1-") == 20
    # 20 chunks 10 ms apart: the first is out long before the last is produced (~190 ms),
    # and they come in many separate reads, not one burst at the end.
    assert arrivals[0] < 0.1, arrivals
    assert arrivals[-1] - arrivals[0] > 0.12, arrivals
    assert len(arrivals) >= 10, arrivals


async def test_a_clients_shadow_mark_and_forwarded_proto_never_reach_the_service(
    make_haproxy: HAProxyFactory, upstream: UpstreamFactory
) -> None:
    up = await upstream("v1")
    router = await make_haproxy()
    await router.set_backends(1, [ep(up)])
    await router.set_weight({1: 100})
    reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
    writer.write(
        b"GET /echo HTTP/1.1\r\nhost: x\r\nx-changeover-shadow: 1\r\n"
        b"x-forwarded-proto: https\r\nx-forwarded-for: 6.6.6.6\r\n\r\n"
    )
    await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    writer.close()
    seen = up.requests[0].headers
    assert "x-changeover-shadow" not in seen
    assert seen["x-forwarded-proto"] == "http"
    # ``option forwardfor`` adds its own line after the client's (the helper keeps the last).
    assert seen["x-forwarded-for"] == "127.0.0.1"
