"""The Services of a rollout on Kubernetes, and which revision each one selects.

- *stable* (``spec.service.name``, default the rollout's name): the stable revision's
  pods (selector ``rollouts-pod-template-hash: <hash>``); for recreate and rolling
  updates without a mesh it selects every pod of the rollout instead, so traffic follows
  the available replicas. Blue-green's *active* Service is this one (``activeService``).
- *canary* (``spec.service.canaryName``, default ``<name>-canary``): the revision in
  flight, or stable's pods when none is, so it is never empty.
- *preview* (blue-green ``previewService``, default ``<name>-preview``): the preview
  revision, or the active one when there is none.

A Service that does not exist is created (owned by the Rollout); one the user created is
adopted: only its selector is changed, as Argo Rollouts does. Called by ``router``.
"""

from __future__ import annotations

from typing import Any

from changeover import errors
from changeover.platforms.kubernetes import client as kube
from changeover.platforms.kubernetes import names
from changeover.traffic.kubernetes.base import RouterContext

JSON = dict[str, Any]


class Services:
    def __init__(self, ctx: RouterContext) -> None:
        self.ctx = ctx
        self._selectors: dict[str, dict[str, str]] = {}

    def selector(self, pod_hash: str | None) -> dict[str, str]:
        out = {names.ROLLOUT_LABEL: self.ctx.name}
        if pod_hash is not None:
            out[names.HASH_LABEL] = pod_hash
        return out

    async def current_hash(self, service: str) -> str | None:
        """The hash a Service selects now (from the API), or None."""
        obj = await self.ctx.client.get_or_none(
            kube.SERVICES, service, namespace=self.ctx.namespace
        )
        if obj is None:
            return None
        selector = (obj.get("spec") or {}).get("selector") or {}
        self._selectors[service] = dict(selector)
        value = selector.get(names.HASH_LABEL)
        return str(value) if value is not None else None

    async def point(self, service: str, pod_hash: str | None) -> None:
        """Make ``service`` select ``pod_hash``'s pods (every pod of the rollout for None)."""
        wanted = self.selector(pod_hash)
        known = self._selectors.get(service)
        if known == wanted:
            return
        client, ns = self.ctx.client, self.ctx.namespace
        if known is not None:
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
        else:
            current = dict((existing.get("spec") or {}).get("selector") or {})
            if current != wanted:
                await self._patch(service, current, wanted)
        self._selectors[service] = wanted

    async def _patch(self, service: str, current: dict[str, str], wanted: dict[str, str]) -> None:
        patch: dict[str, str | None] = {k: None for k in current if k not in wanted}
        patch.update(wanted)
        await self.ctx.client.patch(
            kube.SERVICES, service, {"spec": {"selector": patch}}, namespace=self.ctx.namespace
        )
