"""Flagger ``Canary`` (flagger.app/v1beta1) → a changeover Rollout.

Flagger's analysis loop becomes steps: every ``stepWeight`` up to ``maxWeight`` (or each
of ``stepWeights``) is a ``setWeight`` followed by a timed pause of one ``interval``; with
``match`` (A/B) it is an ``abTest`` of ``iterations × interval``; with ``mirror: true`` a
``shadow``; with ``iterations`` alone a blue-green that promotes itself after
``iterations × interval``. ``provider`` picks the router (istio, nginx with ``ingressRef``,
gatewayapi, smi/linkerd; kubernetes: none). Metrics that name a ``templateRef`` become
background analysis; Flagger's built-in ``request-success-rate``/``request-duration`` need
a metric template here and are reported. Webhooks carry over as changeover webhooks.

Flagger's Canary points at a Deployment (``targetRef``) instead of holding a pod template:
when that Deployment is among the imported documents its template and replicas are used;
otherwise the Rollout gets a placeholder container and a note says to fill it in.
"""

from __future__ import annotations

import copy
from typing import Any

from changeover.spec import models
from changeover.spec.importers.report import Notes, Result

JSON = dict[str, Any]
API = "changeover.dev/v1alpha1"
_TOP = {
    "provider",
    "targetRef",
    "ingressRef",
    "progressDeadlineSeconds",
    "service",
    "analysis",
    "suspend",
}
_ANALYSIS = {
    "interval",
    "threshold",
    "maxWeight",
    "stepWeight",
    "stepWeights",
    "iterations",
    "mirror",
    "mirrorWeight",
    "match",
    "metrics",
    "webhooks",
}
_WEBHOOK_TYPES = {
    "confirm-rollout",
    "pre-rollout",
    "rollout",
    "confirm-promotion",
    "post-rollout",
    "rollback",
    "event",
    "confirm-traffic-increase",
}


def _seconds(value: Any) -> float:
    try:
        return models.parse_duration(value)
    except ValueError:
        return 60.0


def _weights(analysis: JSON) -> list[int]:
    if analysis.get("stepWeights"):
        return [int(w) for w in analysis["stepWeights"]]
    step = int(analysis.get("stepWeight") or 10)
    top = int(analysis.get("maxWeight") or 50)
    return list(range(step, top + 1, step)) if step > 0 else []


def _match(matches: list[JSON], path: str, notes: Notes) -> list[JSON]:
    out = []
    for i, m in enumerate(matches):
        for name, value in (m.get("headers") or {}).items():
            out.append({"headerName": name, "headerValue": dict(value)})
        for key in m:
            if key != "headers":
                notes.drop(f"{path}[{i}].{key}", "matches by header (and cookie) only")
    return out


