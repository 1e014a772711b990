"""N router worker processes on one port (SO_REUSEPORT): shared routing state, merged metrics."""

from __future__ import annotations

import asyncio

import pytest
import router_helpers
from router_helpers import UpstreamFactory, ep

from changeover.traffic.builtin import BuiltinRouter, Registry

pytestmark = pytest.mark.slow
LOOPS = ("uvloop",)  # the production loop; these are slow


async def test_two_workers_share_the_port_the_table_and_the_metrics(
    upstream: UpstreamFactory,
) -> None:
    v1, v2 = await upstream("v1"), await upstream("v2")
    registry = Registry()
    router = BuiltinRouter("web", port=0, metrics=registry, workers=2)
    await router.start()
    try:
        assert len({w.proc.pid for w in router._workers}) == 2
        await router.set_backends(1, [ep(v1)])
        await router.set_backends(2, [ep(v2)])
        await router.set_weight({1: 50, 2: 50})
        assert router.weights() == {1: 50, 2: 50}
        # Many short connections: the kernel spreads them over both workers.
        replies = await asyncio.gather(
            *(router_helpers.load(router.port, 4, concurrency=1) for _ in range(40))
        )
        bodies = [r.body for rs in replies for r in rs if isinstance(r, router_helpers.Reply)]
        assert len(bodies) == 160
        assert {b"v1", b"v2"} <= set(bodies)
        # A weight change is in force in every worker when the setter returns.
        await router.set_weight({2: 100})
        after = await asyncio.gather(
            *(router_helpers.load(router.port, 2, concurrency=1) for _ in range(20))
        )
        assert {r.body for rs in after for r in rs if isinstance(r, router_helpers.Reply)} == {
            b"v2"
        }
        await router.collect_metrics()
        snap = registry.snapshot()["web"]["revisions"]
        total = sum(snap[rev]["requests"]["2xx"] for rev in snap)
        assert total == 200
    finally:
        await router.close()


async def test_shadow_comparisons_of_two_workers_are_summed(upstream: UpstreamFactory) -> None:
    from changeover.spec import models
    from changeover.traffic.comparison import stats

    v1, shadow = await upstream("v1"), await upstream("v1")  # the shadow answers alike
    registry = Registry()
    router = BuiltinRouter("web", port=0, metrics=registry, workers=2)
    await router.start()
    try:
        await router.set_backends(1, [ep(v1)])
        await router.set_backends(2, [ep(shadow)])
        await router.set_weight({1: 100})
        await router.set_mirror_route("m", 2, 100, [], models.MirrorCompare())
        replies = await asyncio.gather(
            *(router_helpers.load(router.port, 2, concurrency=1) for _ in range(30))
        )
        assert sum(len(rs) for rs in replies) == 60

        async def compared() -> int:
            await router.collect_metrics()
            found = registry.rollout("web").revision(2).shadow
            return found.compared if isinstance(found, stats.ShadowStats) else 0

        for _ in range(100):
            if await compared() == 60:
                break
            await asyncio.sleep(0.05)
        found = registry.rollout("web").revision(2).shadow
        assert isinstance(found, stats.ShadowStats)
        assert (found.compared, found.matched, len(found.pairs)) == (60, 60, 60)
    finally:
        await router.close()
