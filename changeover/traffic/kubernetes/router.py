"""``KubeRouter``: the ``TrafficRouter`` the operator drives on Kubernetes.

It speaks revisions to the engine and Services to the cluster: for every call it works out
which revision is *stable* (the one that had all the traffic: the incumbent) and which is
*canary* (the other one the weights, header routes or mirrors name), points the Services
at their pod-template hashes (``services``), then tells the mesh (if any) the canary's
percentage and routes.

    set_weight({1: 100})            stable→1  canary→1   mesh: canary 0%
    set_weight({1: 80, 2: 20})      stable→1  canary→2   mesh: canary 20%
    set_weight({2: 100})            stable→2  canary→2   mesh: canary 0%   (promoted)

The order keeps every request served: on promotion the stable Service switches to the
new pods before the mesh drops the canary's share (both then reach the new pods).
Without a mesh (``replica-ratio``) the weight is not applied: the Service spreads requests
over the ready pods, so a canary's share is its share of replicas (the engine sizes stable
and canary for the weight, ``engine.strategies.basic_canary``, and reports the ratio of
available replicas as the weights).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from changeover import errors
from changeover.endpoints import Endpoint
from changeover.spec import models
from changeover.traffic.base import Capability
from changeover.traffic.kubernetes.base import Mesh, RouterContext
from changeover.traffic.kubernetes.services import Services


class KubeRouter:
    def __init__(
        self,
        ctx: RouterContext,
        mesh: Mesh | None,
        *,
        name: str,
        capabilities: frozenset[Capability],
    ) -> None:
        self.ctx = ctx
        self.mesh = mesh
        self.name = name
        self.capabilities = capabilities
        self.services = Services(ctx)
        self._weights: dict[int, int] = {}
        self._stable: int | None = None
        self._routes: dict[str, int] = {}
        self._mirrors: dict[str, int] = {}
        self._preview: int | None = None
        self._pointed: tuple[int | None, int | None, int | None] | None = None

    # --- roles -------------------------------------------------------------------------

    async def _incumbent(self, weights: Mapping[int, int]) -> int:
        live = [rev for rev, pct in weights.items() if pct > 0]
        if len(live) == 1:
            return live[0]
        if self._stable is not None and self._stable in weights:
            return self._stable
        # After a restart: the stable Service still selects the incumbent's pods.
        current = None
        if self.ctx.manage_services:
            current = await self.services.current_hash(self.ctx.stable_service)
        if current is not None:
            revision = self.ctx.revision_of_hash(current)
            if revision is not None and revision in weights:
                return revision
        return max(weights, key=lambda rev: (weights[rev], -rev))

    def _canary(self) -> int | None:
        others = [rev for rev, pct in self._weights.items() if pct > 0 and rev != self._stable]
        others += [
            rev for rev in (*self._routes.values(), *self._mirrors.values()) if rev != self._stable
        ]
        return others[0] if others else self._stable

    def _hash(self, revision: int | None) -> str | None:
        if revision is None:
            return None
        pod_hash = self.ctx.hash_of(revision)
        if pod_hash is None:
            raise errors.TemporaryBackendError(
                f"revision {revision} of {self.ctx.name} has no ReplicaSet yet"
            )
        return pod_hash

    async def _point(self) -> None:
        canary = self._canary()
        wanted = (self._stable, canary, self._preview)
        if self._stable is None or wanted == self._pointed:
            return
        stable_hash, canary_hash = self._hash(self._stable), self._hash(canary)
        svc = self.services
        if not self.ctx.manage_services:
            self._pointed = wanted
            return
        await svc.point(self.ctx.stable_service, stable_hash if self.ctx.split else None)
        if self.ctx.with_canary_service:
            await svc.point(self.ctx.canary_service, canary_hash)
        if (
            self.capabilities
            and Capability.PREVIEW in self.capabilities
            and self.ctx.preview_service
        ):
            preview = self._hash(self._preview) if self._preview is not None else stable_hash
            await svc.point(self.ctx.preview_service, preview)
        if self.mesh is not None:
            await self.mesh.set_revisions(stable_hash, canary_hash)
        self._pointed = wanted

    def canary_weight(self) -> int:
        canary = self._canary()
        return self._weights.get(canary, 0) if canary != self._stable and canary is not None else 0

    # --- TrafficRouter -------------------------------------------------------------------

    async def set_weight(self, weights: Mapping[int, int]) -> None:
        weights = {rev: pct for rev, pct in weights.items() if pct > 0}
        if not weights:
            return
        self._stable = await self._incumbent(weights)
        self._weights = dict(weights)
        await self._point()
        if self.mesh is not None:
            await self.mesh.set_split(self.canary_weight())

    async def set_header_route(
        self, name: str, revision: int | None, match: Sequence[models.RouteMatch]
    ) -> None:
        if revision is None or not match:
            self._routes.pop(name, None)
            match = ()
        else:
            self._routes[name] = revision
        await self._point()
        if self.mesh is not None:
            await self.mesh.set_header_route(name, match)

    async def set_sticky_split(
        self, revision: int | None, user_key: models.UserKey | None, weight: int
    ) -> None:
        if revision is not None:
            raise errors.PermanentBackendError(
                f"router {self.name} cannot split users by a hashed key: use match routes"
            )

    async def set_mirror_route(
        self,
        name: str,
        revision: int | None,
        percentage: int,
        match: Sequence[models.RouteMatch],
        compare: models.MirrorCompare | None = None,  # no comparison here (no capability)
    ) -> None:
        if revision is None or percentage <= 0:
            self._mirrors.pop(name, None)
            percentage = 0
        else:
            self._mirrors[name] = revision
        await self._point()
        if self.mesh is not None:
            await self.mesh.set_mirror(name, percentage, match)

    async def set_preview(self, revision: int | None) -> None:
        self._preview = revision
        await self._point()

    async def set_maintenance(self, enabled: bool, retry_after_seconds: int) -> None:
        # No maintenance page on Kubernetes: while nothing runs the Service has no
        # endpoints and the ingress or mesh in front answers 503 itself.
        return

    async def remove_managed_routes(self) -> None:
        self._routes.clear()
        self._mirrors.clear()
        if self.mesh is not None:
            await self.mesh.remove_managed_routes()
        await self._point()

    async def verify_weight(self, weights: Mapping[int, int]) -> bool:
        if self.mesh is None:
            return True
        canary = [rev for rev in weights if rev != self._stable and weights[rev] > 0]
        return await self.mesh.verify_split(weights[canary[0]] if canary else 0)

    async def set_backends(self, revision: int, endpoints: Sequence[Endpoint]) -> None:
        return  # Services find pods by label; no endpoints are handed over

    async def drain(self, endpoint: Endpoint, grace_seconds: float) -> int:
        return 0  # the kubelet drains pods (terminationGracePeriodSeconds)

    async def close(self) -> None:
        return
