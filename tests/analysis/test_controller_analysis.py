"""The controller runs analysis and webhooks for the engine: a real Controller and
LocalService with the fake platform and the recording router, a real HTTP endpoint for
the web provider, the webhooks and the notifications. Time is real but short."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from analysis_helpers import HttpServer, Request

from changeover.local_controller.local_service import LocalService
from changeover.testing import local_world

JSON = dict[str, Any]


class Endpoint:
    def __init__(self) -> None:
        self.error_rate = 0.0
        self.status: dict[str, int] = {}
        self.server = HttpServer(answer=self.answer)

    def answer(self, req: Request) -> tuple[int, Any]:
        return self.status.get(req.path, 200), {"errorRate": self.error_rate}

    def posts(self, path: str) -> list[Any]:
        return [r.json for r in self.server.requests if r.path == path and r.method == "POST"]


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[tuple[LocalService, Endpoint]]:
    endpoint = Endpoint()
    await endpoint.server.start()
    async with local_world.started(tmp_path) as world:
        yield world.service, endpoint
    await endpoint.server.stop()


def documents(url: Callable[[str], str], version: str) -> list[JSON]:
    template = {
        "apiVersion": "changeover.dev/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": "errors"},
        "spec": {
            "args": [{"name": "url"}],
            "metrics": [
                {
                    "name": "error-rate",
                    "interval": "0.2s",
                    "count": 3,
                    "successCondition": "result < 0.05",
                    "provider": {"web": {"url": "{{args.url}}", "jsonPath": "$.errorRate"}},
                }
            ],
        },
    }
    rollout = {
        "apiVersion": "changeover.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "template": {"command": ["app", "--version", version]},
            "service": {"port": 18080},
            "strategy": {
                "canary": {
                    "steps": [
                        {"setWeight": 50},
                        {
                            "analysis": {
                                "templates": [{"templateName": "errors"}],
                                "args": [{"name": "url", "value": url("/metrics")}],
                            }
                        },
                    ]
                }
            },
            "webhooks": [
                {
                    "name": "approve",
                    "type": "confirm-promotion",
                    "url": url("/approve"),
                    "interval": "0.1s",
                },
                {"name": "done", "type": "post-rollout", "url": url("/post")},
                {"name": "audit", "type": "event", "url": url("/events")},
            ],
            "notifications": [
                {"url": url("/notify"), "format": "slack", "phases": ["Healthy", "Aborted"]}
            ],
        },
    }
    return [template, rollout]


async def until(service: LocalService, test: Callable[[JSON], bool], within: float = 10) -> JSON:
    for _ in range(int(within / 0.05)):
        status = service.status("web")
        if test(status):
            return status
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out; last status: {service.status('web')}")


async def test_analysis_gates_and_notifications_through_the_real_controller(
    world: tuple[LocalService, Endpoint],
) -> None:
    service, endpoint = world
    url = endpoint.server.url
    results = await service.apply(documents(url, "v1"), source="web.yaml")
    assert [r.get("kind", "Rollout") for r in results] == ["AnalysisTemplate", "Rollout"]
    await until(service, lambda s: s["phase"] == "Healthy")

    # v2: the analysis passes, then the promotion waits for its confirmation webhook
    endpoint.status["/approve"] = 403
    await service.apply(documents(url, "v2"), source="web.yaml")
    waiting = await until(service, lambda s: "confirm-promotion" in s["message"])
    assert waiting["analysis"]["error-rate"]["phase"] == "Successful"
    assert waiting["analysis"]["error-rate"]["count"] == 3
    assert waiting["weights"] == {"1": 50, "2": 50}
    endpoint.status["/approve"] = 200
    done = await until(service, lambda s: s["phase"] == "Healthy" and s["stableRevision"] == 2)
    assert done["weights"] == {"2": 100}

    # v3: 30% errors; the analysis fails and the rollout aborts by itself
    endpoint.error_rate = 0.3
    await service.apply(documents(url, "v3"), source="web.yaml")
    aborted = await until(service, lambda s: s["phase"] == "Aborted")
    assert aborted["weights"] == {"2": 100}
    assert "metric error-rate Failed = 0.3" in aborted["message"]
    assert aborted["analysis"]["error-rate"]["phase"] == "Failed"
    assert [run["phase"] for run in aborted["analysisRuns"]] == ["Failed"]

    await asyncio.sleep(0.5)  # fire-and-forget calls land
    assert [p["phase"] for p in endpoint.posts("/post")] == ["Healthy", "Aborted"]
    reasons = {p["metadata"]["eventReason"] for p in endpoint.posts("/events")}
    assert {"AnalysisRunRunning", "AnalysisRunFailed", "RolloutAborted"} <= reasons
    texts = [p["text"] for p in endpoint.posts("/notify")]
    assert any("is Healthy" in t for t in texts) and any("is Aborted" in t for t in texts)


async def test_apply_refuses_an_unknown_template_and_a_bad_condition(
    world: tuple[LocalService, Endpoint],
) -> None:
    from changeover import errors

    service, endpoint = world
    template, rollout = documents(endpoint.server.url, "v1")
    with pytest.raises(errors.SpecError) as caught:
        await service.apply([rollout], source="web.yaml")
    assert (
        "web.yaml: spec.strategy.canary.steps[1].analysis.templates[0].templateName: "
        "unknown AnalysisTemplate 'errors' (known: none applied)"
    ) in str(caught.value)
    broken = copy.deepcopy(template)
    broken["spec"]["metrics"][0]["successCondition"] = "result <"
    with pytest.raises(errors.SpecError, match=r"spec.metrics\[0\].successCondition: expected"):
        await service.apply([broken, rollout], source="web.yaml")
