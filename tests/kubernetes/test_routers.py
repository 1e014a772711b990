"""Every Kubernetes router, asserting its objects at every step (Argo Rollouts' e2e way):
Istio VirtualService weights, header routes, mirrors and DestinationRule subsets; Gateway
API HTTPRoute backendRefs, header matches and RequestMirror; NGINX canary Ingress
annotations; SMI TrafficSplit weights. A/B tests and shadows ride on them."""

from __future__ import annotations

from typing import Any

from k8s_helpers import Kube, eventually, healthy_on, phase_is, rollout

from changeover.kube import client as kube
from changeover.operator.runtime import Operator
from changeover.operator.service import KubeService

JSON = dict[str, Any]
STEPS = [
    {"setWeight": 20},
    {"pause": {}},
    {
        "setHeaderRoute": {
            "name": "beta",
            "match": [{"headerName": "x-beta", "headerValue": {"exact": "yes"}}],
        }
    },
    {
        "setMirrorRoute": {
            "name": "copy",
            "percentage": 35,
            "match": [{"headerName": "x-mirror", "headerValue": {"prefix": "on"}}],
        }
    },
    {"pause": {}},
    {"setWeight": 60},
    {"pause": {}},
]


async def _promote(k: Kube, name: str) -> None:
    await KubeService(k.client, namespace=k.namespace).promote(name)


async def _paused_at(k: Kube, name: str, index: int) -> JSON:
    return await eventually(
        lambda: k.status(name),
        lambda s: s.get("phase") == "Paused" and s.get("currentStepIndex") == index,
        what=f"{name} paused at step {index + 1}",
    )


async def test_istio_virtualservice_weights_routes_mirror_and_subsets(
    kube_: Kube, operator: Operator
) -> None:
    k = kube_
    await k.create(
        kube.VIRTUAL_SERVICES,
        {
            "apiVersion": "networking.istio.io/v1beta1",
            "kind": "VirtualService",
            "metadata": {"name": "web-vs"},
            "spec": {
                "hosts": ["web"],
                "http": [
                    {
                        "name": "primary",
                        "route": [
                            {"destination": {"host": "web", "subset": "stable"}, "weight": 100}
                        ],
                    }
                ],
            },
        },
    )
    await k.create(
        kube.DESTINATION_RULES,
        {
            "apiVersion": "networking.istio.io/v1beta1",
            "kind": "DestinationRule",
            "metadata": {"name": "web-dr"},
            "spec": {"host": "web", "subsets": [{"name": "stable"}, {"name": "canary"}]},
        },
    )
    traffic = {
        "istio": {
            "virtualService": {"name": "web-vs", "routes": ["primary"]},
            "destinationRule": {
                "name": "web-dr",
                "stableSubsetName": "stable",
                "canarySubsetName": "canary",
            },
        }
    }
    await k.apply_rollout(rollout("web", strategy={"canary": {"steps": STEPS}}, traffic=traffic))
    await healthy_on(k, "web", 1)

    async def vs() -> JSON:
        return await k.client.get(kube.VIRTUAL_SERVICES, "web-vs", namespace=k.namespace)

    async def subsets() -> dict[str, str]:
        dr = await k.client.get(kube.DESTINATION_RULES, "web-dr", namespace=k.namespace)
        return {s["name"]: s["labels"]["rollouts-pod-template-hash"] for s in dr["spec"]["subsets"]}

    def weights(doc: JSON, route: str = "primary") -> list[int]:
        http = next(r for r in doc["spec"]["http"] if r["name"] == route)
        return [d["weight"] for d in http["route"]]

    assert weights(await vs()) == [100, 0]
    await k.set_image("web", "app:v2")
    await _paused_at(k, "web", 1)
    h1, h2 = await k.hash_of("web", 1), await k.hash_of("web", 2)
    assert weights(await vs()) == [80, 20]
    assert await subsets() == {"stable": h1, "canary": h2}

    await _promote(k, "web")
    await _paused_at(k, "web", 4)
    doc = await vs()
    assert [r["name"] for r in doc["spec"]["http"]] == ["beta", "copy", "primary"]
    assert doc["spec"]["http"][0]["match"] == [{"headers": {"x-beta": {"exact": "yes"}}}]
    assert doc["spec"]["http"][0]["route"] == [
        {"destination": {"host": "web", "subset": "canary"}, "weight": 100}
    ]
    copy = doc["spec"]["http"][1]
    assert copy["mirror"] == {"host": "web", "subset": "canary"}
    assert copy["mirrorPercentage"] == {"value": 35.0}
    assert copy["match"] == [{"headers": {"x-mirror": {"prefix": "on"}}}]

    await _promote(k, "web")
    await _paused_at(k, "web", 6)
    assert weights(await vs()) == [40, 60]
    assert weights(await vs(), "copy") == [40, 60]

    await _promote(k, "web")
    await healthy_on(k, "web", 2)
    doc = await vs()
    assert [r["name"] for r in doc["spec"]["http"]] == ["primary"]
    assert weights(doc) == [100, 0]
    assert await subsets() == {"stable": h2, "canary": h2}
    assert "TrafficRoutesUpdated" in await k.reasons("web")


