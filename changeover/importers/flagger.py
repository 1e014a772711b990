"""Flagger ``Canary`` (flagger.app/v1beta1) → a changeover Rollout.

Flagger's analysis loop (pkg/controller/scheduler.go) ticks once per ``interval``: a tick
whose checks (metrics, ``rollout`` webhooks) pass moves the canary on, a failing one
counts towards ``threshold``, which rolls it back. That becomes ``spec.checks`` (interval,
threshold, metrics: ``engine.checks`` runs them) and ``check`` steps where Flagger waits
for a passing tick:

- ``stepWeight`` while under ``maxWeight`` (default 100), or each of ``stepWeights``: a
  canary of ``setWeight`` + ``check`` per weight (the last check precedes promotion);
- ``match`` + ``iterations`` (A/B): the canary at full size, a header route, and
  ``check: {count: iterations}``;
- ``iterations`` alone (blue/green): the canary at full size (mirrored to with
  ``mirror: true``), ``iterations`` checks, then all traffic and one more check;
- ``mirror: true`` with steps: one mirrored check before the first weight;
- provider ``kubernetes`` (no traffic to shift): a ``blueGreen`` whose promotion waits for
  ``iterations + 1`` passing checks (10 iterations when none are given, as Flagger sets);
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
from changeover.importers import flagger_metrics
from changeover.importers.report import Notes, Result
from changeover.spec import models

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
    namespace, args = _namespace(meta, notes)
    values = {
        "namespace": namespace,
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
    interval = _interval(analysis, notes)
    out["strategy"] = _strategy(spec, analysis, svc_name, provider, interval, notes)
    if not spec.get("skipAnalysis"):
        used = any("{{args.namespace}}" in str(m) for m in metrics)
        out["checks"] = _checks(analysis, metrics, args if used else [], interval)
    webhooks = _webhooks(analysis.get("webhooks") or [], interval, notes)
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


def _namespace(meta: JSON, notes: Notes) -> tuple[str, list[JSON]]:
    """What ``{{ namespace }}`` becomes in queries: the Canary's namespace, or without one
    the namespace the Rollout runs in, read when each check starts (an argument from
    ``metadata.namespace``), never a guessed ``default``."""
    if meta.get("namespace"):
        return str(meta["namespace"]), []
    notes.change(
        "metadata.namespace",
        "absent: {{ namespace }} in the metric queries is the namespace the Rollout is "
        "applied in (argument 'namespace' from metadata.namespace)",
        loss=False,
    )
    arg = {"name": "namespace", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}
    return "{{args.namespace}}", [arg]


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
        loss=False,
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
            notes.change("spec.service.targetPort", f"port {target_port!r} is {number}", loss=False)
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


def _interval(analysis: JSON, notes: Notes) -> float:
    """Flagger's analysis interval: default 1m, and never under 10s (its scheduler's floor)."""
    raw = analysis.get("interval", "1m")
    try:
        seconds = models.parse_duration(raw)
    except ValueError:
        notes.change("spec.analysis.interval", f"{raw!r} is not a duration: Flagger's 1m used")
        return 60.0
    if seconds < 10:
        notes.change(
            "spec.analysis.interval", f"{raw}: Flagger runs checks every 10s at most", loss=False
        )
        return 10.0
    return seconds


def _checks(analysis: JSON, metrics: list[JSON], args: list[JSON], interval: float) -> JSON:
    """``spec.checks``: Flagger's analysis as changeover runs it (``engine.checks``)."""
    out: JSON = {
        "interval": models.format_duration(interval),
        "threshold": max(int(analysis.get("threshold") or 1), 1),
    }
    if metrics:
        out["metrics"] = metrics
    if args:
        out["args"] = args
    return out


