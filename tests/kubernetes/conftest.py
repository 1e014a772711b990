"""Fixtures for tests against a real kube-apiserver (the shared k8s testbed).

``cluster`` (session): the testbed built and running, the CRDs (ours and the third-party
ones the routers need) installed, and the operator's ServiceAccount, ClusterRole and binding
from the install manifests. Every operator the tests start (``helper_operator``,
``operator_kubeconfig()``) works as that ServiceAccount through a second API server that
enforces RBAC (``k8s_rbac``), so a verb missing from the ClusterRole fails the tests.
``kube`` (per test): a client and a fresh namespace, deleted afterwards. ``operator``: an
``Operator`` watching that namespace, in the test's event loop. Nothing here sends traffic
to pod or Service IPs: the tests read objects.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import k8s_testbed as testbed
import k8s_thirdparty as thirdparty
import pytest
from k8s_helpers import Kube
from k8s_rbac import RbacServer, rbac_apiserver

from changeover.kube import client as kube
from changeover.operator.runtime import Operator
from changeover.platforms.kubernetes import crds, manifests


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "kubernetes: tests against the k8s testbed's API server")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/kubernetes" in str(item.fspath):
            item.add_marker(pytest.mark.kubernetes)
            item.add_marker(pytest.mark.slow)


async def _install_crds() -> None:
    async with await kube.KubeClient.connect(kubeconfig_path=testbed.kubeconfig()) as client:
        for crd in [*crds.all_crds(), *thirdparty.crds()]:
            # Test runs in other worktrees share the test bed and may install them too.
            for attempt in range(5):
                try:
                    await client.apply_object(kube.CRDS, crd)
                    break
                except kube.Conflict:
                    if attempt == 4:
                        raise
                    await asyncio.sleep(0.2)
        names = [crd["metadata"]["name"] for crd in [*crds.all_crds(), *thirdparty.crds()]]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            pending = []
            for name in names:
                doc = await client.get(kube.CRDS, name)
                conds = (doc.get("status") or {}).get("conditions") or []
                if not any(c["type"] == "Established" and c["status"] == "True" for c in conds):
                    pending.append(name)
            if not pending:
                break
            await asyncio.sleep(0.2)
        # The default ServiceAccount appears a moment after a namespace; Jobs need it.
        for doc in manifests.operator_documents(namespace=OPERATOR_NAMESPACE):
            if doc["kind"] in _RBAC_KINDS:
                await client.apply_object(
                    _RBAC_KINDS[doc["kind"]], doc, namespace=doc["metadata"].get("namespace")
                )


OPERATOR_NAMESPACE = "changeover-system"
_RBAC_KINDS = {
    "Namespace": kube.NAMESPACES,
    "ServiceAccount": kube.Resource("v1", "serviceaccounts", "ServiceAccount"),
    "ClusterRole": kube.Resource(
        "rbac.authorization.k8s.io/v1", "clusterroles", "ClusterRole", namespaced=False
    ),
    "ClusterRoleBinding": kube.Resource(
        "rbac.authorization.k8s.io/v1", "clusterrolebindings", "ClusterRoleBinding", False
    ),
}
_RBAC: list[RbacServer] = []


def operator_kubeconfig() -> Path:
    """The kubeconfig of the operator's ServiceAccount on the RBAC-enforcing API server."""
    assert _RBAC, "the cluster fixture starts the RBAC API server"
    return _RBAC[0].operator_kubeconfig


def user_kubeconfig() -> Path:
    """The kubeconfig of ``k8s_rbac.USER``, a user with no rights but those a test binds."""
    assert _RBAC, "the cluster fixture starts the RBAC API server"
    return _RBAC[0].user_kubeconfig


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[testbed.Cluster]:
    testbed.ensure_built()
    c = testbed.Cluster()
    c.start()
    try:
        asyncio.run(_install_crds())
        workdir = tmp_path_factory.mktemp("rbac")
        with rbac_apiserver(workdir, operator_namespace=OPERATOR_NAMESPACE) as server:
            _RBAC.append(server)
            yield c
            _RBAC.clear()
    finally:
        c.stop()


@pytest.fixture
async def kube_(cluster: testbed.Cluster) -> AsyncIterator[Kube]:
    client = await kube.KubeClient.connect(kubeconfig_path=testbed.kubeconfig())
    namespace = f"t-{uuid.uuid4().hex[:8]}"
    await client.create(
        kube.NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    )
    helper = Kube(client, namespace)
    try:
        yield helper
    finally:
        with contextlib.suppress(Exception):
            await client.delete(kube.NAMESPACES, namespace)
        await client.close()


@pytest.fixture
async def operator(kube_: Kube) -> AsyncIterator[Operator]:
    async with helper_operator(kube_) as op:
        yield op


@contextlib.asynccontextmanager
async def helper_operator(
    k: Kube, *, identity: str | None = None, wait_ready: bool = True, argo_rollouts: bool = False
) -> AsyncIterator[Operator]:
    """An operator for ``k``'s namespace (its Lease in that namespace), as the operator's
    ServiceAccount under its ClusterRole. The lease is the installed default (15 s, renewal
    given up after 10 s): with 3 s, an apiserver slowed by a loaded machine made the
    in-process operator give up leadership and stop mid-test."""
    client = await kube.KubeClient.connect(kubeconfig_path=operator_kubeconfig())
    op = Operator(
        client,
        namespace=k.namespace,
        identity=identity,
        argo_rollouts=argo_rollouts,
    )
    task = asyncio.create_task(op.run())
    try:
        if wait_ready:
            await asyncio.wait_for(op.ready.wait(), 30)
        yield op
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        await client.close()
