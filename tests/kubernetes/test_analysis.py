"""Analysis on Kubernetes: an AnalysisTemplate resource, a canary step that runs it (the
web provider against a server on this machine's loopback), promotion on success and an
abort on failure, with the verdict in the Rollout's status."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from k8s_helpers import Kube, eventually, healthy_on, json_server, phase_is, rollout

from changeover.kube import client as kube
from changeover.operator.runtime import Operator


class Health:
    ok = True


@pytest.fixture
def health() -> Iterator[tuple[str, type[Health]]]:
    Health.ok = True
    with json_server(lambda _: {"ok": Health.ok}) as url:
        yield f"{url}/health", Health


async def _template(k: Kube, url: str) -> None:
    await k.create(
        kube.ANALYSIS_TEMPLATES,
        {
            "apiVersion": "changeover.dev/v1alpha1",
            "kind": "AnalysisTemplate",
            "metadata": {"name": "health"},
            "spec": {
                "metrics": [
                    {
                        "name": "healthy",
                        "interval": "1s",
                        "count": 2,
                        "successCondition": "result == true",
                        "failureLimit": 0,
                        "provider": {"web": {"url": url, "jsonPath": "{$.ok}"}},
                    }
                ]
            },
        },
    )


STEPS = {
    "canary": {
        "steps": [
            {"setWeight": 25},
            {"analysis": {"templates": [{"templateName": "health"}]}},
            {"pause": {}},
        ]
    }
}


async def test_analysis_step_passes_then_pauses(
    kube_: Kube, operator: Operator, health: tuple[str, type[Health]]
) -> None:
    k = kube_
    await _template(k, health[0])
    await k.apply_rollout(rollout("web", replicas=2, strategy=STEPS))
    await healthy_on(k, "web", 1)
    await k.set_image("web", "app:v2")
    st = await eventually(
        lambda: k.status("web"),
        lambda s: s.get("phase") == "Paused" and s.get("currentStepIndex") == 2,
        within=60,
        what="paused after the analysis step",
    )
    assert st["analysis"]["healthy"]["phase"] == "Successful"


async def test_failing_analysis_aborts(
    kube_: Kube, operator: Operator, health: tuple[str, type[Health]]
) -> None:
    k = kube_
    await _template(k, health[0])
    await k.apply_rollout(rollout("web", replicas=2, strategy=STEPS))
    await healthy_on(k, "web", 1)
    health[1].ok = False
    await k.set_image("web", "app:v2")
    st = await phase_is(k, "web", "Aborted", within=60)
    assert "healthy" in st["message"]
    # Without a router the weights are the replica ratio: 100% once the canary is gone.
    await eventually(lambda: k.status("web"), lambda s: s.get("weightsText") == "1:100")
    assert st["analysis"]["healthy"]["phase"] == "Failed"
