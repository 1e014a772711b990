"""Routing through a real router: weights, header and cookie routes, sticky split, mirror."""

from __future__ import annotations

import asyncio
import collections
import time

import httpx
import router_helpers
from router_helpers import RouterFactory, UpstreamFactory, ep

from changeover.endpoints import Endpoint
from changeover.spec import models
from changeover.traffic.builtin import BuiltinRouter


async def two_revisions(make_router: RouterFactory, upstream: UpstreamFactory) -> BuiltinRouter:
    v1, v2 = await upstream("v1"), await upstream("v2")
    router = await make_router()
    await router.set_backends(1, [ep(v1)])
    await router.set_backends(2, [ep(v2)])
    await router.set_weight({1: 100})
    return router


async def count(router: BuiltinRouter, n: int) -> collections.Counter[str]:
    replies = await router_helpers.load(router.port, n)
    assert all(isinstance(r, router_helpers.Reply) and r.status == 200 for r in replies)
    return collections.Counter(
        r.body.decode() for r in replies if isinstance(r, router_helpers.Reply)
    )


async def test_weights_hold_within_two_points_over_2000_requests(
    make_router: RouterFactory, upstream: UpstreamFactory
) -> None:
    router = await two_revisions(make_router, upstream)
    await router.set_weight({1: 90, 2: 10})
    assert await router.verify_weight({1: 90, 2: 10})
    assert not await router.verify_weight({1: 80, 2: 20})
    seen = await count(router, 2000)
    assert abs(seen["v2"] / 2000 * 100 - 10) <= 2
    await router.set_weight({1: 37, 2: 63})
    seen = await count(router, 2000)
    assert abs(seen["v2"] / 2000 * 100 - 63) <= 2


def header(name: str, **value: str) -> models.RouteMatch:
    return models.RouteMatch(header_name=name, header_value=models.StringMatch(**value))


def cookie(name: str, **value: str) -> models.RouteMatch:
    return models.RouteMatch(cookie_name=name, cookie_value=models.StringMatch(**value))


async def test_header_and_cookie_routes(
    make_router: RouterFactory, upstream: UpstreamFactory
) -> None:
    router = await two_revisions(make_router, upstream)
    await router.set_header_route("exact", 2, [header("X-Variant", exact="b")])
    await router.set_header_route("prefix", 2, [header("x-user", prefix="beta-")])
    await router.set_header_route("regex", 2, [header("x-region", regex="eu-(west|north)-[0-9]")])
    await router.set_header_route("cookie", 2, [cookie("canary", exact="always")])
    base = f"http://127.0.0.1:{router.port}"
    async with httpx.AsyncClient(base_url=base) as c:

        async def who(headers: dict[str, str]) -> str:
            return (await c.get("/", headers=headers)).text

        assert await who({"x-variant": "b"}) == "v2"
        assert await who({"x-variant": "bb"}) == "v1"
        assert await who({"x-user": "beta-42"}) == "v2"
        assert await who({"x-user": "alpha-42"}) == "v1"
        assert await who({"x-region": "eu-west-1"}) == "v2"
        assert await who({"x-region": "eu-west-1x"}) == "v1"  # the whole value must match
        assert await who({"cookie": "a=1; canary=always"}) == "v2"
        assert await who({"cookie": "canary=never"}) == "v1"
        assert await who({}) == "v1"
        await router.set_header_route("exact", None, [])
        assert await who({"x-variant": "b"}) == "v1"
        await router.remove_managed_routes()
        assert await who({"x-user": "beta-42"}) == "v1"