async def test_istio_shadow_mirrors_on_the_primary_route(kube_: Kube, operator: Operator) -> None:
    k = kube_
    await k.create(
        kube.VIRTUAL_SERVICES,
        {
            "apiVersion": "networking.istio.io/v1beta1",
            "kind": "VirtualService",
            "metadata": {"name": "llm"},
            "spec": {
                "hosts": ["llm"],
                "http": [
                    {"name": "primary", "route": [{"destination": {"host": "llm"}, "weight": 100}]}
                ],
            },
        },
    )
    traffic = {"istio": {"virtualService": {"name": "llm"}}}
    await k.apply_rollout(
        rollout("llm", replicas=2, strategy={"shadow": {"percentage": 10}}, traffic=traffic)
    )
    await healthy_on(k, "llm", 1)
    await k.set_image("llm", "app:v2")
    await phase_is(k, "llm", "Paused")
    doc = await k.client.get(kube.VIRTUAL_SERVICES, "llm", namespace=k.namespace)
    primary = doc["spec"]["http"][0]
    assert primary["mirror"] == {"host": "llm-canary"}
    assert primary["mirrorPercentage"] == {"value": 10.0}
    assert [d["weight"] for d in primary["route"]] == [100, 0]
    assert await k.selects("llm-canary") == await k.hash_of("llm", 2)
    await _promote(k, "llm")
    await healthy_on(k, "llm", 2)
    doc = await k.client.get(kube.VIRTUAL_SERVICES, "llm", namespace=k.namespace)
    assert "mirror" not in doc["spec"]["http"][0]


async def test_gateway_api_httproute(kube_: Kube, operator: Operator) -> None:
    k = kube_
    await k.create(
        kube.HTTP_ROUTES,
        {
            "apiVersion": "gateway.networking.k8s.io/v1beta1",
            "kind": "HTTPRoute",
            "metadata": {"name": "web-route"},
            "spec": {
                "parentRefs": [{"name": "gw"}],
                "rules": [{"backendRefs": [{"name": "web", "port": 80}]}],
            },
        },
    )
    await k.apply_rollout(
        rollout(
            "web",
            strategy={"canary": {"steps": STEPS}},
            traffic={"gatewayAPI": {"httpRoute": "web-route"}},
        )
    )
    await healthy_on(k, "web", 1)

    async def rules() -> list[JSON]:
        doc = await k.client.get(kube.HTTP_ROUTES, "web-route", namespace=k.namespace)
        return list(doc["spec"]["rules"])

    def refs(rule: JSON) -> list[tuple[str, int]]:
        return [(r["name"], r["weight"]) for r in rule["backendRefs"]]

    assert refs((await rules())[-1]) == [("web", 100), ("web-canary", 0)]
    await k.set_image("web", "app:v2")
    await _paused_at(k, "web", 1)
    assert refs((await rules())[-1]) == [("web", 80), ("web-canary", 20)]
    await _promote(k, "web")
    await _paused_at(k, "web", 4)
    beta, copy, main = await rules()
    assert beta["matches"] == [{"headers": [{"type": "Exact", "name": "x-beta", "value": "yes"}]}]
    assert refs(beta) == [("web-canary", 100)]
    assert copy["matches"][0]["headers"][0]["type"] == "RegularExpression"
    assert copy["filters"] == [
        {
            "type": "RequestMirror",
            "requestMirror": {"backendRef": {"name": "web-canary", "port": 80}, "percent": 35},
        }
    ]
    assert refs(main) == [("web", 80), ("web-canary", 20)]
    await _promote(k, "web")
    await _paused_at(k, "web", 6)
    assert refs((await rules())[-1]) == [("web", 40), ("web-canary", 60)]
    await KubeService(k.client, namespace=k.namespace).promote("web", full=True)
    await healthy_on(k, "web", 2)
    assert [refs(r) for r in await rules()] == [[("web", 100), ("web-canary", 0)]]


