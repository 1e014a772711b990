"""Installing changeover as a cluster user does: ``kubectl apply -k`` of the kustomize
base, then the operator working under the ServiceAccount and ClusterRole it installed,
on an API server that enforces RBAC (conftest: every operator of these tests runs so),
both in this process and from inside the image ``make image`` built (its own files, user
and entrypoint)."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import shutil
import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import image_rootfs
import k8s_testbed as testbed
import pytest
from conftest import helper_operator, operator_kubeconfig
from k8s_helpers import Kube, eventually, healthy_on, rollout

from changeover import __version__, errors
from changeover.kube import client as kube
from tests import process_helpers

REPO = Path(__file__).resolve().parents[2]
BASE = REPO / "deploy" / "kubernetes" / "base"
NAMESPACE = "changeover-system"
_TEXT: Any = {"capture_output": True, "text": True, "check": False, "timeout": 300}
STEPS = {"canary": {"steps": [{"setWeight": 50}, {"pause": {"duration": 1}}]}}


def kubectl(*args: str) -> subprocess.CompletedProcess[str]:
    argv = ["kubectl", f"--kubeconfig={testbed.kubeconfig()}", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def installed(cluster: testbed.Cluster) -> Iterator[None]:
    """The base applied for real (one test session at a time: it is cluster-wide). The
    operator Deployment and its Service go afterwards; the namespace, ServiceAccount and
    ClusterRole stay (the session's operators run as them), and so do the CRDs."""
    with open(testbed.testbed_dir() / "install-test.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        out = kubectl("apply", "-k", str(BASE))
        assert out.returncode == 0, out.stderr
        try:
            yield
        finally:
            kubectl(
                "delete",
                "-n",
                NAMESPACE,
                "deployment,service",
                "-l",
                "app.kubernetes.io/part-of=changeover",
            )


@pytest.fixture
def operator_config(installed: None) -> Path:
    return operator_kubeconfig()


def test_apply_k_creates_every_object(installed: None) -> None:
    got = kubectl("get", "-k", str(BASE), "-o", "name")
    assert got.returncode == 0, got.stderr
    names = set(got.stdout.split())
    for want in (
        "customresourcedefinition.apiextensions.k8s.io/rollouts.changeover.dev",
        f"namespace/{NAMESPACE}",
        "serviceaccount/changeover-operator",
        "clusterrole.rbac.authorization.k8s.io/changeover-operator",
        "clusterrolebinding.rbac.authorization.k8s.io/changeover-operator",
        "deployment.apps/changeover-operator",
        "service/changeover-operator-metrics",
    ):
        assert want in names
    dry = kubectl("apply", "-k", str(BASE), "--dry-run=server")
    assert dry.returncode == 0, dry.stderr


async def _client(path: Path) -> kube.KubeClient:
    return await kube.KubeClient.connect(kubeconfig_path=str(path))


async def test_service_account_is_held_to_its_cluster_role(operator_config: Path) -> None:
    client = await _client(operator_config)
    try:
        await client.list(kube.ROLLOUTS, namespace="default")  # granted
        with pytest.raises(errors.PermanentBackendError, match="forbidden"):
            await client.list(kube.SECRETS, namespace="default")  # get only, not list
        with pytest.raises(errors.PermanentBackendError, match="forbidden"):
            await client.delete(kube.NAMESPACES, "default")
    finally:
        await client.close()


async def _canary_end_state(k: Kube, name: str) -> tuple[dict[str, object], object]:
    await k.apply_rollout(rollout(name, replicas=2, strategy=STEPS))
    await healthy_on(k, name, 1, within=90)
    await k.set_image(name, "app:v2")
    status = await healthy_on(k, name, 2, within=90)
    counts = await eventually(
        lambda: k.rs_counts(name), lambda c: c.get(1, (0, 0))[0] == 0, within=60, what="rev 1 0"
    )
    return {"weights": status["weightsText"], "step": status.get("currentStepIndex")}, counts


async def test_operator_reconciles_under_its_rbac(kube_: Kube, operator_config: Path) -> None:
    async with helper_operator(kube_) as op:  # as the ServiceAccount (conftest)
        state, counts = await _canary_end_state(kube_, "web")
    assert op.stats.errors == 0
    assert state["weights"] == "2:100"
    assert counts[2] == (2, 2)


def test_image_configuration(image: image_rootfs.Image) -> None:
    cfg = image.config["config"]
    assert cfg["Entrypoint"] == ["/usr/local/bin/changeover"]
    assert image.user == "10001:10001"
    labels = cfg["Labels"]
    assert labels["org.opencontainers.image.version"] == __version__
    assert labels["org.opencontainers.image.revision"] in image.archive.name
    # buildah reads the configuration from its own store, as `make image` left it (or pulls
    # the archive into the store first: a local copy, no registry).
    tag = image.archive.name.removeprefix("changeover-").removesuffix(".oci.tar")
    ref = f"localhost/changeover:{tag}"
    buildah = ["buildah", "--storage-driver", "vfs"]
    inspect = subprocess.run([*buildah, "inspect", "--type", "image", ref], **_TEXT)
    if inspect.returncode != 0:
        pull = subprocess.run([*buildah, "pull", f"oci-archive:{image.archive}"], **_TEXT)
        assert pull.returncode == 0, pull.stderr
        inspect = subprocess.run([*buildah, "inspect", "--type", "image", ref], **_TEXT)
    assert inspect.returncode == 0, inspect.stderr
    seen = json.loads(inspect.stdout)["OCIv1"]["config"]
    assert seen["Entrypoint"] == cfg["Entrypoint"] and seen["User"] == cfg["User"]
    assert seen["Labels"] == labels
    # No compiler, make or pip left inside (Debian's apt stays, as in Debian's own images).
    for tool in ("gcc", "cc", "make", "pip", "pip3"):
        assert not any((image.rootfs / d / tool).exists() for d in ("usr/bin", "usr/local/bin"))


def test_image_runs_as_its_user(image: image_rootfs.Image) -> None:
    out = subprocess.run(
        image.argv("--version"), capture_output=True, text=True, timeout=60, env=image.env()
    )
    assert out.returncode == 0, out.stderr
    assert __version__ in out.stdout
    whoami = subprocess.run(
        [*image.argv()[:3], "/usr/bin/python3", "-c", "import os; print(os.getuid(), os.getgid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert whoami.stdout.split() == ["10001", "10001"]


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> image_rootfs.Image:
    if os.geteuid() != 0:
        pytest.skip("unpacking the image and chroot need root")
    archive = image_rootfs.require_archive()
    return image_rootfs.unpack(archive, tmp_path_factory.mktemp("image"))


async def test_operator_from_the_image_reaches_the_same_end_state(
    kube_: Kube, operator_config: Path, image: image_rootfs.Image, tmp_path: Path
) -> None:
    """The image's entrypoint as the Deployment runs it (as its user, on the host network),
    under the ServiceAccount's RBAC: the same canary ends where the process's did, and its
    /healthz, /readyz and /metrics answer."""
    home = image.rootfs / "home" / "changeover"
    config = home / "kubeconfig"
    shutil.copy(operator_config, config)
    ca = home / "ca.crt"
    shutil.copy(testbed.testbed_dir() / "run" / "pki" / "ca.crt", ca)
    text = config.read_text().replace(str(testbed.testbed_dir() / "run/pki/ca.crt"), str(ca))
    config.write_text(text.replace(str(image.rootfs), ""))
    uid, gid = (int(x) for x in image.user.split(":"))
    for path in (config, ca):
        os.chown(path, uid, gid)
    port = _free_port()
    argv = image.argv(
        "serve",
        "--platform",
        "kubernetes",
        "--kubeconfig",
        "/home/changeover/kubeconfig",
        "--namespace",
        kube_.namespace,
        "--lease-namespace",
        kube_.namespace,
        "--metrics-bind",
        f"127.0.0.1:{port}",
    )
    log = (tmp_path / "operator.log").open("wb")
    proc = _start(argv, log, image.env())
    try:
        await eventually(lambda: _get(port, "/readyz"), lambda r: r[0] == 200, within=60)
        state, counts = await _canary_end_state(kube_, "web")
        status, metrics = await _get(port, "/metrics")
        health = await _get(port, "/healthz")
    finally:
        process_helpers.stop(proc, grace=15)
        log.close()
    assert proc.returncode == 0, (tmp_path / "operator.log").read_text()[-3000:]
    assert state["weights"] == "2:100" and counts[2] == (2, 2)
    assert health[0] == 200 and status == 200
    ident = f'namespace="{kube_.namespace}",rollout="web"'
    assert f'changeover_rollout_phase{{{ident},phase="Healthy"}} 1' in metrics
    assert f'changeover_rollout_weight_percent{{{ident},revision="2"}} 100' in metrics
    assert "changeover_operator_leader 1" in metrics


def _start(argv: list[str], log: Any, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _get(port: int, path: str) -> tuple[int, str]:
    def fetch() -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, ""
        except OSError:
            return 0, ""

    return await asyncio.to_thread(fetch)
