"""The controller's analysis runner: given a StartAnalysis, when the clock moves and the
endpoint answers, then measurements, a verdict, and a run that survives a restart."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from analysis_helpers import HttpServer, Request

from changeover.clock import FakeClock
from changeover.engine import actions
from changeover.runners.analysis_runner import AnalysisRunner
from changeover.runners.analysis_store import AnalysisStore
from changeover.spec import analysis as spec
from changeover.spec import models

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


class Endpoint:
    """A health endpoint whose error rate the test sets."""

    def __init__(self) -> None:
        self.error_rate = 0.0
        self.server = HttpServer(answer=self.answer)

    def answer(self, _req: Request) -> tuple[int, Any]:
        return 200, {"errorRate": self.error_rate}


@pytest.fixture
async def endpoint() -> AsyncIterator[Endpoint]:
    ep = Endpoint()
    await ep.server.start()
    yield ep
    await ep.server.stop()


def web_metric(url: str, **fields: Any) -> dict[str, Any]:
    return {
        "name": "error-rate",
        "interval": "5s",
        "count": 3,
        "successCondition": "result < 0.05",
        "provider": {"web": {"url": url, "jsonPath": "$.errorRate"}},
        **fields,
    }


def start(run_id: str, analysis: dict[str, Any]) -> actions.StartAnalysis:
    return actions.StartAnalysis(
        run_id=run_id,
        kind="step",
        analysis=spec.RolloutAnalysis.model_validate(analysis),
        revision=2,
        stable_revision=1,
    )


class Harness:
    def __init__(self, path: Path) -> None:
        self.clock = FakeClock(1000.0)
        self.store = AnalysisStore(path)
        self.woken = asyncio.Event()
        self.runner = self.new_runner()

    def new_runner(self) -> AnalysisRunner:
        return AnalysisRunner(store=self.store, clock=self.clock, wake=self.woken.set)

    async def measure(self, seconds: float = 0.0) -> None:
        """Move the clock, let due metrics be measured, and wait for them to land."""
        self.clock.advance(seconds)
        self.woken.clear()
        self.runner.step()
        await asyncio.wait_for(self.woken.wait(), 10)

    def phase(self, run_id: str) -> str:
        seen = self.runner.observe(run_id)
        assert seen is not None
        return seen.phase


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = Harness(tmp_path / "changeover.db")
    yield harness
    await harness.runner.close()
    harness.store.close()


async def test_a_good_metric_is_measured_count_times_then_the_run_succeeds(
    h: Harness, endpoint: Endpoint
) -> None:
    h.runner.start(
        start("web-2-1-step1", {"metrics": [web_metric(endpoint.server.url())]}), rollout=ROLLOUT
    )
    assert h.phase("web-2-1-step1") == "Pending"
    await h.measure()
    assert h.phase("web-2-1-step1") == "Running"
    h.runner.step()  # not due again before the interval
    await asyncio.sleep(0.1)
    assert len(endpoint.server.requests) == 1
    await h.measure(5)
    await h.measure(5)
    assert h.phase("web-2-1-step1") == "Successful"
    stored = h.store.run("web-2-1-step1")
    assert stored is not None and stored["phase"] == "Successful"
    assert len(stored["results"]["error-rate"]["measurements"]) == 3


async def test_a_bad_value_fails_the_run_naming_the_metric_and_the_value(
    h: Harness, endpoint: Endpoint
) -> None:
    endpoint.error_rate = 0.31
    metrics = [
        web_metric(endpoint.server.url()),
        {
            "name": "slow",
            "interval": "5s",
            "count": 10,
            "provider": {"web": {"url": endpoint.server.url()}},
        },
    ]
    h.runner.start(start("r", {"metrics": metrics}), rollout=ROLLOUT)
    await h.measure()
    seen = h.runner.observe("r")
    assert seen is not None and seen.phase == "Failed"
    assert seen.message == (
        "metric error-rate Failed = 0.31 (successCondition 'result < 0.05' is false for 0.31); "
        "1 failed > failureLimit 0"
    )


async def test_errors_count_against_the_consecutive_error_limit(h: Harness) -> None:
    metric = web_metric("http://127.0.0.1:1/", consecutiveErrorLimit=1)
    h.runner.start(start("r", {"metrics": [metric]}), rollout=ROLLOUT)
    await h.measure()
    assert h.phase("r") == "Running"
    await h.measure(5)
    assert h.phase("r") == "Error"
    seen = h.runner.observe("r")
    assert seen is not None and "2 errors in a row > consecutiveErrorLimit 1" in seen.message


async def test_a_run_resumes_after_a_restart(h: Harness, endpoint: Endpoint) -> None:
    h.runner.start(start("r", {"metrics": [web_metric(endpoint.server.url())]}), rollout=ROLLOUT)
    await h.measure()
    await h.runner.close()  # the controller dies; its state is in the database

    h.runner = h.new_runner()
    assert h.phase("r") == "Running"
    await h.measure(5)
    await h.measure(5)
    assert h.phase("r") == "Successful" and len(endpoint.server.requests) == 3


async def test_stopping_a_run_cancels_its_measurements(h: Harness, tmp_path: Path) -> None:
    sleeper = {
        "name": "smoke",
        "provider": {"job": {"command": [sys.executable, "-c", "import time; time.sleep(30)"]}},
    }
    h.runner.start(start("r", {"metrics": [sleeper]}), rollout=ROLLOUT)
    h.runner.step()
    await asyncio.sleep(0.3)
    h.runner.stop("r")
    assert h.phase("r") == "Successful"  # terminated before anything failed
    stored = h.store.run("r")
    assert stored is not None and stored["stopped"] is True
    h.runner.start(start("r", {"metrics": [sleeper]}), rollout=ROLLOUT)  # asked again: no-op
    assert h.phase("r") == "Successful"


async def test_templates_come_from_the_store_and_a_missing_one_is_an_error_run(
    h: Harness, endpoint: Endpoint
) -> None:
    template = {
        "metadata": {"name": "health"},
        "spec": {
            "args": [{"name": "url"}],
            "metrics": [web_metric("{{args.url}}", count=1, interval=None)],
        },
    }
    doc = spec.AnalysisTemplate.model_validate(template).to_json_dict()
    h.store.put_template("health", doc, now=0.0)
    ref = {
        "templates": [{"templateName": "health"}],
        "args": [{"name": "url", "value": endpoint.server.url()}],
    }
    h.runner.start(start("ok", ref), rollout=ROLLOUT)
    await h.measure()
    assert h.phase("ok") == "Successful"

    h.runner.start(start("bad", {"templates": [{"templateName": "nope"}]}), rollout=ROLLOUT)
    seen = h.runner.observe("bad")
    assert seen is not None and seen.phase == "Error"
    assert "unknown AnalysisTemplate 'nope'" in seen.message


async def test_a_check_measures_each_metric_once_an_interval_in_whatever_it_says(
    h: Harness, endpoint: Endpoint
) -> None:
    # spec.checks: one measurement per check, taken when the check's interval is over;
    # the metric's own interval/count/failureLimit would have measured 3 times from t=0.
    action = dataclasses.replace(
        start("web-2-1-check0", {"metrics": [web_metric(endpoint.server.url(), failureLimit=2)]}),
        kind="check",
        measure_once_after=30.0,
    )
    h.runner.start(action, rollout=ROLLOUT)
    h.runner.step()
    await asyncio.sleep(0.1)
    assert endpoint.server.requests == [] and h.phase("web-2-1-check0") != "Successful"
    endpoint.error_rate = 0.5
    await h.measure(30)
    assert len(endpoint.server.requests) == 1
    assert h.phase("web-2-1-check0") == "Failed"  # one failure decides a check


async def test_a_check_whose_measurement_errs_is_an_error_at_once(h: Harness) -> None:
    action = dataclasses.replace(
        start("c", {"metrics": [web_metric("http://127.0.0.1:1/")]}),
        kind="check",
        measure_once_after=10.0,
    )
    h.runner.start(action, rollout=ROLLOUT)
    await h.measure(10)
    assert h.phase("c") == "Error"
