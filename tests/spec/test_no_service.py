"""A Kubernetes Rollout without ``spec.service`` (issue 13, item 5): Argo Rollouts' basic
canary, where the user's own Service selects the pods of every revision and the operator
manages no Service. Only a canary or rolling update without a traffic router can run so."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pydantic
import pytest
import yaml

from changeover import validation
from changeover.platforms.kubernetes import crds
from changeover.spec import models

POD = {
    "metadata": {"labels": {"app": "rollouts-demo"}},
    "spec": {
        "containers": [
            {
                "name": "rollouts-demo",
                "image": "argoproj/rollouts-demo:blue",
                "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
            }
        ]
    },
}


def _rollout(**spec: Any) -> models.Rollout:
    return models.Rollout.model_validate(
        {"metadata": {"name": "rollouts-demo"}, "spec": {"replicas": 5, **spec}}
    )


def test_a_basic_canary_without_service_is_accepted() -> None:
    steps = [{"setWeight": 20}, {"pause": {}}, {"setWeight": 40}, {"pause": {"duration": 10}}]
    rollout = _rollout(template=POD, strategy={"canary": {"steps": steps}})
    assert rollout.spec.service.managed is False and rollout.spec.service.port == 8080
    assert rollout.spec.router == "replica-ratio"
    # The API server must accept it too: the CRD does not require spec.service.
    schema = crds.rollout_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert "service" not in schema["properties"]["spec"].get("required", [])


@pytest.mark.parametrize(
    ("strategy", "traffic", "word"),
    [
        ({"blueGreen": {}}, None, "blueGreen"),
        ({"canary": {"steps": [{"setWeight": 20}]}}, {"nginx": {"stableIngress": "x"}}, "nginx"),
    ],
)
def test_what_needs_services_still_needs_spec_service(
    strategy: dict[str, Any], traffic: dict[str, Any] | None, word: str
) -> None:
    extra = {"traffic": traffic} if traffic else {}
    with pytest.raises(pydantic.ValidationError, match=rf"expected spec\.service.*{word}"):
        _rollout(template=POD, strategy=strategy, **extra)


def test_the_local_platform_still_needs_spec_service() -> None:
    with pytest.raises(pydantic.ValidationError, match=r"expected spec\.service"):
        _rollout(template={"command": ["app"]}, strategy={"canary": {}})


def test_lint_warns_that_set_canary_scale_does_nothing_without_a_router(tmp_path: Path) -> None:
    doc = {
        "apiVersion": models.API_VERSION,
        "kind": "Rollout",
        "metadata": {"name": "rollouts-demo"},
        "spec": {
            "replicas": 4,
            "template": POD,
            "strategy": {"canary": {"steps": [{"setCanaryScale": {"replicas": 2}}]}},
        },
    }
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(doc))
    (problem,) = validation.lint(str(path))
    assert problem.severity == "warning"
    assert problem.path == "spec.strategy.canary.steps[0].setCanaryScale"
    assert "no effect" in problem.message
