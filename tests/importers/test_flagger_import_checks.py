"""Imported Flagger Canaries gate like Flagger (issue 13, items 1, 2, 9, 10).

Given Canaries written as Flagger's documentation writes them, when imported, then each
weight (or iteration) waits for a passing check of ``spec.checks``, ``threshold`` failed
checks across the rollout abort it, metric conditions read the Prometheus vector's value,
webhooks follow the analysis interval, and names and namespaces are carried as Flagger
means them. The last tests run an imported Canary through the engine (FakeWorld).
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from changeover import errors, importers
from changeover.engine import actions
from changeover.spec import models
from tests.engine.world import FakeWorld, Phase


def canary(
    analysis: dict[str, Any], *, namespace: str | None = "test", **spec: Any
) -> dict[str, Any]:
    """A Canary as in Flagger's istio tutorial (docs/gitbook/tutorials/istio-progressive-
    delivery.md), with ``analysis`` replaced."""
    meta: dict[str, Any] = {"name": "podinfo"}
    if namespace is not None:
        meta["namespace"] = namespace
    return {
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "metadata": meta,
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "service": {"port": 9898, "targetPort": 9898},
            "analysis": analysis,
            **spec,
        },
    }


SUCCESS = {"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": "1m"}
TUTORIAL = {
    "interval": "1m",
    "threshold": 5,
    "maxWeight": 50,
    "stepWeight": 10,
    "metrics": [SUCCESS],
}


def convert(doc: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    result = importers.convert([doc], "canary.yaml")
    (rollout,) = result.documents
    return rollout, {n.path: n.message for n in result.notes}


def test_every_weight_waits_for_a_passing_check_and_threshold_counts_the_rollout() -> None:
    rollout, _ = convert(canary(TUTORIAL, provider="istio"))
    spec = rollout["spec"]
    assert spec["strategy"]["canary"]["steps"] == [
        step for w in (10, 20, 30, 40, 50) for step in ({"setWeight": w}, {"check": {}})
    ]
    assert "analysis" not in spec["strategy"]["canary"]  # no background analysis
    checks = spec["checks"]
    assert checks["interval"] == "1m" and checks["threshold"] == 5
    (metric,) = checks["metrics"]
    # Measured once per check: no count, interval or failureLimit of its own.
    assert set(metric) == {"name", "provider", "successCondition"}


def test_the_condition_reads_the_vectors_value_not_the_list() -> None:
    analysis = dict(
        TUTORIAL,
        metrics=[SUCCESS, {"name": "request-duration", "thresholdRange": {"min": 1, "max": 500}}],
    )
    rollout, _ = convert(canary(analysis, provider="istio"))
    success, duration = rollout["spec"]["checks"]["metrics"]
    assert success["successCondition"] == "result[-1] >= 99"
    assert duration["successCondition"] == "result[-1] >= 1 && result[-1] <= 500"


def test_a_threshold_that_is_not_a_number_is_refused_naming_the_file() -> None:
    bad = dict(TUTORIAL, metrics=[dict(SUCCESS, thresholdRange={"min": "99; rm"})])
    with pytest.raises(errors.SpecError) as caught:
        importers.convert([canary(bad, provider="istio")], "canary.yaml")
    (problem,) = caught.value.problems
    assert problem.file == "canary.yaml" and "thresholdRange" in problem.message


def test_a_metric_name_with_spaces_is_carried_with_a_note_on_its_real_path() -> None:
    analysis = dict(
        TUTORIAL, metrics=[{"name": "error rate", "query": "sum(up)", "thresholdRange": {"max": 1}}]
    )
    rollout, notes = convert(canary(analysis, provider="istio"))
    (metric,) = rollout["spec"]["checks"]["metrics"]
    assert metric["name"] == "error-rate"
    assert "'error rate' is written 'error-rate'" in notes["spec.analysis.metrics[0].name"]
    models.Rollout.model_validate(rollout)  # valid: no error on a path the source lacks


def test_without_a_namespace_queries_use_the_rollouts_own_namespace_with_a_note() -> None:
    rollout, notes = convert(canary(TUTORIAL, namespace=None, provider="istio"))
    checks = rollout["spec"]["checks"]
    query = checks["metrics"][0]["provider"]["prometheus"]["query"]
    assert 'destination_workload_namespace="{{args.namespace}}"' in query
    assert 'namespace="default"' not in query
    assert checks["args"] == [
        {"name": "namespace", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}
    ]
    assert "metadata.namespace" in notes


def test_webhooks_follow_the_analysis_interval() -> None:
    hooks = [
        {"name": "load test", "url": "http://flagger-loadtester.test/", "metadata": {"cmd": "hey"}},
        {
            "name": "gate",
            "type": "confirm-rollout",
            "url": "http://flagger-loadtester.test/gate/check",
        },
    ]
    rollout, _ = convert(canary(dict(TUTORIAL, interval="30s", webhooks=hooks), provider="istio"))
    assert [(h["name"], h["interval"]) for h in rollout["spec"]["webhooks"]] == [
        ("load-test", "30s"),
        ("gate", "30s"),
    ]


def test_an_interval_under_ten_seconds_is_ten_as_in_flagger() -> None:
    rollout, notes = convert(canary(dict(TUTORIAL, interval="2s"), provider="istio"))
    assert rollout["spec"]["checks"]["interval"] == "10s" and "spec.analysis.interval" in notes


def test_blue_green_iterations_and_the_kubernetes_provider() -> None:
    # docs/gitbook/tutorials/kubernetes-blue-green.md: provider kubernetes, iterations 10.
    bg = {"interval": "1m", "threshold": 2, "iterations": 10, "metrics": [SUCCESS]}
    rollout, _ = convert(canary(bg, provider="kubernetes"))
    assert rollout["spec"]["strategy"] == {
        "blueGreen": {
            "activeService": "podinfo",
            "previewService": "podinfo-canary",
            "prePromotionChecks": 11,
        }
    }
    # A mesh provider: iterations checks without traffic, then all of it and one more.
    rollout, _ = convert(canary(bg, provider="istio"))
    assert rollout["spec"]["strategy"]["canary"]["steps"] == [
        {"setCanaryScale": {"weight": 100}},
        {"check": {"count": 10}},
        {"setWeight": 100},
        {"check": {}},
    ]
    # stepWeight on the kubernetes provider: Flagger runs blue/green with 10 iterations.
    rollout, notes = convert(canary(TUTORIAL, provider="kubernetes"))
    assert rollout["spec"]["strategy"]["blueGreen"]["prePromotionChecks"] == 11
    assert "spec.analysis.stepWeight" in notes


# --- through the engine -----------------------------------------------------------------


def _world(doc: dict[str, Any]) -> FakeWorld:
    rollout, _ = convert(doc)
    rollout["spec"]["template"] = {"command": ["app", "--port", "$(PORT)"]}
    rollout["spec"].pop("traffic", None)
    rollout["spec"]["traffic"] = {"builtin": {}}
    world = FakeWorld(models.Rollout.model_validate(rollout)).settle()
    assert world.phase == Phase.HEALTHY
    return world.apply(revision=2).clear().settle()


def _measure(world: FakeWorld, phase: str) -> FakeWorld:
    (run,) = world.running_analysis()
    world.analysis_result(run.rsplit("-", 1)[1], phase)  # type: ignore[arg-type]
    return world.advance(60).settle()


def test_an_imported_failing_canary_is_never_promoted_and_rolls_back_at_threshold() -> None:
    world = _world(canary(dict(TUTORIAL, threshold=3), provider="istio"))
    for _ in range(3):
        assert world.weights == {1: 90, 2: 10}
        _measure(world, "Failed")
    assert world.phase == Phase.ABORTED and world.weights == {1: 100}
    assert max(a.as_dict().get(2, 0) for a in world.of_type(actions.SetWeight)) == 10


def test_an_imported_healthy_canary_is_promoted_after_one_check_per_weight() -> None:
    world = _world(canary(TUTORIAL, provider="istio"))
    for weight in (10, 20, 30, 40, 50):
        assert world.weights == {1: 100 - weight, 2: weight}
        _measure(world, "Successful")
    assert world.phase == Phase.HEALTHY and world.weights == {2: 100}


def test_a_metric_template_secret_is_named_never_copied_nor_asked_for_in_plain_text() -> None:
    template = {
        "apiVersion": "flagger.app/v1beta1",
        "kind": "MetricTemplate",
        "metadata": {"name": "latency", "namespace": "test"},
        "spec": {
            "provider": {
                "type": "prometheus",
                "address": "https://prometheus.example.com",
                "secretRef": {"name": "prom-auth"},
                "insecureSkipVerify": True,
            },
            "query": "histogram_quantile(0.99, sum(rate(x[{{ interval }}])) by (le))",
        },
    }
    metric = {"name": "latency", "templateRef": {"name": "latency"}, "thresholdRange": {"max": 5}}
    result = importers.convert(
        [canary(dict(TUTORIAL, metrics=[metric]), provider="istio"), template]
    )
    notes = [n for n in result.notes if n.path == "spec.analysis.metrics[0].templateRef"]
    assert any("Secret 'prom-auth'" in n.message and n.kind == "dropped" for n in notes)
    assert any("insecureSkipVerify" in n.message for n in notes)
    text = str(result.documents)
    assert "prom-auth" not in text and "password" not in text.lower()
    assert not any("plain" in n.message or "password:" in n.message for n in result.notes)


def test_an_imported_ab_test_promotes_after_iterations_passing_checks() -> None:
    # docs/gitbook/tutorials/istio-ab-testing.md: iterations 3, a header match.
    ab = {
        "interval": "1m",
        "threshold": 2,
        "iterations": 3,
        "match": [{"headers": {"x-canary": {"exact": "insider"}}}],
        "metrics": [SUCCESS],
    }
    world = _world(canary(ab, provider="istio"))
    assert world.desired(2) == world.desired(1) == 1  # the canary at full size
    assert list(world.status.traffic.header_routes) == ["ab-test"]
    assert world.weights == {1: 100}
    _measure(world, "Failed")
    for _ in range(2):
        _measure(world, "Successful")
        assert world.phase == Phase.PROGRESSING and world.weights == {1: 100}
    _measure(world, "Successful")  # the third passing check: promoted
    assert world.phase == Phase.HEALTHY and world.weights == {2: 100}
    assert world.status.traffic.header_routes == {}


def test_an_imported_blue_green_checks_iterations_then_one_more_with_all_traffic() -> None:
    # docs/gitbook/tutorials/istio-progressive-delivery.md, "Blue/Green": iterations 2.
    bg = {"interval": "1m", "threshold": 2, "iterations": 2, "metrics": [SUCCESS]}
    world = _world(canary(bg, provider="istio"))
    assert world.desired(2) == 1 and world.weights == {1: 100}
    _measure(world, "Successful")
    _measure(world, "Successful")
    assert world.weights == {2: 100} and world.phase == Phase.PROGRESSING
    _measure(world, "Failed")
    _measure(world, "Failed")  # threshold 2: rolled back even at 100%
    assert world.phase == Phase.ABORTED and world.weights == {1: 100}


def test_strict_passes_a_canary_whose_notes_only_say_how_it_was_written(tmp_path: Any) -> None:
    from typer.testing import CliRunner

    from changeover.cli.main import app

    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "podinfo"},
        "spec": {
            "replicas": 2,
            "template": {
                "metadata": {"labels": {"app": "podinfo"}},
                "spec": {"containers": [{"name": "podinfod", "image": "podinfo:6.0.0"}]},
            },
        },
    }
    analysis = dict(TUTORIAL, metrics=[SUCCESS, {"name": "up rate", "query": "sum(up)"}])
    doc = canary(
        analysis,
        namespace=None,
        provider="nginx",
        ingressRef={"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "podinfo"},
    )
    path = tmp_path / "canary.yaml"
    path.write_text(yaml.safe_dump_all([deployment, doc]))
    out = CliRunner().invoke(app, ["import", "--strict", str(path)])
    assert out.exit_code == 0, out.stderr
    assert "metadata.namespace" in out.stderr and "'up rate' is written 'up-rate'" in out.stderr
    rollout = yaml.safe_load(out.stdout)
    (_, up) = rollout["spec"]["checks"]["metrics"]
    assert up["successCondition"] == "result[-1] == result[-1]"  # Flagger: any value passes


@pytest.mark.parametrize(
    ("provider", "needle"),
    [
        ("istio", 'istio_requests_total{reporter="destination",destination_workload_namespace='),
        ("gatewayapi:v1", 'http_request_duration_seconds_count{kubernetes_namespace="test"'),
        ("kubernetes", "http_request_duration_seconds_count{"),
        ("linkerd", 'response_total{namespace="test",deployment=~"podinfo"'),
        ("osm", 'osm_request_total{destination_namespace="test",destination_kind="Deployment"'),
        ("contour", 'envoy_cluster_name=~"test_web-canary_[0-9a-zA-Z-]+"'),
        ("gloo", 'envoy_cluster_name=~"test-podinfo-canaryupstream-'),
        ("appmesh", "istio_requests_total{"),  # Flagger's observer factory: Istio otherwise
    ],
)
def test_built_in_metrics_use_the_query_of_flaggers_observer_for_the_provider(
    provider: str, needle: str
) -> None:
    doc = canary(TUTORIAL, provider=provider)
    doc["spec"]["service"]["name"] = "web"
    rollout, _ = convert(doc)
    checks = rollout["spec"].get("checks") or {}
    (metric,) = checks["metrics"]
    assert needle in metric["provider"]["prometheus"]["query"]


def test_match_without_iterations_is_a_weighted_canary_and_says_the_match_is_dropped() -> None:
    match = [{"headers": {"x-canary": {"exact": "insider"}}}]
    rollout, notes = convert(canary(dict(TUTORIAL, match=match), provider="istio"))
    steps = rollout["spec"]["strategy"]["canary"]["steps"]
    assert steps[:2] == [{"setWeight": 10}, {"check": {}}]
    assert "header matches are not" in notes["spec.analysis.match"]
