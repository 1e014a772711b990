"""The builtin provider against the real builtin router with real upstreams: the canary
answers 500 to three requests in ten, the stable never; the numbers come out as measured.
Process metrics are read from real processes."""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from analysis_helpers import HttpServer, Request, get

from changeover.analysis import sampler
from changeover.analysis.providers import base, builtin
from changeover.endpoints import Endpoint
from changeover.traffic.builtin import BuiltinRouter, Registry


def every_third_fails() -> Any:
    seen = [0]

    def answer(_req: Request) -> tuple[int, Any]:
        seen[0] += 1
        return (500 if seen[0] % 10 < 3 else 200), {"ok": True}

    return answer


@pytest.fixture
async def world() -> AsyncIterator[dict[str, Any]]:
    stable = await HttpServer().start()
    canary = await HttpServer(answer=every_third_fails(), delay=0.1).start()
    registry = Registry()
    router = BuiltinRouter("web", port=0, metrics=registry)
    await router.start()
    await router.set_backends(1, [Endpoint("127.0.0.1", stable.port)])
    await router.set_backends(2, [Endpoint("127.0.0.1", canary.port)])
    await router.set_weight({1: 50, 2: 50})
    yield {"router": router, "registry": registry}
    await router.close()
    await stable.stop()
    await canary.stop()


def context(smp: sampler.Sampler, now: float, **extra: Any) -> base.MeasureContext:
    return base.MeasureContext(
        rollout="web",
        namespace="default",
        stable_revision=1,
        canary_revision=2,
        now=now,
        window=lambda rev, secs: smp.window("web", rev, secs, now),
        series=lambda rev, metric, secs: smp.series("web", rev, metric, secs),
        **extra,
    )


async def measure(config: dict[str, Any], ctx: base.MeasureContext) -> base.ProviderResult:
    return await builtin.BuiltinProvider().measure(config, args={}, context=ctx)


async def test_error_rate_success_rate_and_latency_per_revision(world: dict[str, Any]) -> None:
    smp = sampler.Sampler(world["registry"])
    smp.sample(1000.0)
    await asyncio.gather(*(get(world["router"].port, "/", 20) for _ in range(10)))
    now = 1010.0  # ten seconds later, as far as the sampler knows

    canary = await measure({"metric": "error-rate", "window": "60s"}, context(smp, now))
    stable = await measure({"metric": "error-rate", "revision": "stable"}, context(smp, now))
    assert 0.2 <= canary.value <= 0.4 and stable.value == 0.0
    assert "revision 2" in canary.message

    success = await measure({"metric": "success-rate"}, context(smp, now))
    assert math.isclose(success.value, 1 - canary.value)
    rate = await measure({"metric": "request-rate", "window": "10s"}, context(smp, now))
    requests = await measure({"metric": "requests"}, context(smp, now))
    assert math.isclose(rate.value, requests.value / 10.0)
    assert (
        180
        <= requests.value
        + (await measure({"metric": "requests", "revision": 1}, context(smp, now))).value
        <= 200
    )

    # the canary upstream answers after 100 ms: its percentiles say so, the stable's do not
    p50 = (await measure({"metric": "latency-p50"}, context(smp, now))).value
    p99 = (await measure({"metric": "latency-p99"}, context(smp, now))).value
    stable_p50 = (
        await measure({"metric": "latency-p50", "revision": "stable"}, context(smp, now))
    ).value
    assert 0.1 <= p50 <= p99 < 2.0 and stable_p50 < p50
    ttfb = (await measure({"metric": "ttfb-p50"}, context(smp, now))).value
    assert 0.1 <= ttfb < 2.0


async def test_without_a_metric_the_result_is_every_number(world: dict[str, Any]) -> None:
    smp = sampler.Sampler(world["registry"])
    smp.sample(0.0)
    await get(world["router"].port, "/", 40)
    result = await measure({}, context(smp, 30.0))
    assert {"requests", "errorRate", "successRate", "p50", "p99", "requestRate"} <= set(
        result.value
    )
    from changeover.analysis import conditions

    assert conditions.evaluate("len(result) > 0 and result.p99 < 0.5", result.value)


async def test_too_few_requests_is_an_error_not_a_verdict(world: dict[str, Any]) -> None:
    smp = sampler.Sampler(world["registry"])
    smp.sample(0.0)
    with pytest.raises(base.ProviderError, match="revision 2 served 0 requests"):
        await measure({"metric": "error-rate"}, context(smp, 5.0))
    await get(world["router"].port, "/", 4)
    with pytest.raises(base.ProviderError, match="need at least 50"):
        await measure({"metric": "error-rate", "minRequests": 50}, context(smp, 5.0))


