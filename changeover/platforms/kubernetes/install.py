"""``changeover install-crds``: apply the CRDs (and with ``operator``, RBAC and the
Deployment) through the API, then wait until the CRDs are Established."""

from __future__ import annotations

import asyncio
import time

from changeover import errors
from changeover.kube import client as kube
from changeover.platforms.kubernetes import crds, manifests

_RESOURCES = {
    "CustomResourceDefinition": kube.CRDS,
    "Namespace": kube.NAMESPACES,
    "ServiceAccount": kube.Resource("v1", "serviceaccounts", "ServiceAccount"),
    "ClusterRole": kube.Resource(
        "rbac.authorization.k8s.io/v1", "clusterroles", "ClusterRole", False
    ),
    "ClusterRoleBinding": kube.Resource(
        "rbac.authorization.k8s.io/v1", "clusterrolebindings", "ClusterRoleBinding", False
    ),
    "Deployment": kube.Resource("apps/v1", "deployments", "Deployment"),
}


async def install(
    *, kubeconfig: str | None, operator: bool, image: str, namespace: str
) -> list[str]:
    docs = manifests.documents(crds_only=not operator, image=image, namespace=namespace)
    lines = []
    async with await kube.KubeClient.connect(kubeconfig_path=kubeconfig) as client:
        for doc in docs:
            res = _RESOURCES[doc["kind"]]
            ns = doc["metadata"].get("namespace")
            await client.apply_object(res, doc, namespace=ns)
            lines.append(f"{doc['kind'].lower()}/{doc['metadata']['name']} applied")
        deadline = time.monotonic() + 30
        for crd in crds.all_crds():
            name = crd["metadata"]["name"]
            while True:
                got = await client.get(kube.CRDS, name)
                conds = (got.get("status") or {}).get("conditions") or []
                if any(c["type"] == "Established" and c["status"] == "True" for c in conds):
                    lines.append(f"customresourcedefinition/{name} established")
                    break
                if time.monotonic() > deadline:
                    raise errors.TemporaryBackendError(f"{name} is not Established after 30s")
                await asyncio.sleep(0.2)
    return lines
