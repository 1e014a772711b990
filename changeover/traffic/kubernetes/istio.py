"""Istio: weights, header and cookie routes and mirrors in a VirtualService; optionally a
DestinationRule's stable/canary subsets (Argo Rollouts' ``trafficRouting.istio``).

Settings under ``spec.traffic.istio``::

    virtualService: {name: chat-vs, routes: [primary]}   # routes: default every unnamed-by-us route
    destinationRule: {name: chat-dr, stableSubsetName: stable, canarySubsetName: canary}

Without a DestinationRule the split is between the stable and canary *Services* (two
hosts); with one it is between two *subsets* of the stable Service's host, whose labels
the router keeps on the revisions' pod-template hashes. Header routes and match-mirrors are
HTTP routes the router inserts first in ``spec.http`` and names after the step; their names
are kept in the annotation ``changeover.dev/managed-routes`` so they are removed exactly.
A mirror without a match (shadow) goes on the weighted routes themselves, as Istio's
``mirror`` + ``mirrorPercentage``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from changeover import errors
from changeover.kube import client as kube
from changeover.spec import models
from changeover.traffic import base
from changeover.traffic.kubernetes.base import RouterContext, cookie_regex
from changeover.traffic.kubernetes.router import KubeRouter

NAME = "istio"
CAPABILITIES = base.SHIPPED[NAME].capabilities
MANAGED = "changeover.dev/managed-routes"
JSON = dict[str, Any]


def _string_match(value: models.StringMatch) -> JSON:
    if value.exact is not None:
        return {"exact": value.exact}
    if value.prefix is not None:
        return {"prefix": value.prefix}
    return {"regex": value.regex}


def http_matches(match: Sequence[models.RouteMatch]) -> list[JSON]:
    """RouteMatches as Istio HTTPMatchRequests (any of them matches)."""
    out = []
    for m in match:
        if m.header_name is not None and m.header_value is not None:
            out.append({"headers": {m.header_name.lower(): _string_match(m.header_value)}})
        elif m.cookie_name is not None and m.cookie_value is not None:
            regex = cookie_regex(m.cookie_name, m.cookie_value)
            out.append({"headers": {"cookie": {"regex": regex}}})
    return out


class IstioMesh:
    def __init__(self, ctx: RouterContext) -> None:
        self.ctx = ctx
        vs = ctx.setting("virtualService", required=True)
        self.vs_name = str(vs["name"] if isinstance(vs, dict) else vs)
        self.routes: list[str] = list(vs.get("routes") or []) if isinstance(vs, dict) else []
        dr = ctx.setting("destinationRule")
        self.dr: JSON | None = dict(dr) if isinstance(dr, dict) else None
        self._weight = 0

    # --- destinations --------------------------------------------------------------

    def _dest(self, canary: bool) -> JSON:
        if self.dr is not None:
            subset = self.dr.get("canarySubsetName" if canary else "stableSubsetName")
            return {
                "host": self.ctx.stable_service,
                "subset": subset or ("canary" if canary else "stable"),
            }
        return {"host": self.ctx.canary_service if canary else self.ctx.stable_service}

    def _split(self, weight: int) -> list[JSON]:
        return [
            {"destination": self._dest(False), "weight": 100 - weight},
            {"destination": self._dest(True), "weight": weight},
        ]

    async def _edit(self, change: Any) -> None:
        client, ns = self.ctx.client, self.ctx.namespace
        for _ in range(5):
            vs = await client.get(kube.VIRTUAL_SERVICES, self.vs_name, namespace=ns)
            before = json.dumps(vs, sort_keys=True)
            change(vs)
            if json.dumps(vs, sort_keys=True) == before:
                return
            try:
                await client.replace(kube.VIRTUAL_SERVICES, vs, namespace=ns)
                return
            except kube.Conflict:
                continue
        raise errors.TemporaryBackendError(f"VirtualService {self.vs_name} kept changing")

    def _managed(self, vs: JSON) -> list[str]:
        raw = (vs["metadata"].get("annotations") or {}).get(MANAGED, "[]")
        try:
            return list(json.loads(raw))
        except ValueError:
            return []

    def _set_managed(self, vs: JSON, managed: list[str]) -> None:
        annotations = vs["metadata"].setdefault("annotations", {})
        if managed:
            annotations[MANAGED] = json.dumps(managed)
        else:
            annotations.pop(MANAGED, None)

    def _primary(self, vs: JSON) -> list[JSON]:
        managed = set(self._managed(vs))
        http = vs["spec"].get("http") or []
        if self.routes:
            return [r for r in http if r.get("name") in self.routes]
        return [r for r in http if r.get("name") not in managed]

    # --- Mesh --------------------------------------------------------------------------

    async def set_split(self, canary_weight: int) -> None:
        self._weight = canary_weight

        def change(vs: JSON) -> None:
            primary = self._primary(vs)
            if not primary:
                raise errors.PermanentBackendError(
                    f"VirtualService {self.vs_name} has no HTTP route "
                    f"{'named ' + ', '.join(self.routes) if self.routes else ''} to split"
                )
            for route in primary:
                route["route"] = self._split(canary_weight)
            managed = set(self._managed(vs))
            for route in vs["spec"].get("http") or []:
                if route.get("name") in managed and "mirror" in route:
                    route["route"] = self._split(canary_weight)

        await self._edit(change)

    async def set_revisions(self, stable_hash: str | None, canary_hash: str | None) -> None:
        if self.dr is None or stable_hash is None:
            return
        from changeover.kube import names

        client, ns = self.ctx.client, self.ctx.namespace
        stable_name = self.dr.get("stableSubsetName") or "stable"
        canary_name = self.dr.get("canarySubsetName") or "canary"
        hashes = {stable_name: stable_hash, canary_name: canary_hash or stable_hash}
        for _ in range(5):
            dr = await client.get(kube.DESTINATION_RULES, str(self.dr["name"]), namespace=ns)
            subsets = dr["spec"].setdefault("subsets", [])
            changed = False
            for subset_name, pod_hash in hashes.items():
                subset = next((s for s in subsets if s.get("name") == subset_name), None)
                if subset is None:
                    subset = {"name": subset_name}
                    subsets.append(subset)
                labels = subset.setdefault("labels", {})
                if labels.get(names.HASH_LABEL) != pod_hash:
                    labels[names.HASH_LABEL] = pod_hash
                    changed = True
            if not changed:
                return
            try:
                await client.replace(kube.DESTINATION_RULES, dr, namespace=ns)
                return
            except kube.Conflict:
                continue

    async def set_header_route(self, name: str, match: Sequence[models.RouteMatch]) -> None:
        def change(vs: JSON) -> None:
            http = [r for r in vs["spec"].get("http") or [] if r.get("name") != name]
            managed = [n for n in self._managed(vs) if n != name]
            if match:
                route = {
                    "name": name,
                    "match": http_matches(match),
                    "route": [{"destination": self._dest(True), "weight": 100}],
                }
                http.insert(0, route)
                managed.append(name)
            vs["spec"]["http"] = http
            self._set_managed(vs, managed)

        await self._edit(change)

    async def set_mirror(
        self, name: str, percentage: int, match: Sequence[models.RouteMatch]
    ) -> None:
        def change(vs: JSON) -> None:
            http = [r for r in vs["spec"].get("http") or [] if r.get("name") != name]
            managed = [n for n in self._managed(vs) if n != name]
            vs["spec"]["http"] = http
            self._set_managed(vs, managed)
            primary = self._primary(vs)
            if not match:
                for route in primary:
                    if percentage > 0:
                        route["mirror"] = self._dest(True)
                        route["mirrorPercentage"] = {"value": float(percentage)}
                    else:
                        route.pop("mirror", None)
                        route.pop("mirrorPercentage", None)
                return
            if percentage > 0:
                route = {
                    "name": name,
                    "match": http_matches(match),
                    "route": self._split(self._weight),
                    "mirror": self._dest(True),
                    "mirrorPercentage": {"value": float(percentage)},
                }
                # After the header routes (which send their matches to canary outright).
                at = sum(1 for r in http if r.get("name") in managed)
                http.insert(at, route)
                managed.append(name)
                self._set_managed(vs, managed)

        await self._edit(change)

    async def remove_managed_routes(self) -> None:
        def change(vs: JSON) -> None:
            managed = set(self._managed(vs))
            vs["spec"]["http"] = [
                r for r in vs["spec"].get("http") or [] if r.get("name") not in managed
            ]
            for route in vs["spec"]["http"]:
                route.pop("mirror", None)
                route.pop("mirrorPercentage", None)
            self._set_managed(vs, [])

        await self._edit(change)

    async def verify_split(self, canary_weight: int) -> bool:
        vs = await self.ctx.client.get(
            kube.VIRTUAL_SERVICES, self.vs_name, namespace=self.ctx.namespace
        )
        for route in self._primary(vs):
            weights = [d.get("weight", 0) for d in route.get("route") or []]
            if weights != [100 - canary_weight, canary_weight]:
                return False
        return True


def factory(ctx: RouterContext) -> KubeRouter:
    return KubeRouter(ctx, IstioMesh(ctx), name=NAME, capabilities=CAPABILITIES)
