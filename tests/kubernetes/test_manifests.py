"""What `changeover manifests` and `install-crds` produce: structural CRDs a 1.20 API
server accepts (checked for real by the session fixture, which installs them), printer
columns, the status and scale subresources, and RBAC covering what the operator does."""

from __future__ import annotations

import yaml
from typer.testing import CliRunner

from changeover.cli.main import app
from changeover.platforms.kubernetes import crds, manifests


def _walk(schema: object, path: str = "") -> list[str]:
    """Paths where a structural schema has neither a type nor an escape hatch."""
    bad: list[str] = []
    if isinstance(schema, dict):
        ok = (
            "type" in schema
            or schema.get("x-kubernetes-int-or-string")
            or schema.get("x-kubernetes-preserve-unknown-fields")
        )
        if not ok:
            bad.append(path or "<root>")
        for key in ("$ref", "anyOf", "oneOf", "allOf", "additionalProperties"):
            if key in schema and key != "additionalProperties":
                bad.append(f"{path}.{key}")
        for name, sub in (schema.get("properties") or {}).items():
            bad += _walk(sub, f"{path}.{name}")
        if isinstance(schema.get("items"), dict):
            bad += _walk(schema["items"], f"{path}[]")
    return bad


def test_rollout_crd_is_structural_with_columns_and_subresources() -> None:
    crd = crds.rollout_crd()
    version = crd["spec"]["versions"][0]
    assert _walk(version["schema"]["openAPIV3Schema"]) == []
    assert version["subresources"]["status"] == {}
    assert version["subresources"]["scale"]["specReplicasPath"] == ".spec.replicas"
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["Phase"] == ".status.phase" and columns["Step"] == ".status.stepText"
    assert columns["Weights"] == ".status.weightsText"
    steps = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["strategy"][
        "properties"
    ]["canary"]["properties"]["steps"]["items"]["properties"]
    assert steps["setWeight"]["maximum"] == 100
    # "30s" or 30: durations stay open in the schema; the spec models check them.
    assert steps["pause"]["properties"]["duration"]["x-kubernetes-preserve-unknown-fields"]


def test_manifests_command_prints_everything_for_kubectl_apply() -> None:
    out = CliRunner().invoke(app, ["manifests", "--image", "reg/changeover:1", "-n", "ops"])
    assert out.exit_code == 0
    docs = list(yaml.safe_load_all(out.stdout))
    kinds = [d["kind"] for d in docs]
    assert kinds == [
        "CustomResourceDefinition",
        "CustomResourceDefinition",
        "CustomResourceDefinition",  # Rollout, AnalysisTemplate, Flag
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "Service",
    ]
    deployment, metrics = docs[-2:]
    assert metrics["metadata"]["namespace"] == "ops"
    assert metrics["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "reg/changeover:1"
    assert container["args"][:3] == ["serve", "--platform", "kubernetes"]
    assert deployment["spec"]["replicas"] == 2  # leader election picks one
    rules = {
        (g, r) for rule in manifests.RULES for g in rule["apiGroups"] for r in rule["resources"]
    }
    for needed in [
        ("changeover.dev", "flags"),
        ("changeover.dev", "rollouts/status"),
        ("apps", "replicasets"),
        ("coordination.k8s.io", "leases"),
        ("", "events"),
        ("batch", "jobs"),
        ("networking.istio.io", "virtualservices"),
    ]:
        assert needed in rules
    grants = {
        (g, r, v)
        for rule in manifests.RULES
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }
    # serve --argo-rollouts creates changeover Rollouts from the Argo ones it reads
    assert ("changeover.dev", "rollouts", "create") in grants
    assert ("argoproj.io", "rollouts", "watch") in grants
    assert ("apps", "deployments", "get") in grants  # an Argo workloadRef
    only = CliRunner().invoke(app, ["manifests", "--crds-only"])
    assert [d["kind"] for d in yaml.safe_load_all(only.stdout)] == [
        "CustomResourceDefinition",
        "CustomResourceDefinition",
        "CustomResourceDefinition",
    ]


def test_install_crds_through_the_api(cluster: object) -> None:
    import k8s_testbed as testbed

    out = CliRunner().invoke(app, ["install-crds", "--kubeconfig", str(testbed.kubeconfig())])
    assert out.exit_code == 0, out.stderr
    assert "customresourcedefinition/rollouts.changeover.dev established" in out.stdout
