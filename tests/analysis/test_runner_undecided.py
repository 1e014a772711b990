"""An A/B experiment that has not decided yet, through the controller's analysis runner with
the real builtin router: its measurements are kept and shown as undecided, never counted
as a pass, and a run that ends still undecided is Inconclusive (a human decides), not
Successful. The same run with a reachable sample size ends on the test's verdict."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from analysis_helpers import HttpServer, Request, get

from changeover.clock import FakeClock
from changeover.endpoints import Endpoint
from changeover.engine import actions
from changeover.runners import analysis_runner
from changeover.runners.analysis_runner import AnalysisRunner
from changeover.runners.analysis_store import AnalysisStore
from changeover.spec import analysis as spec
from changeover.spec import models
from changeover.traffic.builtin import BuiltinRouter, Registry

ROLLOUT = models.Rollout.model_validate(
    {
        "metadata": {"name": "web"},
        "spec": {
            "template": {"command": ["app"]},
            "service": {"port": 8080},
            "strategy": {"canary": {}},
        },
    }
)


def three_in_ten_fail() -> Any:
    seen = [0]

    def answer(_req: Request) -> tuple[int, Any]:
        seen[0] += 1
        return (500 if seen[0] % 10 < 3 else 200), {"ok": True}

    return answer


class World:
    """Stable (revision 1) always answers 200, the canary (2) fails 3 in 10; 50/50."""

    def __init__(self, path: Path) -> None:
        self.registry = Registry()
        self.router = BuiltinRouter("web", port=0, metrics=self.registry)
        self.clock = FakeClock(1000.0)
        self.store = AnalysisStore(path)
        self.woken = asyncio.Event()
        self.runner = AnalysisRunner(
            store=self.store, clock=self.clock, metrics=self.registry, wake=self.woken.set
        )

    async def traffic(self, requests: int) -> None:
        await asyncio.gather(*(get(self.router.port, "/", requests // 10) for _ in range(10)))

    async def measure(self, seconds: int) -> None:
        """Move the clock second by second (the runner samples the router once a second,
        as in the controller's loop) and wait for the measurement due at the end."""
        self.woken.clear()
        for _ in range(seconds):
            self.clock.advance(1)
            self.runner.step()
        if seconds == 0:
            self.runner.step()
        await asyncio.wait_for(self.woken.wait(), 10)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    stable = await HttpServer().start()
    canary = await HttpServer(answer=three_in_ten_fail()).start()
    w = World(tmp_path / "changeover.db")
    await w.router.start()
    await w.router.set_backends(1, [Endpoint("127.0.0.1", stable.port)])
    await w.router.set_backends(2, [Endpoint("127.0.0.1", canary.port)])
    await w.router.set_weight({1: 50, 2: 50})
    yield w
    await w.runner.close()
    w.store.close()
    await w.router.close()
    await stable.stop()
    await canary.stop()


def experiment(min_samples: int) -> actions.StartAnalysis:
    metric = {
        "name": "conversion",
        "interval": "5s",
        "count": 3,
        "provider": {
            "abSignificance": {
                "method": "fixedHorizon",
                "minSamples": min_samples,
                "window": "10m",
                "conversions": {"builtin": "successes"},
                "trials": {"builtin": "requests"},
            }
        },
    }
    return actions.StartAnalysis(
        run_id="web-2-ab",
        kind="experiment",
        analysis=spec.RolloutAnalysis.model_validate({"metrics": [metric]}),
        revision=2,
        stable_revision=1,
    )


async def test_an_experiment_short_of_its_sample_ends_inconclusive_not_successful(
    world: World,
) -> None:
    world.runner.start(experiment(min_samples=100_000), rollout=ROLLOUT)
    await world.measure(0)
    for _ in range(2):
        await world.traffic(100)
        await world.measure(5)
        seen = world.runner.observe("web-2-ab")
        assert seen is not None and seen.phase in ("Running", "Inconclusive")
        shown = analysis_runner.latest(world.store, "web")["analysis"]["conversion"]
        assert shown["value"]["decided"] is False and shown["successful"] == 0
    seen = world.runner.observe("web-2-ab")
    assert seen is not None and seen.phase == "Inconclusive", seen
    assert "the experiment did not reach a decision (3 of 3 measurements undecided)" in (
        seen.message
    )
    assert "collecting:" in seen.message  # the judge's own words: how far it got
    shown = analysis_runner.latest(world.store, "web")["analysis"]["conversion"]
    assert shown["undecided"] == 3 and shown["phase"] == "Inconclusive"
    assert shown["value"]["treatment"]["trials"] > 0  # the router's real counts


async def test_the_same_experiment_with_a_reachable_sample_ends_on_its_verdict(
    world: World,
) -> None:
    world.runner.start(experiment(min_samples=40), rollout=ROLLOUT)
    await world.measure(0)  # no traffic yet: undecided, the run goes on
    seen = world.runner.observe("web-2-ab")
    assert seen is not None and seen.phase == "Running"
    await world.traffic(200)
    await world.measure(5)
    seen = world.runner.observe("web-2-ab")
    # the canary converts 70% against the stable's 100%: control wins, the canary fails
    assert seen is not None and seen.phase == "Failed", seen
    shown = analysis_runner.latest(world.store, "web")["analysis"]["conversion"]
    assert shown["undecided"] == 1 and shown["failed"] == 1 and shown["value"]["decided"]
