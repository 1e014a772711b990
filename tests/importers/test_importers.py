"""Importing Argo Rollouts and Flagger manifests: what comes out is a valid changeover
spec (checked by the same models and validation as `changeover lint`), and every field
that did not come along is named."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from changeover import importers, validation
from changeover.cli.main import app
from changeover.spec import load, models

FIXTURES = Path(__file__).parent / "fixtures"


def _valid(documents: list[dict[str, object]]) -> list[models.Rollout]:
    docs = [
        load.LoadedDocument(source="imported", index=i, data=d) for i, d in enumerate(documents)
    ]
    specs, problems = load.collect_documents(docs)
    problems += validation.validate_rollouts(specs.rollouts)
    assert [p for p in problems if p.severity != "warning"] == []
    return specs.rollouts


def _paths(result: importers.Result) -> dict[str, str]:
    return {n.path: n.kind for n in result.notes}


def test_argo_canary_with_istio_carries_steps_routes_and_analysis() -> None:
    result = importers.import_path(str(FIXTURES / "argo-canary-istio.yaml"))
    rollout, template = result.documents
    assert template["kind"] == "AnalysisTemplate"
    (model,) = _valid([rollout])
    spec = model.spec
    assert spec.platform == "kubernetes" and spec.router == "istio"
    assert spec.replicas == 5 and spec.revision_history_limit == 3
    assert spec.service.name == "reviews-stable" and spec.service.canary_name == "reviews-canary"
    assert spec.service.port == 9080
    canary = spec.strategy.canary
    assert canary is not None
    assert [s.kind for s in canary.steps] == [
        "set_weight",
        "pause",
        "set_header_route",
        "set_mirror_route",
        "analysis",
        "set_canary_scale",
        "set_weight",
        "pause",
    ]
    assert canary.steps[1].pause is not None and canary.steps[1].pause.duration == 3600
    mirror = canary.steps[3].set_mirror_route
    assert mirror is not None and mirror.percentage == 40
    assert mirror.match[0].header_name == "x-mirror"
    assert spec.traffic.config["destinationRule"]["canarySubsetName"] == "canary"
    notes = _paths(result)
    assert canary.scale_down_delay_seconds == 30
    assert "spec.strategy.canary.scaleDownDelaySeconds" not in notes  # carried over
    for dropped in (
        "spec.strategy.canary.dynamicStableScale",
        "spec.strategy.canary.steps[5].experiment",
        "spec.metrics[1].provider.datadog",
    ):
        assert notes.get(dropped) == "dropped", dropped
    assert notes["spec.strategy.canary.trafficRouting.managedRoutes"] == "changed"
    assert notes["spec.selector"] == "changed" and notes["spec.service.port"] == "changed"


def test_argo_blue_green() -> None:
    result = importers.import_path(str(FIXTURES / "argo-bluegreen.yaml"))
    (model,) = _valid(result.documents)
    bg = model.spec.strategy.blue_green
    assert bg is not None and bg.active_service == "checkout-active"
    assert bg.auto_promotion_enabled is False and bg.scale_down_delay_seconds == 60
    assert model.spec.router == "replica-ratio"
    assert _paths(result)["spec.strategy.blueGreen.previewMetadata"] == "dropped"


def test_flagger_canary_takes_the_deployment_template() -> None:
    result = importers.import_path(str(FIXTURES / "flagger-canary.yaml"))
    (model,) = _valid(result.documents)
    spec = model.spec
    assert spec.replicas == 2 and spec.router == "istio"
    assert spec.pod_template().image == "ghcr.io/stefanprodan/podinfo:6.0.0"
    canary = spec.strategy.canary
    assert canary is not None
    # Each weight waits for a passing check (Flagger's scheduler), never a timed pause.
    assert [s.kind for s in canary.steps] == ["set_weight", "check"] * 5
    weights = [s.set_weight for s in canary.steps if s.set_weight is not None]
    assert weights == [10, 20, 30, 40, 50]
    assert canary.analysis is None and spec.checks is not None
    assert spec.checks.interval == 30 and spec.checks.threshold == 5
    (metric,) = spec.checks.metrics
    assert metric.success_condition == "result[-1] >= 99"
    assert {w.interval for w in spec.webhooks} == {30.0}
    assert [w.name for w in spec.webhooks] == ["acceptance-test", "load-test"]
    notes = _paths(result)
    # Flagger's built-in request-success-rate runs as its Prometheus query.
    assert notes["spec.analysis.metrics[0]"] == "changed"
    assert notes["spec.autoscalerRef"] == "dropped"
    assert notes["spec.service.gateways"] == "dropped"


def test_flagger_ab_test_without_its_deployment() -> None:
    result = importers.import_path(str(FIXTURES / "flagger-ab.yaml"))
    (model,) = _valid(result.documents)
    canary = model.spec.strategy.canary
    assert canary is not None
    route = canary.steps[1].set_header_route
    assert route is not None and [m.header_name for m in route.match] == ["x-canary", "cookie"]
    check = canary.steps[2].check
    assert check is not None and check.count == 10  # iterations: passing checks
    assert model.spec.traffic.config == {"stableIngress": "abtest"}
    assert _paths(result)["spec.targetRef"] == "changed"


def test_cli_import_prints_yaml_and_reports_on_stderr() -> None:
    runner = CliRunner()
    out = runner.invoke(app, ["import", str(FIXTURES / "argo-bluegreen.yaml"), "-o", "json"])
    assert out.exit_code == 0
    assert json.loads(out.stdout)[0]["spec"]["strategy"]["blueGreen"]["activeService"] == (
        "checkout-active"
    )
    assert "previewMetadata: dropped" in out.stderr
    strict = runner.invoke(app, ["import", str(FIXTURES / "argo-bluegreen.yaml"), "--strict"])
    assert strict.exit_code == 2


def test_argo_workload_ref_takes_the_deployment_and_filters_args() -> None:
    result = importers.import_path(str(FIXTURES / "argo-workloadref.yaml"))
    (model,) = _valid(result.documents)
    assert model.spec.pod_template().image == "api:3" and model.spec.service.port == 8000
    step = model.spec.strategy.canary.steps[2] if model.spec.strategy.canary else None
    assert step is not None and step.analysis is not None
    assert [a.name for a in step.analysis.args] == ["token", "hash"]
    notes = _paths(result)
    assert notes["spec.workloadRef"] == "changed"
    # The Secret reference is carried, as Argo reads it: never a hint to paste the secret.
    token = step.analysis.args[0]
    assert token.value_from is not None and token.value_from.secret_key_ref is not None
    assert not any("secretKeyRef" in p for p in notes)
    assert not any(p.startswith("Deployment/") for p in notes)


def _flagger_weights(analysis: dict[str, object]) -> list[int]:
    canary = {
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "metadata": {"name": "web"},
        "spec": {
            "provider": "istio",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "service": {"port": 80},
            "analysis": {"interval": "10s", **analysis},
        },
    }
    (rollout,) = importers.convert([canary], "canary.yaml").documents
    steps = rollout["spec"]["strategy"]["canary"]["steps"]
    return [s["setWeight"] for s in steps if "setWeight" in s]


def test_flagger_weights_stop_at_max_weight() -> None:
    assert _flagger_weights({"stepWeight": 20, "maxWeight": 40}) == [20, 40]
    # Flagger adds stepWeight while under maxWeight (scheduler.go runCanary), capped at 100.
    assert _flagger_weights({"stepWeight": 20, "maxWeight": 50}) == [20, 40, 60]
    assert _flagger_weights({"stepWeight": 30, "maxWeight": 90}) == [30, 60, 90]
    assert _flagger_weights({"stepWeight": 40}) == [40, 80, 100]
    assert _flagger_weights({"stepWeights": [1, 2, 10, 80]}) == [1, 2, 10, 80]
    assert _flagger_weights({"stepWeight": 25}) == [25, 50, 75, 100]
