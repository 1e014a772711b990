"""The builtin provider and the mannWhitney judge on a shadow, from a real router's
comparisons of real upstreams' answers: the shadow answers like the primary but 60 ms
later (or, in the drifting case, differently)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from analysis_helpers import HttpServer, Request

from changeover.analysis import providers, sampler, shadow_comparisons
from changeover.analysis.providers import base
from changeover.endpoints import Endpoint
from changeover.spec import models
from changeover.traffic.builtin import BuiltinRouter, Registry

providers.load()


async def shadowed(shadow_server: HttpServer, n: int = 40) -> AsyncIterator[base.MeasureContext]:
    primary = await HttpServer().start()
    await shadow_server.start()
    registry = Registry()
    router = BuiltinRouter("web", port=0, metrics=registry)
    await router.start()
    await router.set_backends(1, [Endpoint("127.0.0.1", primary.port)])
    await router.set_backends(2, [Endpoint("127.0.0.1", shadow_server.port)])
    await router.set_weight({1: 100})
    compare = models.MirrorCompare(comparator="json")
    await router.set_mirror_route("shadow", 2, 100, [], compare)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{router.port}") as client:
        for _ in range(n):
            assert (await client.get("/")).status_code == 200
    await router.mirror_idle()
    smp = sampler.Sampler(registry)
    smp.sample(time.time())
    yield base.MeasureContext(
        rollout="web",
        namespace="default",
        stable_revision=1,
        canary_revision=2,
        now=time.time(),
        window=lambda rev, secs: smp.window("web", rev, secs, time.time()),
        # as the controller's analysis runner builds it
        series=lambda rev, metric, secs: shadow_comparisons.latency_samples(
            smp.shadows("web"), rev, now=time.time(), seconds=secs
        ),
        shadows=lambda: smp.shadows("web"),
    )
    await router.close()
    await primary.stop()
    await shadow_server.stop()


@pytest.fixture
async def slow_shadow() -> AsyncIterator[base.MeasureContext]:
    async for ctx in shadowed(HttpServer(delay=0.06)):
        yield ctx


@pytest.fixture
async def drifting_shadow() -> AsyncIterator[base.MeasureContext]:
    def answer(_req: Request) -> tuple[int, Any]:
        return 200, {"ok": False}

    async for ctx in shadowed(HttpServer(answer=answer)):
        yield ctx


async def builtin(ctx: base.MeasureContext, **config: Any) -> base.ProviderResult:
    return await base.create("builtin").measure(config, args={}, context=ctx)


async def test_a_shadow_is_judged_on_its_compared_answers(
    slow_shadow: base.MeasureContext,
) -> None:
    # without a metric, a shadow that served nobody gets its comparison numbers, not
    # "served 0 requests"
    result = await builtin(slow_shadow, revision="canary")
    assert result.value["compared"] == 40 and result.value["matchRate"] == 1.0
    assert result.value["errorRate"] == 0.0
    assert 0.05 <= result.value["latencyDeltaP50"] <= 0.2
    assert "40 answers compared with revision 1's" in result.message
    p99 = await builtin(slow_shadow, metric="shadow-latency-p99")
    assert 0.06 <= p99.value < 1.0
    with pytest.raises(base.ProviderError, match=r"40 answers compared .* need at least 50"):
        await builtin(slow_shadow, metric="shadow-match-rate", minRequests=50)
    with pytest.raises(base.ProviderError, match="revision 1: no answers compared"):
        await builtin(slow_shadow, metric="shadow-match-rate", revision="stable")


async def test_a_drifting_shadow_has_a_low_match_rate(
    drifting_shadow: base.MeasureContext,
) -> None:
    result = await builtin(drifting_shadow, metric="shadow-match-rate")
    assert result.value == 0.0
    body = await builtin(drifting_shadow, metric="shadow-body-mismatch-rate")
    assert body.value == 1.0


async def test_mann_whitney_compares_shadow_latency_with_the_primary_s(
    slow_shadow: base.MeasureContext,
) -> None:
    config = {
        "window": "5m",
        "metrics": [
            {
                "name": "latency",
                "builtin": "shadow-latency",
                "direction": "increase",
                "effectSize": {"measure": "meanRatio", "allowedIncrease": 1.2},
            }
        ],
    }
    result = await base.create("mannWhitney").measure(config, args={}, context=slow_shadow)
    verdict = result.value["metrics"]["latency"]
    assert result.phase == "Failed", result.message
    assert verdict["classification"] == "High"
    assert verdict["canary"]["count"] == verdict["baseline"]["count"] == 40
