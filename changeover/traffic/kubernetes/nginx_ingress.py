"""NGINX Ingress: a canary Ingress beside the stable one, steered by ingress-nginx's
canary annotations (Argo Rollouts' ``trafficRouting.nginx``).

Settings under ``spec.traffic.nginx``: ``{stableIngress: chat}``. The router keeps an
Ingress ``<stableIngress>-canary`` (owned by the Rollout) with the stable Ingress's rules,
every backend that named the stable Service renamed to the canary Service, the stable
Ingress's class (``spec.ingressClassName``, and of its annotations only
``kubernetes.io/ingress.class``, as Argo Rollouts copies), and:

    nginx.ingress.kubernetes.io/canary: "true"
    nginx.ingress.kubernetes.io/canary-weight: "20"
    nginx.ingress.kubernetes.io/canary-by-header: x-variant          # header routes
    nginx.ingress.kubernetes.io/canary-by-header-value: b            #   exact
    nginx.ingress.kubernetes.io/canary-by-header-pattern: ^b.*       #   prefix / regex
    nginx.ingress.kubernetes.io/canary-by-cookie: variant            # cookie routes

ingress-nginx supports one header and one cookie per canary Ingress, and a cookie route
sends requests whose cookie is ``always``: a match that cannot be said this way is refused
with a message rather than approximated. No mirrors.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from changeover import errors
from changeover.kube import client as kube
from changeover.kube import names
from changeover.spec import models
from changeover.traffic import base
from changeover.traffic.kubernetes.base import RouterContext, string_match_regex
from changeover.traffic.kubernetes.router import KubeRouter

NAME = "nginx"
CAPABILITIES = base.SHIPPED[NAME].capabilities
PREFIX = "nginx.ingress.kubernetes.io/"
JSON = dict[str, Any]


def route_annotations(match: Sequence[models.RouteMatch]) -> dict[str, str]:
    """The canary-by-* annotations for one header route.

    >>> match = models.RouteMatch(header_name="x-b", header_value={"exact": "1"})
    >>> sorted(k.removeprefix(PREFIX) for k in route_annotations([match]))
    ['canary-by-header', 'canary-by-header-value']
    """
    out: dict[str, str] = {}
    for m in match:
        if m.header_name is not None and m.header_value is not None:
            if f"{PREFIX}canary-by-header" in out:
                raise errors.PermanentBackendError("ingress-nginx routes by one header only")
            out[f"{PREFIX}canary-by-header"] = m.header_name
            if m.header_value.exact is not None:
                out[f"{PREFIX}canary-by-header-value"] = m.header_value.exact
            else:
                out[f"{PREFIX}canary-by-header-pattern"] = string_match_regex(m.header_value)
        elif m.cookie_name is not None and m.cookie_value is not None:
            if m.cookie_value.exact != "always":
                raise errors.PermanentBackendError(
                    "ingress-nginx routes by cookie only when its value is 'always' "
                    f"(cookieValue: {{exact: always}}), not {m.cookie_value.to_json_dict()}"
                )
            out[f"{PREFIX}canary-by-cookie"] = m.cookie_name
    return out


# The one annotation of the stable Ingress the canary Ingress needs (as Argo Rollouts
# copies it): without it a controller that selects Ingresses by class ignores the canary.
CLASS_ANNOTATION = "kubernetes.io/ingress.class"


def canary_annotations(stable: dict[str, str]) -> dict[str, str]:
    """What the canary Ingress takes from the stable one's annotations: the ingress class
    only. Everything else (last-applied-configuration, cert-manager's, rewrite rules) stays
    with the stable Ingress, as Argo Rollouts does; the canary-* ones are set afresh.

    >>> canary_annotations({CLASS_ANNOTATION: "nginx", "cert-manager.io/cluster-issuer": "le"})
    {'kubernetes.io/ingress.class': 'nginx'}
    """
    return {k: v for k, v in stable.items() if k == CLASS_ANNOTATION}


class NginxMesh:
    def __init__(self, ctx: RouterContext) -> None:
        self.ctx = ctx
        self.stable_ingress = str(ctx.setting("stableIngress", required=True))
        self.canary_ingress = f"{self.stable_ingress}-canary"
        self._weight = 0
        self._routes: dict[str, dict[str, str]] = {}

    def _rename(self, spec: JSON) -> JSON:
        spec = copy.deepcopy(spec)
        for rule in spec.get("rules") or []:
            for path in (rule.get("http") or {}).get("paths") or []:
                svc = (path.get("backend") or {}).get("service") or {}
                if svc.get("name") == self.ctx.stable_service:
                    svc["name"] = self.ctx.canary_service
        default = (spec.get("defaultBackend") or {}).get("service")
        if default and default.get("name") == self.ctx.stable_service:
            default["name"] = self.ctx.canary_service
        return spec

    async def _sync(self) -> None:
        client, ns = self.ctx.client, self.ctx.namespace
        stable = await client.get(kube.INGRESSES, self.stable_ingress, namespace=ns)
        annotations = canary_annotations(stable["metadata"].get("annotations") or {})
        annotations[f"{PREFIX}canary"] = "true"
        annotations[f"{PREFIX}canary-weight"] = str(self._weight)
        for route in self._routes.values():
            annotations.update(route)
        body: JSON = {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {
                "name": self.canary_ingress,
                "namespace": ns,
                "annotations": annotations,
                "labels": {names.ROLLOUT_LABEL: self.ctx.name},
                "ownerReferences": [names.owner_reference(self.ctx.rollout)],
            },
            "spec": self._rename(stable.get("spec") or {}),
        }
        existing = await client.get_or_none(kube.INGRESSES, self.canary_ingress, namespace=ns)
        if existing is None:
            await client.create(kube.INGRESSES, body, namespace=ns)
            return
        if (
            existing["metadata"].get("annotations") == annotations
            and existing.get("spec") == body["spec"]
        ):
            return
        body["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
        await client.replace(kube.INGRESSES, body, namespace=ns)

    async def set_split(self, canary_weight: int) -> None:
        self._weight = canary_weight
        await self._sync()

    async def set_revisions(self, stable_hash: str | None, canary_hash: str | None) -> None:
        return

    async def set_header_route(self, name: str, match: Sequence[models.RouteMatch]) -> None:
        if match:
            self._routes[name] = route_annotations(match)
        else:
            self._routes.pop(name, None)
        await self._sync()

    async def set_mirror(
        self, name: str, percentage: int, match: Sequence[models.RouteMatch]
    ) -> None:
        if percentage > 0:
            raise errors.PermanentBackendError("ingress-nginx canary Ingresses cannot mirror")

    async def remove_managed_routes(self) -> None:
        self._routes.clear()
        await self._sync()

    async def verify_split(self, canary_weight: int) -> bool:
        ing = await self.ctx.client.get_or_none(
            kube.INGRESSES, self.canary_ingress, namespace=self.ctx.namespace
        )
        annotations = (ing or {}).get("metadata", {}).get("annotations") or {}
        return annotations.get(f"{PREFIX}canary-weight") == str(canary_weight)


def factory(ctx: RouterContext) -> KubeRouter:
    return KubeRouter(ctx, NginxMesh(ctx), name=NAME, capabilities=CAPABILITIES)
