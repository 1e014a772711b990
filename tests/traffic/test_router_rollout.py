"""What rollouts need from the router: nothing lost while weights and replicas change."""

from __future__ import annotations

import asyncio

import httpx
import router_helpers
from router_helpers import RouterFactory, UpstreamFactory, ep

from changeover.endpoints import Endpoint
from changeover.traffic.builtin import Settings


def failures(replies: list[router_helpers.Reply | BaseException]) -> list[object]:
    return [
        r if isinstance(r, BaseException) else r.status
        for r in replies
        if isinstance(r, BaseException) or r.status != 200
    ]


async def test_weight_changes_and_replica_swaps_under_load_lose_nothing(
    make_router: RouterFactory, upstream: UpstreamFactory
) -> None:
    a, b, c = await upstream("v1"), await upstream("v2"), await upstream("v2")
    router = await make_router()
    await router.set_backends(1, [ep(a)])
    await router.set_weight({1: 100})

    async def rollout() -> None:
        await router.set_backends(2, [ep(b)])
        for w in (10, 25, 50, 75, 100):
            await asyncio.sleep(0.05)
            await router.set_weight({1: 100 - w, 2: w})
        # Replace revision 2's replica, then retire revision 1 the way the controller does.
        await router.set_backends(2, [ep(b), ep(c)])
        await asyncio.sleep(0.05)
        await router.set_backends(2, [ep(c)])
        await router.drain(ep(b), 2)
        await b.stop()
        await router.set_backends(1, [])
        await router.drain(ep(a), 2)
        await a.stop()

    replies, _ = await asyncio.gather(
        router_helpers.load(router.port, 3000, concurrency=16, path="/slow?delay=0.001"),
        rollout(),
    )
    assert failures(replies) == []
    bodies = [r.body for r in replies if isinstance(r, router_helpers.Reply)]
    assert bodies[0] == b"v1" and bodies[-1] == b"v2"
    assert router.backends() == {2: [ep(c)]}


async def test_drain_waits_for_in_flight_requests(
    make_router: RouterFactory, upstream: UpstreamFactory
) -> None:
    slow, other = await upstream("slow"), await upstream("other")
    router = await make_router()
    await router.set_backends(1, [ep(slow)])
    await router.set_weight({1: 100})
    loop = asyncio.get_running_loop()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{router.port}") as client:
        in_flight = asyncio.create_task(client.get("/slow?delay=0.5"))
        await asyncio.sleep(0.1)
        await router.set_backends(1, [ep(slow), ep(other)])
        t0 = loop.time()
        drain = asyncio.create_task(router.drain(ep(slow), 5))
        await asyncio.sleep(0.05)
        during = await client.get("/")  # new requests avoid the draining endpoint
        await drain
        waited = loop.time() - t0
        response = await in_flight
    assert response.status_code == 200 and response.text == "slow"
    assert during.text == "other"
    assert 0.3 <= waited < 1.0
    assert router.backends() == {1: [ep(other)]}


async def test_drain_gives_up_after_grace(
    make_router: RouterFactory, upstream: UpstreamFactory
) -> None:
    slow = await upstream("slow")
    router = await make_router()
    await router.set_backends(1, [ep(slow)])
    await router.set_weight({1: 100})
    loop = asyncio.get_running_loop()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{router.port}") as client:
        in_flight = asyncio.create_task(client.get("/slow?delay=1"))
        await asyncio.sleep(0.1)
        t0 = loop.time()
        left = await router.drain(ep(slow), 0.2)
        assert 0.15 <= loop.time() - t0 < 0.8  # the grace, not the request's whole second
        assert left == 1  # the controller turns this into a DrainTimedOut event
        assert (await in_flight).status_code == 200  # not cut: the platform decides that


async def test_drain_waits_for_an_endpoint_already_taken_out(
    make_router: RouterFactory, upstream: UpstreamFactory
) -> None:
    """A replica that went NotReady left the pool (set_backends) with a request in flight;
    when it is then stopped, drain still waits for that request."""
    slow, other = await upstream("slow"), await upstream("other")
    router = await make_router()
    await router.set_backends(1, [ep(slow)])
    await router.set_weight({1: 100})
    loop = asyncio.get_running_loop()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{router.port}") as client:
        in_flight = asyncio.create_task(client.get("/slow?delay=0.6"))
        await asyncio.sleep(0.1)
        await router.set_backends(1, [ep(other)])  # slow is NotReady
        assert (await client.get("/")).text == "other"
        t0 = loop.time()
        left = await router.drain(ep(slow), 5)
        waited = loop.time() - t0
        response = await in_flight
    assert response.status_code == 200 and response.text == "slow"
    assert left == 0
    assert 0.3 <= waited < 1.5
    assert router.state.pool.retired == []


async def test_refused_endpoint_is_retried_on_another(
    make_router: RouterFactory, upstream: UpstreamFactory
) -> None:
    up = await upstream("v1")
    dead = Endpoint("127.0.0.1", router_helpers.free_port())
    router = await make_router()
    await router.set_backends(1, [dead, ep(up), dead])  # duplicates collapse
    await router.set_weight({1: 100})
    replies = await router_helpers.load(router.port, 200, concurrency=8)
    assert failures(replies) == []
    m = router.metrics.revision(1)
    assert m.connect_errors >= 1 and m.retries == m.connect_errors and m.codes[2] == 200


async def test_all_endpoints_refusing_is_502(make_router: RouterFactory) -> None:
    router = await make_router()
    await router.set_backends(1, [Endpoint("127.0.0.1", router_helpers.free_port())])
    await router.set_weight({1: 100})
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{router.port}") as client:
        r = await client.get("/")
    assert r.status_code == 502
    assert router.metrics.revision(1).bad_responses == 1


async def test_slow_upstream_is_504(make_router: RouterFactory, upstream: UpstreamFactory) -> None:
    up = await upstream("v1")
    router = await make_router(settings=Settings(response_timeout=0.2))
    await router.set_backends(1, [ep(up)])
    await router.set_weight({1: 100})
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{router.port}") as client:
        r = await client.get("/slow?delay=1")
        ok = await client.get("/")
    assert r.status_code == 504 and ok.status_code == 200
    assert router.metrics.revision(1).timeouts == 1


async def test_stale_keep_alive_connection_is_replayed(
    make_router: RouterFactory, upstream: UpstreamFactory
) -> None:
    up = await upstream("v1")
    router = await make_router()
    await router.set_backends(1, [ep(up)])
    await router.set_weight({1: 100})
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{router.port}") as client:
        first = await client.get("/drop-reused")
        second = await client.get("/drop-reused")  # the pooled connection dies unanswered
        post = await client.post("/drop-reused", content=b"x")
    assert first.status_code == 200 and second.status_code == 200
    assert router.metrics.revision(1).retries == 1
    # Not idempotent, so not replayed: the upstream may have acted on it.
    assert post.status_code == 502
