"""What ``kubectl get rollouts -o yaml`` prints, imported: a ``kind: List`` of Argo Rollouts
(the getting-started ``rollouts-demo`` canary from Argo Rollouts' documentation, as the
cluster returns it, with status and server-side metadata), ``--strict`` only for real
losses, and Secret references carried instead of dropped."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from changeover import importers
from changeover.cli.main import app

JSON = dict[str, Any]
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"

# docs/getting-started.md's rollouts-demo, as `kubectl get rollouts -o yaml` returns it.
DEMO: JSON = {
    "apiVersion": "argoproj.io/v1alpha1",
    "kind": "Rollout",
    "metadata": {
        "name": "rollouts-demo",
        "namespace": "default",
        "uid": "5b4f3c3e-8d55-4a4f-9b6a-1a2b3c4d5e6f",
        "resourceVersion": "48211",
        "generation": 2,
        "creationTimestamp": "2026-12-01T10:00:00Z",
        "annotations": {
            LAST_APPLIED: '{"apiVersion":"argoproj.io/v1alpha1","kind":"Rollout"}',
            "rollout.argoproj.io/revision": "2",
            "team": "storefront",
        },
    },
    "spec": {
        "replicas": 5,
        "revisionHistoryLimit": 2,
        "selector": {"matchLabels": {"app": "rollouts-demo"}},
        "template": {
            "metadata": {"labels": {"app": "rollouts-demo"}},
            "spec": {
                "containers": [
                    {
                        "name": "rollouts-demo",
                        "image": "argoproj/rollouts-demo:blue",
                        "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                        "resources": {"requests": {"memory": "32Mi", "cpu": "5m"}},
                        "env": [
                            {
                                "name": "API_TOKEN",
                                "valueFrom": {
                                    "secretKeyRef": {"name": "demo-secrets", "key": "token"}
                                },
                            }
                        ],
                    }
                ]
            },
        },
        "strategy": {
            "canary": {
                "steps": [
                    {"setWeight": 20},
                    {"pause": {}},
                    {"setWeight": 40},
                    {"pause": {"duration": 10}},
                    {"setWeight": 60},
                    {"pause": {"duration": 10}},
                    {"setWeight": 80},
                    {"pause": {"duration": 10}},
                ]
            }
        },
    },
    "status": {"phase": "Healthy", "stableRS": "687d76d795", "observedGeneration": "2"},
}


def _export(*rollouts: JSON) -> JSON:
    return {"apiVersion": "v1", "kind": "List", "items": list(rollouts), "metadata": {}}


def _write(tmp_path: Path, doc: JSON) -> str:
    path = tmp_path / "export.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def test_a_kubectl_list_export_imports_every_item(tmp_path: Path) -> None:
    other = copy.deepcopy(DEMO)
    other["metadata"]["name"] = "rollouts-demo-2"
    out = CliRunner().invoke(app, ["import", _write(tmp_path, _export(DEMO, other)), "-o", "json"])
    assert out.exit_code == 0, out.output
    docs = json.loads(out.stdout)
    assert [d["metadata"]["name"] for d in docs] == ["rollouts-demo", "rollouts-demo-2"]
    # kubectl's copy of the applied manifest and Argo's bookkeeping are not carried.
    assert docs[0]["metadata"]["annotations"] == {"team": "storefront"}
    assert "status" not in docs[0]


def test_strict_passes_a_plain_argo_rollout_and_fails_a_real_loss(tmp_path: Path) -> None:
    runner = CliRunner()
    plain = runner.invoke(app, ["import", _write(tmp_path, _export(DEMO)), "--strict"])
    # The notes are still printed (selector, port), but nothing was lost.
    assert "spec.selector: changed" in plain.stderr
    assert plain.exit_code == 0, plain.output
    lossy = copy.deepcopy(DEMO)
    lossy["spec"]["strategy"]["canary"]["steps"].append({"experiment": {"templates": []}})
    out = runner.invoke(app, ["import", _write(tmp_path, _export(lossy)), "--strict"])
    assert out.exit_code == 2
    assert "experiment: dropped" in out.stderr


def test_secret_references_are_carried_not_dropped(tmp_path: Path) -> None:
    template = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": "success-rate"},
        "spec": {
            "args": [
                {"name": "api-token", "valueFrom": {"secretKeyRef": {"name": "t", "key": "k"}}}
            ],
            "metrics": [
                {
                    "name": "ok",
                    "provider": {
                        "web": {
                            "url": "http://metrics.example.org/check",
                            "headers": [{"key": "Authorization", "value": "{{args.api-token}}"}],
                        }
                    },
                }
            ],
        },
    }
    result = importers.import_path(_write(tmp_path, _export(DEMO, template)))
    rollout, converted = result.documents
    env = rollout["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env == DEMO["spec"]["template"]["spec"]["containers"][0]["env"]
    assert converted["spec"]["args"][0]["valueFrom"] == {"secretKeyRef": {"name": "t", "key": "k"}}
    assert not [n for n in result.notes if "secret" in f"{n.path} {n.message}".lower()]


def test_a_file_with_nothing_to_import_is_an_error(tmp_path: Path) -> None:
    out = CliRunner().invoke(app, ["import", _write(tmp_path, _export())])
    assert out.exit_code == 2
    assert "nothing to import" in out.output


@pytest.mark.parametrize("kind", ["List", "RolloutList"])
def test_unlisted_reads_lists_of_either_kind(kind: str) -> None:
    assert importers.unlisted([{"kind": kind, "items": [DEMO]}]) == [DEMO]


def test_strict_does_not_fail_on_the_services_beside_a_rollout(tmp_path: Path) -> None:
    """Argo's examples keep the Services a canary names in the same file: they are the
    user's, not converted, and not lost; an Argo kind that is not converted is."""
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "rollouts-demo"},
        "spec": {"ports": [{"port": 80, "targetPort": "http"}], "selector": {"app": "demo"}},
    }
    runner = CliRunner()
    out = runner.invoke(app, ["import", _write(tmp_path, _export(DEMO, service)), "--strict"])
    assert out.exit_code == 0, out.output
    assert "Service/rollouts-demo: dropped: v1 Service is not a rollout: left out" in out.stderr
    experiment = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Experiment", "metadata": {}}
    experiment["metadata"]["name"] = "canary-vs-baseline"
    lossy = runner.invoke(app, ["import", _write(tmp_path, _export(DEMO, experiment)), "--strict"])
    assert lossy.exit_code == 2
