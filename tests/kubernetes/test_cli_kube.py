"""The CLI against the cluster: the same commands, output and exit codes as on the local
platform, acting on Rollout resources (``--platform kubernetes``)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import k8s_testbed as testbed
import pytest
from k8s_background import Background
from typer.testing import CliRunner

from changeover.cli.main import app

SPEC = """\
apiVersion: changeover.dev/v1alpha1
kind: Rollout
metadata: {{name: web}}
spec:
  replicas: 2
  template:
    metadata: {{labels: {{app: web}}}}
    spec: {{containers: [{{name: app, image: "app:{tag}"}}]}}
  service: {{port: 80}}
  strategy:
    canary:
      steps: [{{setWeight: 50}}, {{pause: {{}}}}]
"""


@pytest.fixture
def ns(cluster: testbed.Cluster) -> Iterator[str]:
    import uuid

    name = f"cli-{uuid.uuid4().hex[:6]}"
    with Background(name):
        yield name


def run(ns: str, *args: str) -> tuple[int, str, str]:
    runner = CliRunner()
    result = runner.invoke(
        app,
        [*args, "--platform", "kubernetes", "--kubeconfig", str(testbed.kubeconfig()), "-n", ns],
    )
    return result.exit_code, result.stdout, result.stderr


def test_cli_apply_wait_status_promote_history(ns: str, tmp_path: Path) -> None:
    spec = tmp_path / "web.yaml"
    spec.write_text(SPEC.format(tag="v1"))
    code, out, err = run(ns, "apply", "-f", str(spec), "--wait", "--timeout", "60")
    assert code == 0, err
    assert "rollout/web created (revision 1)" in out and "Healthy" in out
    spec.write_text(SPEC.format(tag="v2"))
    code, out, _ = run(ns, "apply", "-f", str(spec))
    assert code == 0 and "rollout/web updated (revision 2)" in out
    # The stable ReplicaSet's scale-down may land a moment after the Paused status write.
    deadline = time.monotonic() + 120
    while True:
        code, out, _ = run(ns, "status", "web", "-o", "json")
        doc = json.loads(out)
        settled = doc["phase"] == "Paused" and doc["replicas"] == {"1": 1, "2": 1}
        if settled or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert doc["phase"] == "Paused" and doc["canaryRevision"] == 2
    # Without a router the weight is the replica ratio: stable goes down to 1 (Argo's
    # basic canary), so 50% is one pod of each.
    assert doc["weights"] == {"1": 50, "2": 50} and doc["replicas"] == {"1": 1, "2": 1}
    assert doc["currentStepIndex"] == 1 and doc["totalSteps"] == 2
    code, out, _ = run(ns, "promote", "web")
    assert code == 0 and out.startswith("rollout/web promoted")
    code, out, err = run(ns, "apply", "-f", str(spec), "--wait", "--timeout", "60", "-o", "json")
    assert code == 0, err
    code, out, _ = run(ns, "history", "web", "-o", "json")
    assert [(h["revision"], h["stable"]) for h in json.loads(out)] == [(1, False), (2, True)]
    # The same exit codes: nothing to promote is a state error (1), a bad file is 2.
    code, _, err = run(ns, "promote", "web")
    assert code == 1 and "nothing to promote" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text(SPEC.format(tag="v3").replace("replicas: 2", "replicas: -1"))
    code, _, err = run(ns, "apply", "-f", str(bad))
    assert code == 2 and "spec.replicas" in err
    code, _, err = run(ns, "status", "nope")
    assert code == 1 and "no rollout named 'nope'" in err


def test_cli_refuses_a_process_template_on_kubernetes(ns: str, tmp_path: Path) -> None:
    spec = tmp_path / "local.yaml"
    spec.write_text("""\
apiVersion: changeover.dev/v1alpha1
kind: Rollout
metadata: {name: local}
spec:
  template: {command: [python, app.py]}
  service: {port: 8080}
  strategy: {canary: {steps: [{setWeight: 10}]}}
""")
    code, _, err = run(ns, "apply", "-f", str(spec))
    assert code == 2
    assert "spec.template: a process template (spec.template.command) runs on the local" in err


def test_cli_refuses_a_namespace_other_than_the_one_it_acts_on(ns: str, tmp_path: Path) -> None:
    spec = tmp_path / "elsewhere.yaml"
    spec.write_text("""\
apiVersion: changeover.dev/v1alpha1
kind: Rollout
metadata: {name: elsewhere, namespace: somewhere-else}
spec:
  template:
    spec:
      containers: [{name: app, image: "app:1"}]
  service: {port: 8080}
  strategy: {canary: {steps: [{setWeight: 10}]}}
""")
    code, _, err = run(ns, "apply", "-f", str(spec))
    assert code == 2
    assert f"{spec}: metadata.namespace: is 'somewhere-else', but this command acts on" in err
    assert f"namespace '{ns}'; pass -n somewhere-else" in err
    code, _, err = run(ns, "status", "elsewhere")
    assert code == 1  # nothing was created
    haproxy = spec.read_text().replace("  strategy:", "  traffic: {haproxy: {}}\n  strategy:")
    spec.write_text(haproxy.replace("namespace: somewhere-else", f"namespace: {ns}"))
    code, _, err = run(ns, "apply", "-f", str(spec))
    assert code == 2
    assert f"{spec}: spec.traffic.haproxy: router 'haproxy' runs on the local platform" in err


def test_cli_context_chooses_the_kubeconfig_context(ns: str) -> None:
    code, _, err = run(ns, "get", "--context", "nosuch")
    assert code == 1
    assert "no context named 'nosuch'" in err
    code, _, err = run(ns, "get", "--context", "local")  # the test bed's only context
    assert code == 0, err