def canary(doc: JSON, source: str, deployments: dict[str, JSON]) -> Result:
    notes = Notes(source)
    meta = doc.get("metadata") or {}
    name = str(meta.get("name"))
    spec = doc.get("spec") or {}
    analysis = spec.get("analysis") or {}
    interval = _seconds(analysis.get("interval", "1m"))
    target = (spec.get("targetRef") or {}).get("name")
    deployment = deployments.get(str(target))
    out: JSON = {}
    if deployment is not None:
        dspec = deployment.get("spec") or {}
        template = copy.deepcopy(dspec.get("template") or {})
        tmeta = template.get("metadata") or {}
        out["template"] = {
            "metadata": {k: tmeta[k] for k in ("labels", "annotations") if k in tmeta},
            "spec": template.get("spec") or {},
        }
        if "replicas" in dspec:
            out["replicas"] = dspec["replicas"]
        notes.change(
            "spec.targetRef",
            f"Deployment {target}'s pod template and replicas "
            "moved into the Rollout (delete the Deployment once the Rollout runs)",
        )
    else:
        out["template"] = {
            "metadata": {"labels": {"app": name}},
            "spec": {"containers": [{"name": name, "image": "REPLACE-ME"}]},
        }
        notes.change(
            "spec.targetRef",
            f"Deployment {target} is not among the imported "
            "documents: spec.template is a placeholder, fill in its pod template",
        )
    if "progressDeadlineSeconds" in spec:
        out["progressDeadlineSeconds"] = spec["progressDeadlineSeconds"]
    if spec.get("suspend"):
        out["paused"] = True
    svc = spec.get("service") or {}
    service: JSON = {
        "port": int(svc.get("port") or 80),
        "name": name,
        "canaryName": f"{name}-canary",
    }
    if isinstance(svc.get("targetPort"), int):
        service["targetPort"] = svc["targetPort"]
    notes.rest(
        svc,
        "spec.service",
        {"port", "targetPort", "name"},
        "Service and mesh options beyond port/targetPort are not carried over",
    )
    out["service"] = service
    iterations = int(analysis.get("iterations") or 0)
    if analysis.get("match"):
        matches = _match(analysis["match"], "spec.analysis.match", notes)
        out["strategy"] = {
            "abTest": {"match": matches, "duration": f"{int(max(iterations, 1) * interval)}s"}
        }
    elif analysis.get("mirror"):
        out["strategy"] = {
            "shadow": {
                "percentage": int(analysis.get("mirrorWeight") or 100),
                "duration": f"{int(max(iterations, 1) * interval)}s",
            }
        }
    elif iterations and not (analysis.get("stepWeight") or analysis.get("stepWeights")):
        out["strategy"] = {"blueGreen": {"autoPromotionSeconds": f"{int(iterations * interval)}s"}}
    else:
        steps: list[JSON] = []
        for weight in _weights(analysis):
            steps += [{"setWeight": weight}, {"pause": {"duration": f"{int(interval)}s"}}]
        out["strategy"] = {"canary": {"steps": steps}}
    if "threshold" in analysis:
        notes.change(
            "spec.analysis.threshold",
            "failed checks are counted per metric (failureLimit) instead of per canary",
        )
    templates, kept_metrics = [], []
    for i, metric in enumerate(analysis.get("metrics") or []):
        ref = metric.get("templateRef")
        if ref:
            templates.append({"templateName": ref["name"]})
            kept_metrics.append(metric["name"])
            if "thresholdRange" in metric:
                notes.change(
                    f"spec.analysis.metrics[{i}].thresholdRange",
                    "put the threshold in the template's successCondition",
                )
        else:
            notes.drop(
                f"spec.analysis.metrics[{i}]",
                f"Flagger's built-in metric {metric.get('name')!r} needs an AnalysisTemplate here",
            )
    if templates:
        strategy = out["strategy"]
        if "canary" in strategy:
            strategy["canary"]["analysis"] = {"templates": templates}
        else:
            notes.drop(
                "spec.analysis.metrics", "metrics run as background analysis of canaries only"
            )
    webhooks = []
    for i, hook in enumerate(analysis.get("webhooks") or []):
        kind = hook.get("type", "rollout")
        if kind not in _WEBHOOK_TYPES:
            notes.drop(f"spec.analysis.webhooks[{i}]", f"webhook type {kind} is not supported")
            continue
        converted = {
            k: hook[k] for k in ("name", "type", "url", "timeout", "metadata") if k in hook
        }
        webhooks.append(converted)
        notes.rest(
            hook, f"spec.analysis.webhooks[{i}]", {"name", "type", "url", "timeout", "metadata"}
        )
    if webhooks:
        out["webhooks"] = webhooks
    traffic = _provider(spec, notes)
    if traffic is not None:
        out["traffic"] = traffic
    notes.rest(analysis, "spec.analysis", _ANALYSIS)
    notes.rest(spec, "spec", _TOP)
    md: JSON = {"name": name}
    for key in ("namespace", "labels", "annotations"):
        if meta.get(key):
            md[key] = copy.deepcopy(meta[key])
    body = {"apiVersion": API, "kind": "Rollout", "metadata": md, "spec": out}
    return Result(documents=[body], notes=notes.items)


def _provider(spec: JSON, notes: Notes) -> JSON | None:
    provider = str(spec.get("provider") or "kubernetes")
    name = (spec.get("metadata") or {}).get("name")
    base = provider.split(":")[0]
    if base == "istio":
        notes.change(
            "spec.provider",
            "Flagger generates the VirtualService; changeover "
            "steers an existing one named after the canary",
        )
        return {"istio": {"virtualService": {"name": name or "REPLACE-ME"}}}
    if base == "nginx":
        ingress = (spec.get("ingressRef") or {}).get("name")
        return {"nginx": {"stableIngress": ingress or "REPLACE-ME"}}
    if base == "gatewayapi":
        notes.change(
            "spec.provider", "changeover steers an existing HTTPRoute named after the canary"
        )
        return {"gatewayAPI": {"httpRoute": name or "REPLACE-ME"}}
    if base in ("smi", "linkerd", "osm"):
        return {"smi": {}}
    if base != "kubernetes":
        notes.drop(
            "spec.provider",
            f"provider {provider} is not supported: weights follow the share of replicas",
        )
    return None
