"""Flagger's built-in metrics, imported, against a real Prometheus (issue 13, item 2).

Given a real Prometheus (Debian's) scraping an exporter that serves Istio's and NGINX's
request counters for a healthy canary (all 200) and a failing one (half 500), when the
checks of imported Flagger Canaries (``request-success-rate``, ``thresholdRange: {min:
99}``, no namespace) run through the controller's analysis runner, then the healthy one's
check is Successful, the failing one's Failed with its value, and a canary with no series
an Error (Flagger: "no values found"): never a list compared with a number.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from changeover import importers
from changeover.clock import FakeClock
from changeover.engine import actions
from changeover.runners.analysis_runner import AnalysisRunner
from changeover.runners.analysis_store import AnalysisStore
from changeover.spec import models
from tests import prometheus_helpers

pytestmark = pytest.mark.slow

STARTED = time.time()
# (workload, namespace, 2xx per second, 5xx per second)
SERIES = [("podinfo", "test", 20.0, 0.0), ("failing", "test", 10.0, 10.0)]


def _exposition() -> str:
    """Istio's and NGINX's request counters, growing at SERIES' rates since STARTED."""
    elapsed = time.time() - STARTED
    lines = [
        "# TYPE istio_requests_total counter",
        "# TYPE nginx_ingress_controller_requests counter",
    ]
    for workload, ns, ok, bad in SERIES:
        for code, rate in (("200", ok), ("500", bad)):
            value = rate * elapsed
            lines.append(
                f'istio_requests_total{{reporter="destination",destination_workload_namespace="{ns}",'
                f'destination_workload="{workload}",response_code="{code}"}} {value}'
            )
            lines.append(
                f'nginx_ingress_controller_requests{{namespace="{ns}",ingress="{workload}",'
                f'canary="{workload}-canary",status="{code}"}} {value}'
            )
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = prometheus_helpers.serve_exposition(_exposition)
    tmp = tmp_path_factory.mktemp("prom")
    auth = prometheus_helpers.AUTH
    try:
        with prometheus_helpers.running(tmp, server.server_address[1], basic_auth=auth) as url:
            # rate() needs two scrapes of each series inside its window.
            prometheus_helpers.wait_for_scrapes(
                url,
                'count_over_time(istio_requests_total{destination_workload="failing"}[1m])',
                basic_auth=auth,
            )
            yield url
    finally:
        server.shutdown()
        server.server_close()


def _imported(name: str, provider: str, prometheus: str) -> models.Rollout:
    """A Canary as in Flagger's istio / nginx tutorials, without a namespace, imported; its
    Prometheus address pointed at the test's server (with its basic auth)."""
    spec: dict[str, Any] = {
        "provider": provider,
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
        "service": {"port": 80, "targetPort": 9898},
        "analysis": {
            "interval": "1m",
            "threshold": 5,
            "stepWeight": 10,
            "maxWeight": 50,
            "metrics": [
                {"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": "1m"}
            ],
        },
    }
    if provider == "nginx":
        spec["ingressRef"] = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": name}
    doc = {
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "metadata": {"name": name},
        "spec": spec,
    }
    (rollout,) = importers.convert([doc], "canary.yaml").documents
    rollout["metadata"]["namespace"] = "test"  # where it is applied
    config = rollout["spec"]["checks"]["metrics"][0]["provider"]["prometheus"]
    config["address"] = prometheus
    config["authentication"] = {
        "basicAuth": {
            "username": prometheus_helpers.AUTH.user,
            "password": prometheus_helpers.AUTH.password,
        }
    }
    return models.Rollout.model_validate(rollout)


async def _check(rollout: models.Rollout, tmp_path: Path) -> tuple[str, str]:
    """One check of the Rollout's spec.checks through the controller's runner."""
    assert rollout.spec.checks is not None
    store = AnalysisStore(tmp_path / f"{rollout.name}.db")
    woken = asyncio.Event()
    runner = AnalysisRunner(store=store, clock=FakeClock(1000.0), wake=woken.set)
    try:
        run_id = f"{rollout.name}-2-1-check0"
        action = actions.StartAnalysis(
            run_id=run_id,
            kind="check",
            analysis=rollout.spec.checks,
            revision=2,
            stable_revision=1,
            measure_once_after=0.0,
        )
        runner.start(action, rollout=rollout)
        runner.step()
        await asyncio.wait_for(woken.wait(), 30)
        seen = runner.observe(run_id)
        assert seen is not None
        return seen.phase, seen.message
    finally:
        await runner.close()
        store.close()


@pytest.mark.parametrize("provider", ["istio", "nginx"])
async def test_a_healthy_canary_passes_and_a_failing_one_fails(
    prometheus: str, tmp_path: Path, provider: str
) -> None:
    phase, message = await _check(_imported("podinfo", provider, prometheus), tmp_path)
    assert phase == "Successful", message
    phase, message = await _check(_imported("failing", provider, prometheus), tmp_path)
    assert phase == "Failed", message
    assert "= [50" in message and "result[-1] >= 99" in message, message


async def test_a_canary_without_series_is_an_error_not_a_pass(
    prometheus: str, tmp_path: Path
) -> None:
    phase, message = await _check(_imported("absent", "istio", prometheus), tmp_path)
    assert phase == "Error" and "out of range for a list of 0" in message, message
