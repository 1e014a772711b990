"""SMI: a ``TrafficSplit`` (split.smi-spec.io/v1alpha2) between the stable and canary
Services behind a root Service (Argo Rollouts' ``trafficRouting.smi``).

Settings under ``spec.traffic.smi``: ``{rootService: chat, trafficSplitName: chat}``, both
defaulting to the stable Service's name. The TrafficSplit is created when absent (owned by
the Rollout). SMI has weights only: no header routes, no mirrors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from changeover import errors
from changeover.kube import client as kube
from changeover.kube import names
from changeover.spec import models
from changeover.traffic import base
from changeover.traffic.kubernetes.base import RouterContext
from changeover.traffic.kubernetes.router import KubeRouter

NAME = "smi"
CAPABILITIES = base.SHIPPED[NAME].capabilities
JSON = dict[str, Any]


class SmiMesh:
    def __init__(self, ctx: RouterContext) -> None:
        self.ctx = ctx
        self.root = str(ctx.setting("rootService") or ctx.stable_service)
        self.split_name = str(ctx.setting("trafficSplitName") or ctx.stable_service)

    def _spec(self, weight: int) -> JSON:
        return {
            "service": self.root,
            "backends": [
                {"service": self.ctx.stable_service, "weight": 100 - weight},
                {"service": self.ctx.canary_service, "weight": weight},
            ],
        }

    async def set_split(self, canary_weight: int) -> None:
        client, ns = self.ctx.client, self.ctx.namespace
        existing = await client.get_or_none(kube.TRAFFIC_SPLITS, self.split_name, namespace=ns)
        spec = self._spec(canary_weight)
        if existing is None:
            body = {
                "apiVersion": kube.TRAFFIC_SPLITS.api_version,
                "kind": "TrafficSplit",
                "metadata": {
                    "name": self.split_name,
                    "namespace": ns,
                    "ownerReferences": [names.owner_reference(self.ctx.rollout)],
                },
                "spec": spec,
            }
            try:
                await client.create(kube.TRAFFIC_SPLITS, body, namespace=ns)
            except kube.Conflict:
                raise errors.TemporaryBackendError("TrafficSplit appeared: retry") from None
            return
        if existing.get("spec") != spec:
            await client.patch(kube.TRAFFIC_SPLITS, self.split_name, {"spec": spec}, namespace=ns)

    async def set_revisions(self, stable_hash: str | None, canary_hash: str | None) -> None:
        return

    async def set_header_route(self, name: str, match: Sequence[models.RouteMatch]) -> None:
        if match:
            raise errors.PermanentBackendError("SMI TrafficSplit cannot route by header")

    async def set_mirror(
        self, name: str, percentage: int, match: Sequence[models.RouteMatch]
    ) -> None:
        if percentage > 0:
            raise errors.PermanentBackendError("SMI TrafficSplit cannot mirror")

    async def remove_managed_routes(self) -> None:
        return

    async def verify_split(self, canary_weight: int) -> bool:
        split = await self.ctx.client.get_or_none(
            kube.TRAFFIC_SPLITS, self.split_name, namespace=self.ctx.namespace
        )
        return split is not None and split.get("spec") == self._spec(canary_weight)


def factory(ctx: RouterContext) -> KubeRouter:
    return KubeRouter(ctx, SmiMesh(ctx), name=NAME, capabilities=CAPABILITIES)
