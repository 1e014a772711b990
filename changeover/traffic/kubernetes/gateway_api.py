"""Gateway API: weights as an HTTPRoute's ``backendRefs`` weights, header (and cookie)
matches as rules of their own, mirrors as a ``RequestMirror`` filter.

Settings under ``spec.traffic.gatewayAPI``: ``{httpRoute: chat-route}`` (in the rollout's
namespace). Every rule that is not one of ours gets the split between the stable and canary
Services (the port is kept from the rule's first backendRef, else ``spec.service.port``).
Our rules go first; their names are recorded in the annotation
``changeover.dev/managed-rules`` (HTTPRoute rules have no names of their own in v1beta1).
A mirror's ``percent`` is Gateway API's ``RequestMirror.percent`` (v1.2); 100 leaves it out.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from changeover import errors
from changeover.kube import client as kube
from changeover.spec import models
from changeover.traffic import base
from changeover.traffic.kubernetes.base import RouterContext, cookie_regex, string_match_regex
from changeover.traffic.kubernetes.router import KubeRouter

NAME = "gateway-api"
CAPABILITIES = base.SHIPPED[NAME].capabilities
MANAGED = "changeover.dev/managed-rules"
JSON = dict[str, Any]


def header_matches(match: Sequence[models.RouteMatch]) -> list[JSON]:
    out = []
    for m in match:
        if m.header_name is not None and m.header_value is not None:
            v = m.header_value
            if v.exact is not None:
                header = {"type": "Exact", "name": m.header_name, "value": v.exact}
            else:
                header = {
                    "type": "RegularExpression",
                    "name": m.header_name,
                    "value": string_match_regex(v),
                }
        elif m.cookie_name is not None and m.cookie_value is not None:
            header = {
                "type": "RegularExpression",
                "name": "Cookie",
                "value": cookie_regex(m.cookie_name, m.cookie_value),
            }
        else:
            continue
        out.append({"headers": [header]})
    return out


class GatewayMesh:
    def __init__(self, ctx: RouterContext) -> None:
        self.ctx = ctx
        self.route_name = str(ctx.setting("httpRoute", required=True))
        self._weight = 0

    def _managed(self, route: JSON) -> list[str]:
        try:
            return list(json.loads((route["metadata"].get("annotations") or {}).get(MANAGED, "[]")))
        except ValueError:
            return []

    def _set_managed(self, route: JSON, managed: list[str]) -> None:
        annotations = route["metadata"].setdefault("annotations", {})
        if managed:
            annotations[MANAGED] = json.dumps(managed)
        else:
            annotations.pop(MANAGED, None)

    def _split_rules(self, route: JSON) -> tuple[list[JSON], list[JSON]]:
        rules = route["spec"].get("rules") or []
        n = len(self._managed(route))
        return rules[:n], rules[n:]

    def _port(self, rules: list[JSON]) -> int:
        for rule in rules:
            for ref in rule.get("backendRefs") or []:
                if isinstance(ref.get("port"), int):
                    return int(ref["port"])
        return self.ctx.port

    def _refs(self, weight: int, port: int) -> list[JSON]:
        return [
            {"name": self.ctx.stable_service, "port": port, "weight": 100 - weight},
            {"name": self.ctx.canary_service, "port": port, "weight": weight},
        ]

    def _mirror_filter(self, percentage: int, port: int) -> JSON:
        mirror: JSON = {"backendRef": {"name": self.ctx.canary_service, "port": port}}
        if percentage < 100:
            mirror["percent"] = percentage
        return {"type": "RequestMirror", "requestMirror": mirror}

    async def _edit(self, change: Callable[[JSON], None]) -> None:
        client, ns = self.ctx.client, self.ctx.namespace
        for _ in range(5):
            route = await client.get(kube.HTTP_ROUTES, self.route_name, namespace=ns)
            before = json.dumps(route, sort_keys=True)
            change(route)
            if json.dumps(route, sort_keys=True) == before:
                return
            try:
                await client.replace(kube.HTTP_ROUTES, route, namespace=ns)
                return
            except kube.Conflict:
                continue
        raise errors.TemporaryBackendError(f"HTTPRoute {self.route_name} kept changing")

    async def set_split(self, canary_weight: int) -> None:
        self._weight = canary_weight

        def change(route: JSON) -> None:
            ours, theirs = self._split_rules(route)
            if not theirs:
                raise errors.PermanentBackendError(f"HTTPRoute {self.route_name} has no rules")
            port = self._port(theirs)
            for rule in theirs:
                rule["backendRefs"] = self._refs(canary_weight, port)
            for rule in ours:
                if any(f.get("type") == "RequestMirror" for f in rule.get("filters") or []):
                    rule["backendRefs"] = self._refs(canary_weight, port)

        await self._edit(change)

    async def set_revisions(self, stable_hash: str | None, canary_hash: str | None) -> None:
        return

    def _replace_ours(self, route: JSON, name: str, rule: JSON | None, *, first: bool) -> None:
        ours, theirs = self._split_rules(route)
        managed = self._managed(route)
        pairs = [(n, r) for n, r in zip(managed, ours, strict=False) if n != name]
        if rule is not None:
            if first:
                pairs.insert(0, (name, rule))
            else:
                pairs.append((name, rule))
        self._set_managed(route, [n for n, _ in pairs])
        route["spec"]["rules"] = [r for _, r in pairs] + theirs

    async def set_header_route(self, name: str, match: Sequence[models.RouteMatch]) -> None:
        def change(route: JSON) -> None:
            port = self._port(self._split_rules(route)[1])
            rule: JSON | None = None
            if match:
                rule = {
                    "matches": header_matches(match),
                    "backendRefs": [{"name": self.ctx.canary_service, "port": port, "weight": 100}],
                }
            self._replace_ours(route, name, rule, first=True)

        await self._edit(change)

    async def set_mirror(
        self, name: str, percentage: int, match: Sequence[models.RouteMatch]
    ) -> None:
        def change(route: JSON) -> None:
            port = self._port(self._split_rules(route)[1])
            if not match:
                self._replace_ours(route, name, None, first=False)
                for theirs in self._split_rules(route)[1]:
                    filters = [
                        f for f in theirs.get("filters") or [] if f.get("type") != "RequestMirror"
                    ]
                    if percentage > 0:
                        filters.append(self._mirror_filter(percentage, port))
                    if filters:
                        theirs["filters"] = filters
                    else:
                        theirs.pop("filters", None)
                return
            rule: JSON | None = None
            if percentage > 0:
                rule = {
                    "matches": header_matches(match),
                    "filters": [self._mirror_filter(percentage, port)],
                    "backendRefs": self._refs(self._weight, port),
                }
            self._replace_ours(route, name, rule, first=False)

        await self._edit(change)

    async def remove_managed_routes(self) -> None:
        def change(route: JSON) -> None:
            _, theirs = self._split_rules(route)
            for rule in theirs:
                filters = [f for f in rule.get("filters") or [] if f.get("type") != "RequestMirror"]
                if filters:
                    rule["filters"] = filters
                else:
                    rule.pop("filters", None)
            self._set_managed(route, [])
            route["spec"]["rules"] = theirs

        await self._edit(change)

    async def verify_split(self, canary_weight: int) -> bool:
        route = await self.ctx.client.get(
            kube.HTTP_ROUTES, self.route_name, namespace=self.ctx.namespace
        )
        for rule in self._split_rules(route)[1]:
            weights = [ref.get("weight", 1) for ref in rule.get("backendRefs") or []]
            if weights != [100 - canary_weight, canary_weight]:
                return False
        return True


def factory(ctx: RouterContext) -> KubeRouter:
    return KubeRouter(ctx, GatewayMesh(ctx), name=NAME, capabilities=CAPABILITIES)
