"""Argo Rollouts' ``setMirrorRoute`` imported with Argo's meaning (issue 13, item 4): no
``match`` removes the mirror route; a match changeover cannot carry is refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from changeover import errors, importers
from changeover.spec import load

# Argo Rollouts' docs (features/traffic-management/mirroring): a mirror, then its removal.
DOCS = """
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: rollout-mirror
spec:
  replicas: 2
  template:
    metadata:
      labels: {app: rollout-mirror}
    spec:
      containers:
      - name: app
        image: argoproj/rollouts-demo:blue
        ports: [{containerPort: 8080}]
  strategy:
    canary:
      canaryService: rollout-mirror-canary
      stableService: rollout-mirror-stable
      trafficRouting:
        managedRoutes:
        - name: mirror-route
        istio:
          virtualService:
            name: rollout-vsvc
            routes: [primary]
      steps:
      - setCanaryScale:
          weight: 25
      - setMirrorRoute:
          name: mirror-route
          percentage: 35
          match:
          - headers:
              agent-1b:
                exact: firefox
      - pause: {}
      - setMirrorRoute:
          name: "mirror-route"  # removes the route: no match
      - setWeight: 40
"""


def _steps(text: str, tmp_path: Path) -> list[dict[str, object]]:
    source = tmp_path / "rollout.yaml"
    source.write_text(text)
    (body,) = importers.import_path(str(source)).documents
    (rollout,) = load.parse_rollouts([load.LoadedDocument(source=str(source), index=0, data=body)])
    assert rollout.spec.strategy.canary is not None
    return [s.to_json_dict() for s in rollout.spec.strategy.canary.steps]


def test_mirror_without_match_is_its_removal(tmp_path: Path) -> None:
    steps = _steps(DOCS, tmp_path)
    assert steps[1]["setMirrorRoute"] == {
        "name": "mirror-route",
        "percentage": 35,
        "match": [{"headerName": "agent-1b", "headerValue": {"exact": "firefox"}}],
    }
    removal = steps[3]["setMirrorRoute"]
    assert removal["percentage"] == 0 and not removal.get("match")


@pytest.mark.parametrize("key", ["method", "path"])
def test_a_match_that_cannot_be_carried_is_refused_by_name(tmp_path: Path, key: str) -> None:
    doc = yaml.safe_load(DOCS)
    mirror = doc["spec"]["strategy"]["canary"]["steps"][1]["setMirrorRoute"]
    mirror["match"] = [{key: {"exact": "GET" if key == "method" else "/api"}}]
    source = tmp_path / "rollout.yaml"
    source.write_text(yaml.safe_dump(doc))
    with pytest.raises(errors.SpecError) as caught:
        importers.import_path(str(source))
    (problem,) = caught.value.problems
    assert problem.file == str(source)
    assert problem.path == f"spec.strategy.canary.steps[1].setMirrorRoute.match[0].{key}"
    assert "headers only" in problem.message