def _strategy(
    spec: JSON, analysis: JSON, svc_name: str, provider: str, interval: float, notes: Notes
) -> JSON:
    """Flagger's scheduler (pkg/controller/scheduler.go) as steps gated by checks: every
    weight, iteration or mirror phase it holds for one interval until a check passes
    becomes a ``check`` step, so the counts match Flagger's ticks exactly."""
    if spec.get("skipAnalysis"):
        notes.change(
            "spec.skipAnalysis",
            "the new revision is promoted as soon as it is ready: no steps, no analysis",
        )
        return {"canary": {"steps": []}}
    iterations = int(analysis.get("iterations") or 0)
    stepped = bool(analysis.get("stepWeight") or analysis.get("stepWeights"))
    if provider.split(":")[0] == "kubernetes":
        return _kubernetes(analysis, iterations, stepped, svc_name, notes)
    full = {"setCanaryScale": {"weight": 100}}  # Flagger's canary runs at full size
    mirror = int(analysis.get("mirrorWeight") or 100)
    if analysis.get("match") and iterations:
        # A/B: matching requests go to the canary at once; `iterations` passing checks.
        route = {"setHeaderRoute": {"name": "ab-test", "match": _match(analysis["match"], notes)}}
        return {"canary": {"steps": [full, route, {"check": {"count": iterations}}]}}
    if iterations:
        # Blue/green: `iterations` checks with no traffic (mirrored, with mirror: true),
        # then all traffic on the canary and one more check before promotion.
        steps: list[JSON] = [full]
        if analysis.get("mirror"):
            steps.append({"setMirrorRoute": {"name": "mirror", "percentage": mirror}})
        steps.append({"check": {"count": iterations}})
        if analysis.get("mirror"):
            steps.append({"setMirrorRoute": {"name": "mirror", "percentage": 0}})
        return {"canary": {"steps": [*steps, {"setWeight": 100}, {"check": {}}]}}
    if analysis.get("match"):
        notes.drop(
            "spec.analysis.match",
            "without iterations Flagger runs a weighted canary (not an A/B test): the "
            "weights are carried, the header matches are not",
        )
    steps = []
    if analysis.get("mirror"):
        # One interval of mirroring before the first weight (Flagger's mirror step).
        steps += [
            full,
            {"setMirrorRoute": {"name": "mirror", "percentage": mirror}},
            {"check": {}},
            {"setMirrorRoute": {"name": "mirror", "percentage": 0}},
            {"setCanaryScale": {"matchTrafficWeight": True}},
        ]
    if analysis.get("stepWeight") and not analysis.get("maxWeight"):
        notes.change("spec.analysis.stepWeight", "no maxWeight: steps go up to 100", loss=False)
    for weight in _weights(analysis):
        steps += [{"setWeight": weight}, {"check": {}}]
    return {"canary": {"steps": steps}}


def _kubernetes(
    analysis: JSON, iterations: int, stepped: bool, svc_name: str, notes: Notes
) -> JSON:
    """The kubernetes provider shifts no traffic: Flagger runs blue/green (10 iterations
    when none are given) and checks iterations + 1 times before promoting."""
    if analysis.get("match"):
        notes.drop(
            "spec.analysis.match",
            "A/B testing needs a router; Flagger's kubernetes provider ignores it too",
        )
    if not iterations:
        iterations = 10
        why = "stepWeight" if stepped else "iterations"
        notes.change(
            f"spec.analysis.{why}",
            "the kubernetes provider cannot shift traffic: blue/green with 10 iterations, "
            "as Flagger sets",
            loss=False,
        )
    return {
        "blueGreen": {
            "activeService": svc_name,
            "previewService": f"{svc_name}-canary",
            "prePromotionChecks": iterations + 1,
        }
    }


def _weights(analysis: JSON) -> list[int]:
    """The canary weights Flagger's runCanary walks through: ``stepWeights`` as listed;
    else ``stepWeight`` added while the weight is under ``maxWeight``, capped at 100 only
    (maxWeight 50 by 20s: 20, 40, 60; Flagger promotes once the weight reaches maxWeight)."""
    if analysis.get("stepWeights"):
        return [min(int(w), 100) for w in analysis["stepWeights"]]
    step = int(analysis.get("stepWeight") or 10)
    top = min(int(analysis.get("maxWeight") or 100), 100)
    weights: list[int] = []
    while step > 0 and (not weights or weights[-1] < top):
        weights.append(min((weights[-1] if weights else 0) + step, 100))
    return weights


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


def _webhooks(hooks: list[JSON], interval: float, notes: Notes) -> list[JSON]:
    """Flagger calls its webhooks on its ticks: the gates (confirm-*, rollback) are polled
    every analysis interval; ``rollout`` webhooks run in each check, ``pre-rollout`` until
    they pass (``engine.checks``)."""
    out = []
    for i, hook in enumerate(hooks):
        path = f"spec.analysis.webhooks[{i}]"
        converted = {k: copy.deepcopy(hook[k]) for k in _WEBHOOK if k in hook}
        converted.setdefault("type", "rollout")
        name = str(hook.get("name") or f"webhook-{i}")
        converted["name"] = _slug(name)
        if converted["name"] != name:
            notes.change(f"{path}.name", f"{name!r} is written {converted['name']!r}", loss=False)
        if converted["type"] not in _TYPES:
            notes.drop(path, f"webhook type {converted['type']} is not supported")
            continue
        notes.rest(hook, path, _WEBHOOK)
        converted["interval"] = models.format_duration(interval)
        out.append(converted)
    return out


_TYPES = {"confirm-rollout", "pre-rollout", "rollout", "confirm-promotion", "post-rollout"}
_TYPES |= {"rollback", "event", "confirm-traffic-increase"}
