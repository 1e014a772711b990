"""Flagger ``Canary`` (flagger.app/v1beta1) → a changeover Rollout.

Flagger's analysis loop becomes a strategy:

- ``stepWeight`` up to ``maxWeight`` (default 100), or each of ``stepWeights``: a canary
  whose steps are ``setWeight`` + a pause of one ``interval``, with the metrics as
  background analysis;
- ``match`` (A/B): an ``abTest`` of ``iterations × interval`` on those header matches;
- ``mirror: true``: a ``shadow`` of ``mirrorWeight`` percent for ``iterations × interval``;
- ``iterations`` alone (blue/green): a ``blueGreen`` whose pre-promotion analysis runs the
  metrics ``iterations`` times, promoting itself after ``iterations × interval``;
- ``skipAnalysis: true``: a canary with no steps (promoted as soon as it is ready).

``provider`` picks the router (istio, nginx with ``ingressRef``, gatewayapi, smi/linkerd/osm;
kubernetes: replica ratio); without one, Flagger's default mesh provider, istio. Metrics
run as Prometheus queries (``flagger_metrics``). Webhooks carry over as changeover
webhooks. The Canary points at a Deployment (``targetRef``): when it is among the imported
documents its pod template and replicas are used, otherwise the template is a placeholder
and a note says to fill it in. A Canary changeover cannot run at all (no targetRef, no
service port, a DaemonSet) is refused with a ``SpecError`` naming the field.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from changeover import errors
from changeover.spec import models
from changeover.spec.importers import flagger_metrics
from changeover.spec.importers.report import Notes, Result

JSON = dict[str, Any]
API = "changeover.dev/v1alpha1"
_TOP = {"provider", "targetRef", "ingressRef", "progressDeadlineSeconds", "service"}
_TOP |= {"analysis", "suspend", "skipAnalysis"}
_ANALYSIS = {"interval", "threshold", "maxWeight", "stepWeight", "stepWeights", "iterations"}
_ANALYSIS |= {"mirror", "mirrorWeight", "match", "metrics", "webhooks"}
_WEBHOOK = {"name", "type", "url", "timeout", "metadata", "retries"}
_SERVICE = {"port", "targetPort", "name"}
_WHY = {
    "autoscalerRef": "changeover scales ReplicaSets to spec.replicas; attach your own "
    "autoscaler to the Rollout (scale subresource) instead",
    "revertOnDeletion": "deleting the Rollout deletes its ReplicaSets and Services",
    "analysis.sessionAffinity": "a canary splits per request here; sticky users are an abTest "
    "feature (userKey)",
    "analysis.alerts": "use spec.notifications for phase-change notifications",
    "analysis.stepWeightPromotion": "promotion switches all traffic at once",
    "analysis.primaryReadyThreshold": "changeover waits for every replica to be ready",
    "analysis.canaryReadyThreshold": "changeover waits for every replica to be ready",
}


def canary(
    doc: JSON,
    source: str,
    deployments: dict[str, JSON],
    templates: dict[str, JSON] | None = None,
) -> Result:
    notes = Notes(source)
    meta = doc.get("metadata") or {}
    spec = doc.get("spec") or {}
    target = _target(spec, source)
    svc = spec.get("service") or {}
    if not isinstance(svc.get("port"), int):
        raise errors.SpecError.single(
            file=source,
            path="spec.service.port",
            message="expected the ClusterIP port number of the Canary's Services "
            "(Flagger requires it too)",
        )
    name = str(meta.get("name"))
    svc_name = str(svc.get("name") or target)
    out: JSON = {}
    deployment = _template(out, deployments.get(target), target, notes)
    if "progressDeadlineSeconds" in spec:
        out["progressDeadlineSeconds"] = spec["progressDeadlineSeconds"]
    if spec.get("suspend"):
        out["paused"] = True
    out["service"] = _service(svc, svc_name, deployment, notes)
    provider = _provider_name(spec, notes)
    traffic = _router(provider, spec, svc_name, notes)
    if traffic is not None:
        out["traffic"] = traffic
    analysis = spec.get("analysis") or {}
    values = {
        "namespace": str(meta.get("namespace") or "default"),
        "target": target,
        "name": name,
        "service": svc_name,
        "ingress": str((spec.get("ingressRef") or {}).get("name") or ""),
    }
    metrics = [
        converted
        for i, metric in enumerate(analysis.get("metrics") or [])
        if (
            converted := flagger_metrics.convert(
                metric,
                f"spec.analysis.metrics[{i}]",
                notes,
                values=values,
                provider=provider,
                templates=templates or {},
            )
        )
        is not None
    ]
    out["strategy"] = _strategy(spec, analysis, metrics, svc_name, notes)
    webhooks = _webhooks(analysis.get("webhooks") or [], notes)
    if webhooks:
        out["webhooks"] = webhooks
    for key in analysis:
        if key not in _ANALYSIS:
            notes.drop(f"spec.analysis.{key}", _WHY.get(f"analysis.{key}", "not supported"))
    for key in spec:
        if key not in _TOP:
            notes.drop(f"spec.{key}", _WHY.get(key, "not supported by changeover"))
    md: JSON = {"name": name}
    for key in ("namespace", "labels", "annotations"):
        if meta.get(key):
            md[key] = copy.deepcopy(meta[key])
    body = {"apiVersion": API, "kind": "Rollout", "metadata": md, "spec": out}
    return Result(documents=[body], notes=notes.items)


def _target(spec: JSON, source: str) -> str:
    ref = spec.get("targetRef") or {}
    if not ref.get("name"):
        raise errors.SpecError.single(
            file=source,
            path="spec.targetRef",
            message="expected the Deployment the Canary drives "
            "({apiVersion: apps/v1, kind: Deployment, name: ...})",
        )
    if ref.get("kind", "Deployment") != "Deployment":
        raise errors.SpecError.single(
            file=source,
            path="spec.targetRef.kind",
            message=f"expected Deployment, got {ref.get('kind')}: changeover runs a "
            "rollout's pods as ReplicaSets",
        )
    return str(ref["name"])


def _template(out: JSON, deployment: JSON | None, target: str, notes: Notes) -> JSON | None:
    if deployment is None:
        out["template"] = {
            "metadata": {"labels": {"app": target}},
            "spec": {"containers": [{"name": "app", "image": "REPLACE-ME"}]},
        }
        notes.change(
            "spec.targetRef",
            f"Deployment {target} is not among the imported documents: spec.template is a "
            "placeholder, fill in its pod template (or import the Deployment with the Canary)",
        )
        return None
    dspec = deployment.get("spec") or {}
    template = copy.deepcopy(dspec.get("template") or {})
    tmeta = template.get("metadata") or {}
    out["template"] = {
        "metadata": {k: tmeta[k] for k in ("labels", "annotations") if k in tmeta},
        "spec": template.get("spec") or {},
    }
    out["replicas"] = dspec.get("replicas", 1)
    notes.change(
        "spec.targetRef",
        f"Deployment {target}'s pod template and replicas moved into the Rollout "
        "(delete the Deployment once the Rollout runs)",
    )
    return deployment


def _service(svc: JSON, svc_name: str, deployment: JSON | None, notes: Notes) -> JSON:
    """Flagger's apex Service ``<name>`` (stable) and ``<name>-canary``; its third,
    ``<name>-primary``, has no counterpart: the stable Service selects stable pods."""
    out: JSON = {"port": svc["port"], "name": svc_name, "canaryName": f"{svc_name}-canary"}
    target_port = svc.get("targetPort")
    if isinstance(target_port, int):
        out["targetPort"] = target_port
    elif isinstance(target_port, str):
        number = _named_port(deployment, target_port)
        if number is not None:
            out["targetPort"] = number
            notes.change("spec.service.targetPort", f"port {target_port!r} is {number}")
        else:
            notes.change(
                "spec.service.targetPort",
                f"named port {target_port!r}: the first containerPort is used",
            )
    for key in svc:
        if key not in _SERVICE:
            notes.drop(
                f"spec.service.{key}",
                "the Services get port and targetPort only; mesh, gateway and "
                "Service options are not carried over",
            )
    return out


def _named_port(deployment: JSON | None, name: str) -> int | None:
    pod = ((deployment or {}).get("spec") or {}).get("template") or {}
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == name and isinstance(port.get("containerPort"), int):
                return int(port["containerPort"])
    return None


def _provider_name(spec: JSON, notes: Notes) -> str:
    if spec.get("provider"):
        return str(spec["provider"])
    if (spec.get("ingressRef") or {}).get("kind", "Ingress") == "Ingress" and spec.get(
        "ingressRef"
    ):
        notes.change(
            "spec.provider",
            "absent, with an ingressRef: Flagger runs with an ingress provider; nginx assumed",
        )
        return "nginx"
    notes.change(
        "spec.provider",
        "absent: Flagger's default mesh provider, istio, is assumed (set spec.provider to "
        "the -mesh-provider your Flagger runs with before importing if it differs)",
    )
    return "istio"


def _router(provider: str, spec: JSON, svc_name: str, notes: Notes) -> JSON | None:
    base = provider.split(":")[0]
    if base == "istio":
        notes.change(
            "spec.provider",
            f"Flagger generates the VirtualService; changeover steers an existing one named "
            f"{svc_name} whose route sends to Services {svc_name} and {svc_name}-canary",
        )
        return {"istio": {"virtualService": {"name": svc_name}}}
    if base == "nginx":
        ingress = (spec.get("ingressRef") or {}).get("name")
        if not ingress:
            raise errors.SpecError.single(
                file=notes.source,
                path="spec.ingressRef",
                message="expected the Ingress that the nginx provider splits "
                "({apiVersion: networking.k8s.io/v1, kind: Ingress, name: ...})",
            )
        return {"nginx": {"stableIngress": ingress}}
    if base == "gatewayapi":
        notes.change(
            "spec.provider",
            f"Flagger generates the HTTPRoute; changeover steers an existing one named "
            f"{svc_name} (its parentRefs and hostnames come from spec.service.gatewayRefs/hosts)",
        )
        return {"gatewayAPI": {"httpRoute": svc_name}}
    if base in ("smi", "linkerd", "osm"):
        return {"smi": {"rootService": svc_name}}
    if base != "kubernetes":
        notes.drop(
            "spec.provider",
            f"provider {provider} is not supported here (have: istio, nginx, gatewayapi, "
            "smi/linkerd/osm, kubernetes): weights follow the share of replicas",
        )
    return None


def _seconds(value: Any, path: str, notes: Notes) -> float:
    try:
        return models.parse_duration(value)
    except ValueError:
        notes.change(path, f"{value!r} is not a duration: 60s used")
        return 60.0


def _strategy(spec: JSON, analysis: JSON, metrics: list[JSON], svc_name: str, notes: Notes) -> JSON:
    interval = _seconds(analysis.get("interval", "1m"), "spec.analysis.interval", notes)
    every = f"{int(interval)}s"
    iterations = int(analysis.get("iterations") or 0)
    length = f"{int(max(iterations, 1) * interval)}s"
    threshold = int(analysis.get("threshold") or 1)
    if metrics and "threshold" in analysis:
        notes.change(
            "spec.analysis.threshold",
            f"failed checks are counted per metric: each may fail {threshold - 1} times",
        )
    for metric in metrics:
        metric["interval"] = every
        metric["failureLimit"] = max(threshold - 1, 0)
    bounded = [dict(m, count=max(iterations, 1)) for m in metrics]
    if spec.get("skipAnalysis"):
        notes.change(
            "spec.skipAnalysis",
            "the new revision is promoted as soon as it is ready: no steps, no analysis",
        )
        return {"canary": {"steps": []}}
    if analysis.get("match"):
        ab: JSON = {"match": _match(analysis["match"], notes), "duration": length}
        if bounded:
            ab["analysis"] = {"metrics": bounded}
        return {"abTest": ab}
    if analysis.get("mirror"):
        shadow: JSON = {"percentage": int(analysis.get("mirrorWeight") or 100)}
        shadow["duration"] = length
        if bounded:
            shadow["analysis"] = {"metrics": bounded}
        return {"shadow": shadow}
    if iterations and not (analysis.get("stepWeight") or analysis.get("stepWeights")):
        bg: JSON = {
            "activeService": svc_name,
            "previewService": f"{svc_name}-canary",
            "autoPromotionSeconds": length,
        }
        if bounded:
            bg["prePromotionAnalysis"] = {"metrics": bounded}
        return {"blueGreen": bg}
    steps: list[JSON] = []
    if analysis.get("stepWeight") and not analysis.get("maxWeight"):
        notes.change("spec.analysis.stepWeight", "no maxWeight: steps go up to 100")
    for weight in _weights(analysis):
        steps += [{"setWeight": weight}, {"pause": {"duration": every}}]
    out: JSON = {"steps": steps}
    if metrics:
        out["analysis"] = {"metrics": metrics}
    return {"canary": out}


def _weights(analysis: JSON) -> list[int]:
    if analysis.get("stepWeights"):
        return [int(w) for w in analysis["stepWeights"]]
    step = int(analysis.get("stepWeight") or 10)
    top = int(analysis.get("maxWeight") or 100)
    if step <= 0:
        return []
    weights = list(range(step, top + 1, step))
    # maxWeight 50 by 20s: 20, 40, then 50 (the canary never gets more than maxWeight).
    return weights if weights and weights[-1] == top else [*weights, top]


def _match(matches: list[JSON], notes: Notes) -> list[JSON]:
    out = []
    for i, m in enumerate(matches):
        for header, value in (m.get("headers") or {}).items():
            out.append({"headerName": header, "headerValue": dict(value)})
        for key in m:
            if key != "headers":
                notes.drop(
                    f"spec.analysis.match[{i}].{key}",
                    "requests are matched by header (and cookie) only",
                )
    return out


def _slug(name: str) -> str:
    """A webhook name changeover accepts: ``"load test"`` → ``load-test``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-_.")[:63] or "webhook"


def _webhooks(hooks: list[JSON], notes: Notes) -> list[JSON]:
    out = []
    for i, hook in enumerate(hooks):
        path = f"spec.analysis.webhooks[{i}]"
        converted = {k: copy.deepcopy(hook[k]) for k in _WEBHOOK if k in hook}
        converted.setdefault("type", "rollout")
        name = str(hook.get("name") or f"webhook-{i}")
        converted["name"] = _slug(name)
        if converted["name"] != name:
            notes.change(f"{path}.name", f"{name!r} is written {converted['name']!r}")
        if converted["type"] not in _TYPES:
            notes.drop(path, f"webhook type {converted['type']} is not supported")
            continue
        notes.rest(hook, path, _WEBHOOK)
        out.append(converted)
    return out


_TYPES = {"confirm-rollout", "pre-rollout", "rollout", "confirm-promotion", "post-rollout"}
_TYPES |= {"rollback", "event", "confirm-traffic-increase"}
