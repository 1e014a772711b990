"""Per-variant metrics of a flag the builtin router evaluates per request: a real router,
a real upstream that misbehaves for one variant only, real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from router_helpers import RouterFactory

from changeover.analysis import sampler as sampler_mod
from changeover.analysis.judges import ab_significance
from changeover.analysis.providers import base, builtin
from changeover.endpoints import Endpoint
from changeover.traffic.builtin import BuiltinRouter, metrics, metrics_text

# Buckets (crc32 mod 100): bob 4, trent 18, erin 22, alice 35, judy 99: at 20%, bob and
# trent get "on".
FLAG = {
    "type": "boolean",
    "variants": {"on": True, "off": False},
    "defaultVariant": "off",
    "split": [{"variant": "on", "weight": 20}],
    "requestContext": {"targetingKey": {"header": "x-user"}},
    "router": {"rollout": "web", "header": "x-flag-checkout"},
}
USERS = ("bob", "trent", "erin", "alice", "judy")


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """200 for "off"; for "on", 500 on ``/`` and a stream cut mid-way on ``/stream``."""
    with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
        while True:
            head = (await reader.readuntil(b"\r\n\r\n")).lower()
            on = b"\r\nx-flag-checkout: on\r\n" in head
            if head.startswith(b"get /stream "):
                writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n")
                if on:
                    await writer.drain()
                    writer.close()  # cut: no last chunk
                    return
                writer.write(b"0\r\n\r\n")
            else:
                status = b"500 Broken" if on else b"200 OK"
                writer.write(b"HTTP/1.1 %s\r\ncontent-length: 2\r\n\r\nok" % status)
            await writer.drain()


@pytest.fixture
async def app() -> AsyncIterator[int]:
    server = await asyncio.start_server(_serve, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()


async def flagged(
    make_router: RouterFactory, app: int, flag: dict[str, Any]
) -> tuple[BuiltinRouter, sampler_mod.Sampler]:
    """A router sending everything to ``app`` as revision 1 and evaluating ``flag``, and
    a sampler of its metrics that has read them once (at t=0)."""
    router = await make_router(metrics=metrics.Registry())
    await router.set_backends(1, [Endpoint("127.0.0.1", app)])
    await router.set_weight({1: 100})
    await router.set_flag("checkout", flag)
    smp = sampler_mod.Sampler(router.metrics_registry)
    smp.sample(0.0)
    return router, smp


async def test_each_variant_counts_its_own_requests_errors_and_cut_streams(
    make_router: RouterFactory, app: int
) -> None:
    router, smp = await flagged(make_router, app, FLAG)
    registry = router.metrics_registry
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{router.port}") as c:
        for _ in range(3):
            for user in USERS:
                await c.get("/", headers={"x-user": user})
        for user in USERS:
            with contextlib.suppress(httpx.HTTPError):
                await c.get("/stream", headers={"x-user": user})
    seen = router.metrics.revision(1).variants["checkout"]
    assert set(seen) == {"on", "off"}
    on, off = seen["on"], seen["off"]
    # bob and trent: 6 requests answered 500, 2 streams cut (a 502 to the client)
    assert (sum(on.codes), on.codes[5]) == (8, 8), on.codes
    assert (sum(off.codes), off.codes[5], off.codes[2]) == (12, 0, 12), off.codes
    assert on.latency.count == 8 and off.latency.count == 12

    # the analysis sees the same per variant, within the revision
    smp.sample(1.0)
    window_on = smp.window("web", 1, 60, 1.0, variant=("checkout", "on"))
    window_off = smp.window("web", 1, 60, 1.0, variant=("checkout", "off"))
    assert (window_on.requests, window_on.value("error-rate")) == (8, 1.0)
    assert (window_off.requests, window_off.value("error-rate")) == (12, 0.0)
    assert window_off.value("latency-p99") > 0
    assert smp.window("web", 1, 60, 1.0).requests == 20

    text = metrics_text.render(registry)
    labels = 'rollout="web",revision="1",flag="checkout"'
    assert f'changeover_variant_requests_total{{{labels},variant="on",code="5xx"}} 8' in text
    assert f'changeover_variant_requests_total{{{labels},variant="off",code="2xx"}} 12' in text
    assert f'changeover_variant_request_duration_seconds_count{{{labels},variant="on"}} 8' in text

    # a flag no longer evaluated adds no more requests to its variants
    await router.set_flag("checkout", None)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{router.port}") as c:
        await c.get("/", headers={"x-user": "erin"})
    assert sum(router.metrics.revision(1).variants["checkout"]["off"].codes) == 12


async def test_the_providers_judge_one_variant_against_another(
    make_router: RouterFactory, app: int
) -> None:
    half = {**FLAG, "split": [{"variant": "on", "weight": 50}]}
    router, smp = await flagged(make_router, app, half)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{router.port}") as c:
        for i in range(200):
            await c.get("/", headers={"x-user": f"user-{i}"})
    smp.sample(1.0)
    ctx = base.MeasureContext(
        rollout="web",
        namespace="default",
        stable_revision=1,
        canary_revision=1,
        now=1.0,
        window=lambda rev, secs: smp.window("web", rev, secs, 1.0),
        variant_window=lambda rev, flag, v, secs: smp.window(
            "web", rev, secs, 1.0, variant=(flag, v)
        ),
    )
    scope = {"flag": "checkout", "name": "on", "against": "off"}
    found = await builtin.BuiltinProvider().measure(
        {"metric": "error-rate", "variant": scope, "minRequests": 20}, args={}, context=ctx
    )
    assert found.value == 1.0  # every "on" request failed, no "off" one did
    whole = await builtin.BuiltinProvider().measure({"variant": scope}, args={}, context=ctx)
    assert isinstance(whole.value, dict)
    assert whole.value["errorRate"] == 1.0 and whole.value["against"]["errorRate"] == 0.0
    assert whole.value["requests"] + whole.value["against"]["requests"] == 200
    with pytest.raises(base.ProviderError, match="variant 'maybe' of flag 'checkout' got 0"):
        await builtin.BuiltinProvider().measure(
            {"variant": {**scope, "against": "maybe"}}, args={}, context=ctx
        )

    verdict = await ab_significance.ABSignificanceProvider().measure(
        {
            "method": "fixedHorizon",
            "minSamples": 50,
            "higherIsBetter": False,
            "conversions": {"builtin": "errors"},
            "trials": {"builtin": "requests"},
            "variant": {"flag": "checkout", "control": "off", "treatment": "on"},
        },
        args={},
        context=ctx,
    )
    assert verdict.phase == "Failed", verdict.message  # the control ("off") wins
    assert isinstance(verdict.value, dict) and verdict.value["winnerVariant"] == "off"
    assert verdict.value["treatment"]["variant"] == "on"
    assert verdict.value["treatment"]["conversions"] == verdict.value["treatment"]["trials"]
