"""The Services of a rollout on Kubernetes, and which revision each one selects.

- *stable* (``spec.service.name``, default the rollout's name): the stable revision's
  pods (selector ``rollouts-pod-template-hash: <hash>``); for recreate and rolling
  updates without a mesh it selects every pod of the rollout instead, so traffic follows
  the available replicas. Blue-green's *active* Service is this one (``activeService``).
- *canary* (``spec.service.canaryName``, default ``<name>-canary``): the revision in
  flight, or stable's pods when none is, so it is never empty.
- *preview* (blue-green ``previewService``, default ``<name>-preview``): the preview
  revision, or the active one when there is none.

A Service that does not exist is created (owned by the Rollout; its selector is ours). One
the user created is adopted as Argo Rollouts adopts it: its selector keeps every key the
user wrote and only ``rollouts-pod-template-hash`` is added (or removed, to select every
pod the user's selector finds); it is labelled ``changeover.dev/managed-by: <rollout>`` and
``release`` takes both away again when the Rollout is deleted, so the user's Service never
selects a ReplicaSet that is gone. Called by ``router`` (and ``release`` by the operator).
"""

from __future__ import annotations

from typing import Any

from changeover import errors
from changeover.kube import client as kube
from changeover.kube import names
from changeover.traffic.kubernetes.base import RouterContext

JSON = dict[str, Any]
# On a Service the user created and a Rollout adopted: which Rollout adds its hash key.
MANAGED_BY_LABEL = "changeover.dev/managed-by"


def adopted_selector(current: dict[str, str], pod_hash: str | None) -> dict[str, str]:
    """An adopted Service's selector: the user's keys, plus the hash key when selecting one
    revision.

    >>> adopted_selector({"app": "demo"}, "5d8f7c9b6x")
    {'app': 'demo', 'rollouts-pod-template-hash': '5d8f7c9b6x'}
    >>> adopted_selector({"app": "demo", "rollouts-pod-template-hash": "x"}, None)
    {'app': 'demo'}
    """
    out = {k: v for k, v in current.items() if k != names.HASH_LABEL}
    if pod_hash is not None:
        out[names.HASH_LABEL] = pod_hash
    return out


async def release(client: kube.KubeClient, namespace: str, rollout: str) -> None:
    """The Rollout is gone: every Service it adopted loses the hash key (and our label), so
    it selects what the user's own selector selects, as before the adoption."""
    found = await client.list(
        kube.SERVICES, namespace=namespace, label_selector=f"{MANAGED_BY_LABEL}={rollout}"
    )
    for svc in found.get("items") or []:
        patch = {
            "metadata": {"labels": {MANAGED_BY_LABEL: None}},
            "spec": {"selector": {names.HASH_LABEL: None}},
        }
        try:
            await client.patch(kube.SERVICES, svc["metadata"]["name"], patch, namespace=namespace)
        except errors.NotFound:
            continue


class Services:
    def __init__(self, ctx: RouterContext) -> None:
        self.ctx = ctx
        self._selectors: dict[str, dict[str, str]] = {}
        self._adopted: dict[str, bool] = {}

    def selector(self, pod_hash: str | None) -> dict[str, str]:
        """The selector of a Service the Rollout created."""
        out = {names.ROLLOUT_LABEL: self.ctx.name}
        if pod_hash is not None:
            out[names.HASH_LABEL] = pod_hash
        return out

    def _wanted(
        self, service: str, current: dict[str, str], pod_hash: str | None
    ) -> dict[str, str]:
        if self._adopted.get(service):
            return adopted_selector(current, pod_hash)
        return self.selector(pod_hash)

    def _remember(self, service: str, obj: JSON) -> dict[str, str]:
        """Note what ``obj`` selects and whether the user made it; its selector."""
        selector = dict((obj.get("spec") or {}).get("selector") or {})
        self._adopted[service] = not names.owned_by(obj, str(self.ctx.rollout["metadata"]["uid"]))
        self._selectors[service] = selector
        return selector

    async def current_hash(self, service: str) -> str | None:
        """The hash a Service selects now (from the API), or None."""
        obj = await self.ctx.client.get_or_none(
            kube.SERVICES, service, namespace=self.ctx.namespace
        )
        if obj is None:
            return None
        value = self._remember(service, obj).get(names.HASH_LABEL)
        return str(value) if value is not None else None

    async def point(self, service: str, pod_hash: str | None) -> None:
        """Make ``service`` select ``pod_hash``'s pods (every pod of the rollout for None)."""
        known = self._selectors.get(service)
        client, ns = self.ctx.client, self.ctx.namespace
        if known is not None:
            wanted = self._wanted(service, known, pod_hash)
            if known == wanted:
                return
            # We know what it selects (we set it or read it): no GET before the PATCH, one
            # request fewer per new revision (1,000 of them when 1,000 rollouts change).
            try:
                await self._patch(service, known, wanted)
                self._selectors[service] = wanted
                return
            except errors.NotFound:
                self._selectors.pop(service, None)
        existing = await client.get_or_none(kube.SERVICES, service, namespace=ns)
        if existing is None:
            wanted = self.selector(pod_hash)
            body: JSON = {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {
                    "name": service,
                    "namespace": ns,
                    "labels": {names.ROLLOUT_LABEL: self.ctx.name},
                    "ownerReferences": [names.owner_reference(self.ctx.rollout)],
                },
                "spec": {
                    "selector": wanted,
                    "ports": [
                        {
                            "name": "http",
                            "port": self.ctx.port,
                            "targetPort": self.ctx.target_port,
                            "protocol": "TCP",
                        }
                    ],
                },
            }
            try:
                await client.create(kube.SERVICES, body, namespace=ns)
            except kube.Conflict:
                self._selectors.pop(service, None)
                raise errors.TemporaryBackendError(f"Service {service} appeared: retry") from None
            self._adopted[service] = False
        else:
            current = self._remember(service, existing)
            wanted = self._wanted(service, current, pod_hash)
            labels = existing["metadata"].get("labels") or {}
            unlabelled = self._adopted[service] and labels.get(MANAGED_BY_LABEL) != self.ctx.name
            if current != wanted or unlabelled:
                await self._patch(service, current, wanted)
        self._selectors[service] = wanted

    async def _patch(self, service: str, current: dict[str, str], wanted: dict[str, str]) -> None:
        selector: dict[str, str | None] = {k: None for k in current if k not in wanted}
        selector.update({k: v for k, v in wanted.items() if current.get(k) != v})
        patch: JSON = {"spec": {"selector": selector}}
        if self._adopted.get(service):
            patch["metadata"] = {"labels": {MANAGED_BY_LABEL: self.ctx.name}}
        await self.ctx.client.patch(kube.SERVICES, service, patch, namespace=self.ctx.namespace)