async def test_the_window_only_counts_recent_traffic(world: dict[str, Any]) -> None:
    smp = sampler.Sampler(world["registry"])
    smp.sample(0.0)
    await get(world["router"].port, "/", 40)  # old traffic
    smp.sample(100.0)
    await get(world["router"].port, "/", 10)  # recent traffic
    total = (await measure({"metric": "requests", "window": "300s"}, context(smp, 110.0))).value
    recent = (await measure({"metric": "requests", "window": "10s"}, context(smp, 110.0))).value
    assert recent < total and recent <= 10


async def test_series_gives_one_value_per_sampled_second(world: dict[str, Any]) -> None:
    smp = sampler.Sampler(world["registry"])
    for second in range(5):
        smp.sample(float(second))
        await get(world["router"].port, "/", 20)
    smp.sample(5.0)
    rates = smp.series("web", 2, "request-rate", 60)
    errors = smp.series("web", 1, "error-rate", 60)
    assert len(rates) == 5 and all(r > 0 for r in rates)
    assert errors == [0.0] * 5
    assert len(smp.series("web", 2, "latency-p99", 2)) == 2


async def test_unknown_revision_names_are_errors(world: dict[str, Any]) -> None:
    smp = sampler.Sampler(world["registry"])
    ctx = base.MeasureContext(
        rollout="web", namespace="default", stable_revision=1, canary_revision=None, now=0.0
    )
    with pytest.raises(base.ProviderError, match="no revision is being rolled out"):
        await measure({"metric": "error-rate"}, ctx)
    with pytest.raises(base.ProviderError, match="unknown 'errors'"):
        await measure({"metric": "errors"}, context(smp, 0.0))


def test_lint_problems() -> None:
    assert builtin.problems({"metric": "error-rate", "window": "30s"}) == []
    assert builtin.problems({"metric": "p99", "windoe": "30s", "revision": "new"}) == [
        "unknown field 'windoe'; expected one of metric, revision, window, minRequests, "
        "aggregate, sample, variant",
        "metric: unknown 'p99'; expected one of " + ", ".join(builtin.METRICS),
        "revision: expected canary, stable or a number, got 'new'",
    ]
    assert builtin.problems({"variant": {"flag": "checkout", "name": "on", "against": "off"}}) == []
    assert builtin.problems({"metric": "cpu", "variant": {"flag": "", "nmae": "on"}}) == [
        "variant.nmae: unknown field; expected one of flag, name, against",
        "variant.flag: expected a flag name",
        "variant.name: expected a variant name",
        "variant: scopes the router's metrics only; 'cpu' is not one of them",
    ]
    assert builtin.problems({"variant": "on"}) == [
        "variant: expected a mapping such as {flag: checkout, name: on, against: off}"
    ]


def spawn(code: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", code])


async def test_restarts_cpu_and_memory_of_real_replica_processes() -> None:
    busy, idle = spawn("while True: pass"), spawn("import time; time.sleep(60)")
    try:
        replicas = {
            2: [base.ReplicaProcess(pid=busy.pid, restarts=2)],
            1: [base.ReplicaProcess(pid=idle.pid, restarts=0)],
        }
        ctx = base.MeasureContext(
            rollout="web",
            namespace="default",
            stable_revision=1,
            canary_revision=2,
            now=0.0,
            replicas=lambda rev: replicas.get(rev, []),
        )
        assert (await measure({"metric": "restarts"}, ctx)).value == 2
        cpu = (await measure({"metric": "cpu", "sample": "0.5s"}, ctx)).value
        cpu_idle = await measure({"metric": "cpu", "revision": "stable", "sample": "0.5s"}, ctx)
        # a spinning process against a sleeping one (on a busy shared box, loosely)
        assert cpu > 15 and cpu_idle.value < 5 and cpu > 3 * cpu_idle.value
        memory = (await measure({"metric": "memory"}, ctx)).value
        assert 1 < memory < 500  # MiB of one python process
        with pytest.raises(base.ProviderError, match="no running replica"):
            await measure({"metric": "cpu", "revision": 7}, ctx)
    finally:
        for process in (busy, idle):
            process.kill()
            process.wait()
