"""The kustomize base in deploy/kubernetes is the install manifests' one source written
out: it builds, with kubectl's own kustomize, into exactly what ``changeover manifests``
prints, and its overlays change only the image and the watched namespace."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from changeover import __version__
from changeover.platforms.kubernetes import manifests

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy" / "kubernetes"


def build(path: Path) -> list[dict[str, Any]]:
    out = subprocess.run(
        ["kubectl", "kustomize", str(path)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def by_kind_and_name(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def deployment(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return by_kind_and_name(docs)[("Deployment", manifests.NAME)]


def test_checked_in_base_is_the_generated_one() -> None:
    check = subprocess.run(
        [sys.executable, str(REPO / "tools" / "gen_deploy.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_base_builds_into_the_manifests_documents() -> None:
    built = by_kind_and_name(build(DEPLOY / "base"))
    want = by_kind_and_name(manifests.documents(image=f"changeover:{__version__}"))
    assert built.keys() == want.keys()
    for key, doc in want.items():
        assert built[key] == doc, key


def test_operator_deployment_probes_and_metrics() -> None:
    docs = build(DEPLOY / "base")
    pod = deployment(docs)["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert "--metrics-bind" in container["args"]
    assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert container["securityContext"]["runAsNonRoot"] is True
    service = by_kind_and_name(docs)[("Service", f"{manifests.NAME}-metrics")]
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"


def test_overlays_set_the_image_and_the_namespace() -> None:
    image = deployment(build(DEPLOY / "overlays" / "image"))
    assert image["spec"]["template"]["spec"]["containers"][0]["image"] == (
        f"registry.example.com/changeover:{__version__}"
    )
    args = deployment(build(DEPLOY / "overlays" / "namespaced"))["spec"]["template"]["spec"][
        "containers"
    ][0]["args"]
    assert "--namespace=apps" in args and "--all-namespaces" not in args
