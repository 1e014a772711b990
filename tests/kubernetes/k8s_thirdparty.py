"""The third-party CRDs the routers write to, reduced to what a 1.20 API server accepts
(apiextensions.k8s.io/v1, structural, no CEL): the parts changeover writes are typed (so
the API server rejects a wrong weight or a misspelt field), the rest stays open.

Istio ``VirtualService``/``DestinationRule`` (networking.istio.io/v1beta1), Gateway API
``HTTPRoute`` (gateway.networking.k8s.io/v1beta1) and SMI ``TrafficSplit``
(split.smi-spec.io/v1alpha2); Argo Rollouts' ``Rollout``, ``AnalysisTemplate`` and
(cluster-scoped) ``ClusterAnalysisTemplate`` (argoproj.io/v1alpha1, open). NGINX needs
none: its canary is an ordinary Ingress.
"""

from __future__ import annotations

from typing import Any

JSON = dict[str, Any]
OPEN: JSON = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
STR: JSON = {"type": "string"}
INT: JSON = {"type": "integer"}


def _obj(props: JSON, required: list[str] | None = None) -> JSON:
    out: JSON = {"type": "object", "properties": props}
    if required:
        out["required"] = required
    return out


def _arr(items: JSON) -> JSON:
    return {"type": "array", "items": items}


def _crd(group: str, version: str, kind: str, plural: str, spec: JSON) -> JSON:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{group}",
            # *.k8s.io groups are protected; the real Gateway API CRDs carry this too.
            "annotations": {
                "api-approved.kubernetes.io": "https://github.com/kubernetes-sigs/gateway-api/pull/891"
            },
        },
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "plural": plural,
                "singular": kind.lower(),
                "listKind": f"{kind}List",
            },
            "versions": [
                {
                    "name": version,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": _obj({"spec": spec, "status": OPEN})},
                }
            ],
        },
    }


_DEST = _obj({"host": STR, "subset": STR, "port": _obj({"number": INT})}, ["host"])
_STRING_MATCH = _obj({"exact": STR, "prefix": STR, "regex": STR})
VIRTUAL_SERVICE_SPEC = _obj(
    {
        "hosts": _arr(STR),
        "gateways": _arr(STR),
        "http": _arr(
            _obj(
                {
                    "name": STR,
                    "match": _arr(
                        _obj(
                            {
                                "headers": {
                                    "type": "object",
                                    "additionalProperties": _STRING_MATCH,
                                },
                                "uri": _STRING_MATCH,
                            }
                        )
                    ),
                    "route": _arr(
                        _obj(
                            {"destination": _DEST, "weight": {**INT, "minimum": 0, "maximum": 100}}
                        )
                    ),
                    "mirror": _DEST,
                    "mirrorPercentage": _obj(
                        {"value": {"type": "number", "minimum": 0, "maximum": 100}}
                    ),
                }
            )
        ),
    }
)
DESTINATION_RULE_SPEC = _obj(
    {
        "host": STR,
        "subsets": _arr(
            _obj({"name": STR, "labels": {"type": "object", "additionalProperties": STR}}, ["name"])
        ),
        "trafficPolicy": OPEN,
    }
)
_BACKEND_REF = _obj(
    {"name": STR, "namespace": STR, "port": INT, "weight": {**INT, "minimum": 0}}, ["name"]
)
HTTP_ROUTE_SPEC = _obj(
    {
        "parentRefs": _arr(OPEN),
        "hostnames": _arr(STR),
        "rules": _arr(
            _obj(
                {
                    "matches": _arr(
                        _obj(
                            {
                                "path": OPEN,
                                "headers": _arr(
                                    _obj(
                                        {
                                            "type": {**STR, "enum": ["Exact", "RegularExpression"]},
                                            "name": STR,
                                            "value": STR,
                                        },
                                        ["name", "value"],
                                    )
                                ),
                            }
                        )
                    ),
                    "filters": _arr(
                        _obj(
                            {
                                "type": STR,
                                "requestMirror": _obj(
                                    {
                                        "backendRef": _BACKEND_REF,
                                        "percent": {**INT, "minimum": 0, "maximum": 100},
                                    }
                                ),
                            },
                            ["type"],
                        )
                    ),
                    "backendRefs": _arr(_BACKEND_REF),
                }
            )
        ),
    }
)
TRAFFIC_SPLIT_SPEC = _obj(
    {
        "service": STR,
        "backends": _arr(
            _obj({"service": STR, "weight": {**INT, "minimum": 0}}, ["service", "weight"])
        ),
    },
    ["service", "backends"],
)


def crds() -> list[JSON]:
    argo = _crd("argoproj.io", "v1alpha1", "Rollout", "rollouts", OPEN)
    argo["spec"]["versions"][0]["subresources"] = {"status": {}}
    templates = _crd("argoproj.io", "v1alpha1", "AnalysisTemplate", "analysistemplates", OPEN)
    cluster = _crd(
        "argoproj.io", "v1alpha1", "ClusterAnalysisTemplate", "clusteranalysistemplates", OPEN
    )
    cluster["spec"]["scope"] = "Cluster"
    return [
        argo,
        templates,
        cluster,
        _crd(
            "networking.istio.io",
            "v1beta1",
            "VirtualService",
            "virtualservices",
            VIRTUAL_SERVICE_SPEC,
        ),
        _crd(
            "networking.istio.io",
            "v1beta1",
            "DestinationRule",
            "destinationrules",
            DESTINATION_RULE_SPEC,
        ),
        _crd("gateway.networking.k8s.io", "v1beta1", "HTTPRoute", "httproutes", HTTP_ROUTE_SPEC),
        _crd("split.smi-spec.io", "v1alpha2", "TrafficSplit", "trafficsplits", TRAFFIC_SPLIT_SPEC),
    ]