async def test_sticky_split_keeps_users_on_one_side(
    make_router: RouterFactory, upstream: UpstreamFactory
) -> None:
    router = await two_revisions(make_router, upstream)
    await router.set_sticky_split(2, models.UserKey(header="x-user-id"), 30)
    base = f"http://127.0.0.1:{router.port}"
    sides: dict[str, str] = {}
    async with httpx.AsyncClient(base_url=base) as c:
        for user in range(400):
            key = f"user-{user}"
            first = (await c.get("/", headers={"x-user-id": key})).text
            again = (await c.get("/", headers={"x-user-id": key})).text
            assert first == again
            sides[key] = first
        assert (await c.get("/")).text == "v1"  # no key: the weights decide
    share = sum(1 for s in sides.values() if s == "v2") / len(sides)
    assert 0.22 <= share <= 0.38

    await router.set_sticky_split(2, models.UserKey(cookie="uid"), 30)
    async with httpx.AsyncClient(base_url=base) as c:
        for key, side in list(sides.items())[:50]:
            assert (await c.get("/", headers={"cookie": f"uid={key}"})).text == side


async def test_mirror_copies_a_share_and_client_sees_only_primary(
    make_router: RouterFactory, upstream: UpstreamFactory
) -> None:
    v1, v2 = await upstream("v1"), await upstream("shadow")
    router = await make_router()
    await router.set_backends(1, [ep(v1)])
    await router.set_backends(2, [ep(v2)])
    await router.set_weight({1: 100})
    await router.set_mirror_route("shadow", 2, 25, [])
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{router.port}") as c:
        bodies = {
            (await c.post("/echo", content=b"payload-%d" % i)).headers["x-upstream"]
            for i in range(200)
        }
    await router.mirror_idle()
    assert bodies == {"v1"}
    assert len(v1.requests) == 200
    assert len(v2.requests) == 50
    assert all(r.headers["x-changeover-shadow"] == "1" for r in v2.requests)
    assert {r.body for r in v2.requests} <= {b"payload-%d" % i for i in range(200)}
    m = router.metrics.revision(2)
    assert m.mirror_sent == 50 and m.mirror_codes[2] == 50 and m.codes[2] == 0

    # Only matching requests are mirrored when the route has a match.
    await router.set_mirror_route("shadow", 2, 100, [header("x-mirror", exact="yes")])
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{router.port}") as c:
        await c.get("/")
        await c.get("/", headers={"x-mirror": "yes"})
    await router.mirror_idle()
    assert len(v2.requests) == 51


async def test_mirror_queue_full_drops_and_counts(
    make_router: RouterFactory, upstream: UpstreamFactory
) -> None:
    v1 = await upstream("v1")
    router = await make_router()
    await router.set_backends(1, [ep(v1)])
    await router.set_weight({1: 100})
    await router.set_mirror_route("m", 2, 100, [])  # revision 2 has no backend
    assert router.mirror is not None
    router.mirror.concurrency = 0  # nothing leaves the queue: it fills
    router.mirror.queue_size = 3
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{router.port}") as c:
        for _ in range(5):
            assert (await c.get("/")).text == "v1"
    assert router.metrics.revision(2).mirror_dropped == 2


async def test_mirror_skips_bodies_over_one_mebibyte(
    make_router: RouterFactory, upstream: UpstreamFactory
) -> None:
    v1, v2 = await upstream("v1"), await upstream("shadow")
    router = await make_router()
    await router.set_backends(1, [ep(v1)])
    await router.set_backends(2, [ep(v2)])
    await router.set_weight({1: 100})
    await router.set_mirror_route("m", 2, 100, [])
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{router.port}") as c:
        big = await c.post("/echo", content=b"x" * (1024 * 1024 + 1))
    await router.mirror_idle()
    assert big.status_code == 200 and len(big.content) > 1024 * 1024
    assert v2.requests == [] and router.metrics.revision(2).mirror_dropped == 1


async def slow_shadow(delay: float) -> tuple[asyncio.Server, list[float]]:
    """A keep-alive upstream answering every request after ``delay`` seconds; it records
    when each copy arrived."""
    arrived: list[float] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                arrived.append(time.monotonic())
                await asyncio.sleep(delay)
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", 0), arrived


