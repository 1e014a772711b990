"""Argo Rollouts and Flagger manifests shaped the way their users and docs write them (our
own, under tests/fixtures/imports/, each naming the file whose shape it follows): every one
is either imported into resources that `changeover lint` passes, with every field of the
source either carried or named in the report, or refused with an error naming the file and
the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from changeover import errors, importers, validation
from changeover.cli.main import app
from changeover.spec import load, models

FIXTURES = Path(__file__).parents[1] / "fixtures" / "imports"
ALL = sorted(FIXTURES.rglob("*.yaml"))
# file → (field path the refusal names, a word of its message)
REFUSED = {
    "argo/nginx-template.yaml": ("metadata.name", "REPLACEME"),
    "argo/rollout-linkerd.yaml": ("", "line 74"),
    "argo/docs-bluegreen-analysis-antiaffinity.yaml": (
        "spec.strategy.blueGreen.prePromotionAnalysis",
        "count",
    ),
    "flagger/istio-mirror.yaml": ("spec.targetRef", "Deployment"),
    # A mirror matched by path and method: carried without them it would mirror more.
    "argo/istio-mirror.yaml": (
        "spec.strategy.canary.steps[1].setMirrorRoute.match[0].path",
        "path",
    ),
}
# Source fields a converter rewrites into something else (checked by the strategy tests
# below), so their values need not reappear under the same key.
REWRITTEN = (
    "spec.analysis.interval",
    "spec.analysis.stepWeight",
    "spec.analysis.maxWeight",
    "spec.analysis.stepWeights",
    "spec.analysis.iterations",
    "spec.analysis.threshold",
    "spec.analysis.mirror",
    "spec.analysis.mirrorWeight",
    "spec.analysis.match",
    "spec.analysis.metrics",
    "spec.provider",
    "spec.ingressRef",
)
JSON = dict[str, Any]


def _key(path: Path) -> str:
    return str(path.relative_to(FIXTURES))


def _leaves(value: Any, path: str) -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        return [leaf for k, v in value.items() for leaf in _leaves(v, f"{path}.{k}")]
    if isinstance(value, list) and value:
        return [leaf for i, v in enumerate(value) for leaf in _leaves(v, f"{path}[{i}]")]
    return [(path, value)]


# Argo fields carried over under another name.
RENAMED = {"canaryService": "canaryName", "stableService": "name"}


def _pairs(docs: Any) -> set[tuple[str, str]]:
    """(field name, value) of every leaf: how a carried field is recognised wherever it
    went (steps renumbered after a dropped one, Services moved under spec.service)."""
    return {(_last(path), repr(value)) for path, value in _leaves(docs, "")}


def _last(path: str) -> str:
    return path.rsplit(".", 1)[-1].split("[")[0]


@pytest.mark.parametrize("path", ALL, ids=_key)
def test_imported_or_refused_by_name(path: Path, tmp_path: Path) -> None:
    key = _key(path)
    if key in REFUSED:
        field, word = REFUSED[key]
        with pytest.raises(errors.SpecError) as caught:
            importers.import_path(str(path))
        named = [p for p in caught.value.problems if p.file == str(path)]
        assert named and any(p.path == field and word in p.message for p in named), named
        return
    result = importers.import_path(str(path))
    assert any(d["kind"] == "Rollout" for d in result.documents) or "templates" in key
    out = tmp_path / "out.yaml"
    out.write_text("---\n".join(yaml.safe_dump(d) for d in result.documents))
    assert [p for p in validation.lint(str(out)) if p.severity != "warning"] == []


@pytest.mark.parametrize("path", [p for p in ALL if _key(p) not in REFUSED], ids=_key)
def test_every_source_field_is_carried_or_reported(path: Path) -> None:
    """A leaf of a source Rollout/Canary spec is accounted for when a note names it (or a
    field above it), or its value comes out in the converted Rollout, or a converter
    rewrites it on purpose (REWRITTEN; the strategy tests check those)."""
    result = importers.import_path(str(path))
    noted = [n.path for n in result.notes if n.source == str(path)]
    produced = _pairs(result.documents)
    sources = [d.data for d in load.load_path(path)]
    for doc in sources:
        if doc.get("kind") not in ("Rollout", "Canary"):
            continue
        for leaf, value in _leaves(doc.get("spec") or {}, "spec"):
            if leaf.startswith(REWRITTEN) or any(
                leaf == n or leaf.startswith((f"{n}.", f"{n}[")) for n in noted
            ):
                continue
            name = RENAMED.get(_last(leaf), _last(leaf))
            assert (name, repr(value)) in produced, (
                f"{leaf} = {value!r}: neither carried over nor reported"
            )


def _rollout(key: str) -> models.Rollout:
    docs = [d for d in importers.import_path(str(FIXTURES / key)).documents]
    rollouts = load.parse_rollouts(
        [load.LoadedDocument(source=key, index=0, data=d) for d in docs if d["kind"] == "Rollout"]
    )
    assert len(rollouts) == 1
    return rollouts[0]


def _steps(rollout: models.Rollout) -> list[JSON]:
    canary = rollout.spec.strategy.canary
    assert canary is not None
    return [s.to_json_dict() for s in canary.steps]


def test_argo_canary_steps_are_the_source_steps() -> None:
    r = _rollout("argo/rollout-canary.yaml")
    assert r.spec.replicas == 4 and r.spec.router == "replica-ratio"
    assert _steps(r) == [
        {"setWeight": 25},
        {"pause": {}},
        {"setWeight": 50},
        {"pause": {"duration": "30s"}},
        {"setWeight": 75},
        {"pause": {"duration": "15s"}},
        {"setWeight": 90},
        {"pause": {"duration": "15s"}},
    ]


def test_argo_header_routes_old_and_new_spelling() -> None:
    old = _steps(_rollout("argo/istio-hr-host.yaml"))
    assert old[1] == {
        "setHeaderRoute": {
            "name": "argo-rollouts-header-route",
            "match": [
                {"headerName": "user-agent", "headerValue": {"regex": "^Mozilla/5.0 .*Gecko"}}
            ],
        }
    }
    assert old[6] == {"setHeaderRoute": {"name": "argo-rollouts-header-route", "match": []}}
    new = _rollout("argo/gatewayapi-traefik-header-based.yaml")
    assert new.spec.traffic.config == {"httpRoute": "atlas-web"}
    steps = _steps(new)
    assert steps[0] == {"setCanaryScale": {"weight": 2, "matchTrafficWeight": False}}
    assert steps[1]["setHeaderRoute"]["match"] == [
        {"headerName": "X-Atlas-Audience", "headerValue": {"exact": "staff"}}
    ]
    assert steps[7] == {"setCanaryScale": {"matchTrafficWeight": True}}
    assert steps[-3:-1] == [
        {"setHeaderRoute": {"name": "atlas-staff", "match": []}},
        {"setHeaderRoute": {"name": "atlas-early-access", "match": []}},
    ]


def test_argo_experiment_step_is_left_out_and_said_so() -> None:
    result = importers.import_path(str(FIXTURES / "argo/rollout-smi-experiment-step.yaml"))
    (rollout,) = [d for d in result.documents if d["kind"] == "Rollout"]
    assert rollout["spec"]["strategy"]["canary"]["steps"] == [{"setWeight": 3}]
    assert rollout["spec"]["traffic"] == {"smi": {"trafficSplitName": "studio-split"}}
    (note,) = [n for n in result.notes if n.path == "spec.strategy.canary.steps[1].experiment"]
    assert note.kind == "dropped" and "Experiment" in note.message


def test_flagger_progressive_canary_with_its_deployment() -> None:
    r = _rollout("flagger/istio-tutorial-with-deployment.yaml")
    assert r.spec.pod_template().image == "registry.example.org/shop/lumen:5.2.0"
    assert r.spec.service.port == 7300 and r.spec.service.canary_name == "lumen-canary"
    assert r.spec.traffic.config == {"virtualService": {"name": "lumen"}}
    steps = _steps(r)
    assert [s["setWeight"] for s in steps[::2]] == [15, 30, 45, 60]
    assert steps[1::2] == [{"check": {"count": 1}}] * 4  # each weight waits for a check
    checks = r.spec.checks
    assert checks is not None and checks.interval == 120 and checks.threshold == 4
    success, duration = checks.metrics
    assert success.success_condition == "result[-1] >= 98"
    assert "istio_requests_total" in success.provider_config["query"]
    assert 'destination_workload_namespace="shop"' in success.provider_config["query"]
    assert (
        duration.success_condition == "result[-1] <= 750"
        and "[45s]" in duration.provider_config["query"]
    )


def test_flagger_ab_test_on_nginx() -> None:
    r = _rollout("flagger/nginx-ab-headers.yaml")
    assert r.spec.strategy.canary is not None
    scale, route, check = r.spec.strategy.canary.steps
    assert scale.set_canary_scale is not None and scale.set_canary_scale.weight == 100
    assert route.set_header_route is not None
    assert [
        (m.header_name, m.header_value.exact if m.header_value else None)
        for m in route.set_header_route.match
    ] == [("x-cohort", "staff")]
    assert check.check is not None and check.check.count == 4  # iterations
    assert r.spec.traffic.config == {"stableIngress": "almanac-public"}
    assert r.spec.checks is not None and r.spec.checks.interval == 20
    assert [m.name for m in r.spec.checks.metrics] == ["request-success-rate"]


def test_flagger_blue_green_and_mirror_and_metric_template() -> None:
    bg = _rollout("flagger/kubernetes-bluegreen.yaml")
    strategy = bg.spec.strategy.blue_green
    # Flagger's blue/green checks iterations + 1 times before promoting (runBlueGreen).
    assert strategy is not None and strategy.pre_promotion_checks == 7
    assert strategy.active_service == "abacus-web" and bg.spec.router == "replica-ratio"
    assert bg.spec.checks is not None and bg.spec.checks.threshold == 8
    assert [w.type for w in bg.spec.webhooks] == ["confirm-rollout", "pre-rollout", "rollout"]
    mirror = _rollout("flagger/istio-mirror-complete.yaml")
    assert mirror.spec.strategy.canary is not None
    assert [s.kind for s in mirror.spec.strategy.canary.steps] == [
        "set_canary_scale",
        "set_mirror_route",
        "check",
        "set_mirror_route",
        "set_weight",
        "check",
    ]
    steps = mirror.spec.strategy.canary.steps
    assert steps[1].set_mirror_route is not None and steps[1].set_mirror_route.percentage == 50
    assert steps[2].check is not None and steps[2].check.count == 8
    assert steps[3].set_mirror_route is not None and steps[3].set_mirror_route.percentage == 0
    ab = _rollout("flagger/gatewayapi-ab-headers.yaml")
    assert ab.spec.pod_template().image == "registry.example.org/writers/quill:2.3.0"
    assert ab.spec.checks is not None
    error_rate = ab.spec.checks.metrics[0]
    # The MetricTemplate's query, its placeholders filled in from the Canary.
    assert 'envoy_cluster_name=~"ab-trial_quill-canary_' in error_rate.provider_config["query"]
    assert error_rate.provider_config["address"] == "http://prometheus.metrics.svc:9090"


def test_flagger_every_webhook_type_with_names_it_had_to_change() -> None:
    result = importers.import_path(str(FIXTURES / "flagger/webhooks-every-type.yaml"))
    hooks = result.documents[0]["spec"]["webhooks"]
    assert [(h["name"], h["type"]) for h in hooks] == [
        ("open-gate", "confirm-rollout"),
        ("chart-tests", "pre-rollout"),
        ("traffic-load", "rollout"),
        ("step-approval", "confirm-traffic-increase"),
        ("final-approval", "confirm-promotion"),
        ("announce", "post-rollout"),
        ("rollback-check", "rollback"),
        ("post-to-Chat", "event"),
    ]
    renamed = {n.path for n in result.notes if n.kind == "changed"}
    assert "spec.analysis.webhooks[0].name" in renamed


def test_cli_refuses_with_the_file_and_field_and_no_traceback() -> None:
    runner = CliRunner()
    bad = FIXTURES / "argo/nginx-template.yaml"
    out = runner.invoke(app, ["import", str(bad)])
    assert out.exit_code == 2 and out.stdout == ""
    assert f"{bad}: metadata.name:" in out.stderr and "Traceback" not in out.stderr
    good = runner.invoke(app, ["import", str(FIXTURES / "flagger/nginx-canary.yaml")])
    assert good.exit_code == 0
    assert "spec.analysis.metrics[0]: changed" in good.stderr
    assert yaml.safe_load(good.stdout)["kind"] == "Rollout"
