"""Fixtures for tests against a real kube-apiserver (the shared k8s testbed).

``cluster`` (session): the testbed built and running, the CRDs (ours and the third-party
ones the routers need) installed. ``kube`` (per test): a client and a fresh namespace,
deleted afterwards. ``operator``: an ``Operator`` watching that namespace, in the test's
event loop. Nothing here sends traffic to pod or Service IPs: the tests read objects.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import k8s_testbed as testbed
import k8s_thirdparty as thirdparty
import pytest
from k8s_helpers import Kube

from changeover.kube import client as kube
from changeover.operator.runtime import Operator
from changeover.platforms.kubernetes import crds


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


@pytest.fixture(scope="session")
def cluster() -> Iterator[testbed.Cluster]:
    testbed.ensure_built()
    c = testbed.Cluster()
    c.start()
    try:
        asyncio.run(_install_crds())
        yield c
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
    """An operator for ``k``'s namespace (its Lease in that namespace, 3 s long)."""
    client = await kube.KubeClient.connect(kubeconfig_path=testbed.kubeconfig())
    op = Operator(
        client,
        namespace=k.namespace,
        lease_seconds=3.0,
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