async def test_a_slow_shadow_gets_every_copy_and_a_dead_one_costs_nothing(
    make_router: RouterFactory, upstream: UpstreamFactory
) -> None:
    """Given 100% mirroring to a shadow that takes 50 ms per answer, 400 requests over 32
    connections all reach it within a few seconds (copies are sent many at a time: one
    after another would take 20 s), and the clients only ever see the primary. Then with the shadow
    gone, every copy fails fast, counted, and the primary answers everything."""
    v1 = await upstream("v1")
    server, arrived = await slow_shadow(0.05)
    router = await make_router()
    await router.set_backends(1, [ep(v1)])
    await router.set_backends(2, [Endpoint("127.0.0.1", server.sockets[0].getsockname()[1])])
    await router.set_weight({1: 100})
    await router.set_mirror_route("shadow", 2, 100, [])
    t0 = time.monotonic()
    replies = await router_helpers.load(router.port, 400, concurrency=32)
    await asyncio.wait_for(router.mirror_idle(), 10)
    assert all(isinstance(r, router_helpers.Reply) and r.body == b"v1" for r in replies)
    m = router.metrics.revision(2)
    assert (m.mirror_sent, m.mirror_dropped, m.mirror_failed) == (400, 0, 0)
    assert len(arrived) == 400 and max(arrived) - t0 < 6, max(arrived) - t0

    server.close()
    await server.wait_closed()
    await router.set_backends(2, [Endpoint("127.0.0.1", router_helpers.free_port())])
    replies = await router_helpers.load(router.port, 400, concurrency=32)
    await asyncio.wait_for(router.mirror_idle(), 10)
    assert all(isinstance(r, router_helpers.Reply) and r.body == b"v1" for r in replies)
    assert m.mirror_failed + m.mirror_dropped == 400 and m.mirror_sent == 400


async def test_a_mirror_over_its_cpu_budget_drops_copies_not_requests(
    make_router: RouterFactory, upstream: UpstreamFactory
) -> None:
    """Given a mirror whose CPU budget is spent (and refills next to never), copies wait
    in the queue, then are dropped and counted once it is full; every real request is
    still answered by the primary."""
    v1, v2 = await upstream("v1"), await upstream("shadow")
    router = await make_router()
    await router.set_backends(1, [ep(v1)])
    await router.set_backends(2, [ep(v2)])
    await router.set_weight({1: 100})
    await router.set_mirror_route("shadow", 2, 100, [])
    assert router.mirror is not None
    router.mirror.cpu_share = 1e-9
    router.mirror._tokens = -1.0
    router.mirror.queue_size = 10
    replies = await router_helpers.load(router.port, 50, concurrency=4)
    assert all(isinstance(r, router_helpers.Reply) and r.body == b"v1" for r in replies)
    m = router.metrics.revision(2)
    assert v2.requests == [] and m.mirror_sent == 0 and m.mirror_dropped == 40


async def test_copies_queued_over_budget_still_go_out_when_traffic_stops(
    make_router: RouterFactory, upstream: UpstreamFactory
) -> None:
    """Given a mirror that has overspent its CPU budget by 20 ms, when a burst of 20
    requests ends and the router falls idle, the 20 queued copies still reach the shadow
    within a couple of seconds (the budget refills with time, not only with CPU use)."""
    v1, v2 = await upstream("v1"), await upstream("shadow")
    router = await make_router()
    await router.set_backends(1, [ep(v1)])
    await router.set_backends(2, [ep(v2)])
    await router.set_weight({1: 100})
    await router.set_mirror_route("shadow", 2, 100, [])
    assert router.mirror is not None
    router.mirror._tokens = -0.02
    replies = await router_helpers.load(router.port, 20, concurrency=4)
    assert all(isinstance(r, router_helpers.Reply) and r.body == b"v1" for r in replies)
    await asyncio.wait_for(router.mirror_idle(), 3)
    assert len(v2.requests) == 20 and router.metrics.revision(2).mirror_sent == 20