async def test_gateway_api_ab_test_by_header(kube_: Kube, operator: Operator) -> None:
    k = kube_
    await k.create(
        kube.HTTP_ROUTES,
        {
            "apiVersion": "gateway.networking.k8s.io/v1beta1",
            "kind": "HTTPRoute",
            "metadata": {"name": "ab"},
            "spec": {"rules": [{"backendRefs": [{"name": "chat", "port": 80}]}]},
        },
    )
    strategy = {"abTest": {"match": [{"headerName": "x-variant", "headerValue": {"exact": "b"}}]}}
    await k.apply_rollout(
        rollout("chat", replicas=2, strategy=strategy, traffic={"gatewayAPI": {"httpRoute": "ab"}})
    )
    await healthy_on(k, "chat", 1)
    await k.set_image("chat", "app:v2")
    await phase_is(k, "chat", "Paused")
    doc = await k.client.get(kube.HTTP_ROUTES, "ab", namespace=k.namespace)
    b, a = doc["spec"]["rules"]
    assert b["matches"][0]["headers"] == [{"type": "Exact", "name": "x-variant", "value": "b"}]
    assert b["backendRefs"] == [{"name": "chat-canary", "port": 80, "weight": 100}]
    assert [r["weight"] for r in a["backendRefs"]] == [100, 0]
    assert await k.rs_counts("chat") == {1: (2, 2), 2: (2, 2)}


async def test_nginx_canary_ingress_annotations(kube_: Kube, operator: Operator) -> None:
    k = kube_
    await k.create(
        kube.INGRESSES,
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {
                "name": "web",
                # As kubectl apply and cert-manager's docs leave a stable Ingress: only the
                # class reaches the canary Ingress (Argo Rollouts copies nothing else).
                "annotations": {
                    "kubernetes.io/ingress.class": "nginx",
                    "kubectl.kubernetes.io/last-applied-configuration": '{"kind":"Ingress"}',
                    "cert-manager.io/cluster-issuer": "letsencrypt-prod",
                    "nginx.ingress.kubernetes.io/rewrite-target": "/",
                },
            },
            "spec": {
                "rules": [
                    {
                        "host": "web.example",
                        "http": {
                            "paths": [
                                {
                                    "path": "/",
                                    "pathType": "Prefix",
                                    "backend": {"service": {"name": "web", "port": {"number": 80}}},
                                }
                            ]
                        },
                    }
                ]
            },
        },
    )
    steps = [
        {"setWeight": 20},
        {"pause": {}},
        {
            "setHeaderRoute": {
                "name": "beta",
                "match": [{"headerName": "x-beta", "headerValue": {"regex": "y.*"}}],
            }
        },
        {"pause": {}},
    ]
    await k.apply_rollout(
        rollout(
            "web",
            strategy={"canary": {"steps": steps}},
            traffic={"nginx": {"stableIngress": "web"}},
        )
    )
    await healthy_on(k, "web", 1)
    await k.set_image("web", "app:v2")
    await _paused_at(k, "web", 1)

    async def canary() -> JSON:
        return await k.client.get(kube.INGRESSES, "web-canary", namespace=k.namespace)

    doc = await canary()
    ann = doc["metadata"]["annotations"]
    p = "nginx.ingress.kubernetes.io/"
    assert ann[p + "canary"] == "true" and ann[p + "canary-weight"] == "20"
    assert ann["kubernetes.io/ingress.class"] == "nginx"
    assert sorted(ann) == [
        "kubernetes.io/ingress.class",
        "nginx.ingress.kubernetes.io/canary",
        "nginx.ingress.kubernetes.io/canary-weight",
    ]
    backend = doc["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == "web-canary"
    await _promote(k, "web")
    await _paused_at(k, "web", 3)
    ann = (await canary())["metadata"]["annotations"]
    assert ann[p + "canary-by-header"] == "x-beta"
    assert ann[p + "canary-by-header-pattern"] == "y.*"
    await _promote(k, "web")
    await healthy_on(k, "web", 2)
    ann = (await canary())["metadata"]["annotations"]
    assert ann[p + "canary-weight"] == "0" and p + "canary-by-header" not in ann


async def test_smi_trafficsplit(kube_: Kube, operator: Operator) -> None:
    k = kube_
    steps = [{"setWeight": 30}, {"pause": {}}]
    await k.apply_rollout(
        rollout(
            "web",
            strategy={"canary": {"steps": steps}},
            traffic={"smi": {"rootService": "web-root"}},
        )
    )
    await healthy_on(k, "web", 1)

    async def backends() -> list[tuple[str, int]]:
        doc = await k.client.get(kube.TRAFFIC_SPLITS, "web", namespace=k.namespace)
        assert doc["spec"]["service"] == "web-root"
        return [(b["service"], b["weight"]) for b in doc["spec"]["backends"]]

    assert await backends() == [("web", 100), ("web-canary", 0)]
    await k.set_image("web", "app:v2")
    await _paused_at(k, "web", 1)
    assert await backends() == [("web", 70), ("web-canary", 30)]
    await _promote(k, "web")
    await healthy_on(k, "web", 2)
    assert await backends() == [("web", 100), ("web-canary", 0)]
    assert await k.selects("web") == await k.hash_of("web", 2)
