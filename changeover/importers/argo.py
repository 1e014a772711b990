"""Argo Rollouts → changeover: ``Rollout`` and ``AnalysisTemplate`` (argoproj.io/v1alpha1).

Carried over: replicas, minReadySeconds, progressDeadlineSeconds, revisionHistoryLimit,
paused, the pod template; canary steps (setWeight, pause, setCanaryScale, setHeaderRoute,
setMirrorRoute with header matches, or without a match as the removal it is in Argo;
a method or path match is refused, analysis), maxSurge/maxUnavailable,
abortScaleDownDelaySeconds, background analysis, canaryService/stableService (as
``service.canaryName``/``service.name``); trafficRouting istio / nginx / smi / the Gateway
API plugin; blueGreen's services, promotion settings and pre/post-promotion analysis;
AnalysisTemplates (same shape; an argument's ``valueFrom.secretKeyRef`` stays a reference,
read from the Secret when a run starts on Kubernetes). Everything else is reported, field
by field. ``kubectl``'s ``last-applied-configuration`` and Argo's ``rollout.argoproj.io/*``
annotations are state of the source object and are not carried. progressDeadlineAbort,
rollbackWindow and the canary's scaleDownDelaySeconds carry over as they are (same names,
same meaning).

``spec.service.port`` has no Argo counterpart: it is the first containerPort (noted). A basic
canary (no trafficRouting, canaryService or stableService) gets no ``spec.service``: as
under Argo, the operator then leaves the user's own Service alone.
"""

from __future__ import annotations

import copy
from typing import Any

from changeover import errors
from changeover.importers.report import Notes, Result

JSON = dict[str, Any]
API = "changeover.dev/v1alpha1"

_TOP = {
    "replicas",
    "minReadySeconds",
    "progressDeadlineSeconds",
    "progressDeadlineAbort",
    "rollbackWindow",
    "revisionHistoryLimit",
    "paused",
    "template",
    "strategy",
    "selector",
    "workloadRef",
}
_CANARY = {
    "steps",
    "maxSurge",
    "maxUnavailable",
    "abortScaleDownDelaySeconds",
    "scaleDownDelaySeconds",
    "analysis",
    "canaryService",
    "stableService",
    "trafficRouting",
}
_BLUE_GREEN = {
    "activeService",
    "previewService",
    "autoPromotionEnabled",
    "autoPromotionSeconds",
    "scaleDownDelaySeconds",
    "previewReplicaCount",
    "prePromotionAnalysis",
    "postPromotionAnalysis",
}
_ANALYSIS = {"templates", "args", "dryRun", "measurementRetention"}


def _metadata(doc: JSON, notes: Notes) -> JSON:
    meta = doc.get("metadata") or {}
    out: JSON = {"name": meta.get("name")}
    for key in ("namespace", "labels", "annotations"):
        if meta.get(key):
            out[key] = copy.deepcopy(meta[key])
    # kubectl's copy of the applied manifest and Argo's controller bookkeeping are state
    # of the source object, not part of the rollout (and would be stale at once).
    kept = {k: v for k, v in (out.get("annotations") or {}).items() if not _state_annotation(k)}
    if kept:
        out["annotations"] = kept
    else:
        out.pop("annotations", None)
    for key in meta:
        if key not in (
            "name",
            "namespace",
            "labels",
            "annotations",
            "creationTimestamp",
            "generation",
            "resourceVersion",
            "uid",
            "managedFields",
            "selfLink",
        ):
            notes.drop(f"metadata.{key}", "not carried over")
    return out


def _state_annotation(key: str) -> bool:
    return key == "kubectl.kubernetes.io/last-applied-configuration" or key.startswith(
        "rollout.argoproj.io/"
    )


def _duration(value: Any) -> Any:
    """Argo writes pause durations as "30s", "5m", "1h" or bare seconds: all ours too."""
    return value


def _analysis(block: JSON, path: str, notes: Notes) -> JSON:
    out = {k: copy.deepcopy(v) for k, v in block.items() if k in _ANALYSIS}
    if "templateName" in block:
        # Argo Rollouts before v0.9 named one template here; later ones list them.
        out["templates"] = [*(out.get("templates") or []), {"templateName": block["templateName"]}]
        notes.change(
            f"{path}.templateName", "written as templates: [{templateName: ...}]", loss=False
        )
    if "args" in out:
        out["args"] = _args(out["args"], f"{path}.args", notes)
    for template in out.get("templates") or []:
        if template.get("clusterScope"):
            notes.change(
                f"{path}.templates",
                "clusterScope: serve --argo-rollouts reads the ClusterAnalysisTemplate; "
                "elsewhere the AnalysisTemplate of that name",
                loss=False,
            )
    if "startingStep" in block:
        out["startingStep"] = block["startingStep"]
    notes.rest(block, path, _ANALYSIS | {"startingStep", "templateName"})
    return out


def _match(headers: JSON) -> list[JSON]:
    return [{"headerName": name, "headerValue": dict(value)} for name, value in headers.items()]


def _step(step: JSON, path: str, notes: Notes) -> JSON | None:
    if "setWeight" in step:
        return {"setWeight": step["setWeight"]}
    if "pause" in step:
        pause = step.get("pause") or {}
        return {"pause": {"duration": _duration(pause["duration"])} if "duration" in pause else {}}
    if "setCanaryScale" in step:
        return {"setCanaryScale": dict(step["setCanaryScale"])}
    if "setHeaderRoute" in step:
        route = step["setHeaderRoute"]
        return {
            "setHeaderRoute": {
                "name": route["name"],
                "match": [
                    {"headerName": m["headerName"], "headerValue": dict(m["headerValue"])}
                    for m in route.get("match") or []
                ],
            }
        }
    if "setMirrorRoute" in step:
        return {
            "setMirrorRoute": _mirror(
                step["setMirrorRoute"], f"{path}.setMirrorRoute", notes.source
            )
        }
    if "analysis" in step:
        return {"analysis": _analysis(step["analysis"], f"{path}.analysis", notes)}
    if "setHeaderRouting" in step:
        return _header_routing(step["setHeaderRouting"] or {}, f"{path}.setHeaderRouting", notes)
    kind = next(iter(step), "?")
    notes.drop(
        f"{path}.{kind}",
        _UNSUPPORTED_STEPS.get(kind, f"{kind} steps are not supported")
        + "; the step is left out and the rollout goes on to the next one",
    )
    return None


def _mirror(mirror: JSON, path: str, source: str) -> JSON:
    """Argo's setMirrorRoute. Without ``match`` it removes the mirror route (Argo requires a
    match so that a bare step never mirrors everything): ``percentage: 0``, which removes it
    here too. A match by ``method`` or ``path`` cannot be carried: dropping it would mirror
    requests the user did not ask to mirror, so the import is refused, naming the field."""
    if not mirror.get("match"):
        return {"name": mirror["name"], "percentage": 0}
    matches: list[JSON] = []
    for j, m in enumerate(mirror["match"]):
        for key in m:
            if key != "headers":
                raise errors.SpecError.single(
                    file=source,
                    path=f"{path}.match[{j}].{key}",
                    message=f"changeover's mirroring matches requests by headers only; "
                    f"without its {key} match this route would copy requests it does not "
                    "select to the canary (match by headers, or leave the step out)",
                )
        if not m.get("headers"):
            raise errors.SpecError.single(
                file=source,
                path=f"{path}.match[{j}]",
                message="expected headers: an empty match would mirror every request",
            )
        matches += _match(m["headers"])
    return {"name": mirror["name"], "match": matches, "percentage": mirror.get("percentage", 100)}


_UNSUPPORTED_STEPS = {
    "experiment": "an Experiment (extra baseline/canary ReplicaSets with their own analysis) "
    "has no changeover counterpart: run its analyses as an analysis step instead",
    "plugin": "step plugins are Argo Rollouts controller plug-ins",
}
# The route name Argo Rollouts gave the pre-1.4 ``setHeaderRouting`` step's route.
HEADER_ROUTE = "argo-rollouts-header-route"


def _header_routing(block: JSON, path: str, notes: Notes) -> JSON:
    """Argo Rollouts' alpha ``setHeaderRouting`` (one unnamed route; ``headerValue`` a string
    or ``headerRegex``) as ``setHeaderRoute``; ``{}`` removes the route, as it did."""
    matches = []
    for j, m in enumerate(block.get("match") or []):
        if "headerRegex" in m:
            value: JSON = {"regex": m["headerRegex"]}
        elif isinstance(m.get("headerValue"), dict):
            value = dict(m["headerValue"])
        else:
            value = {"exact": str(m.get("headerValue", ""))}
        matches.append({"headerName": m.get("headerName"), "headerValue": value})
        notes.rest(m, f"{path}.match[{j}]", {"headerName", "headerValue", "headerRegex"})
    notes.change(path, f"written as setHeaderRoute named {HEADER_ROUTE}", loss=False)
    return {"setHeaderRoute": {"name": HEADER_ROUTE, "match": matches}}


def _traffic(routing: JSON, path: str, notes: Notes, service: JSON) -> JSON | None:
    if "istio" in routing:
        istio = routing["istio"]
        out: JSON = {}
        vs_path = f"{path}.istio.virtualService"
        vs: JSON = {}
        if "virtualService" in istio:
            vs = dict(istio["virtualService"])
        elif istio.get("virtualServices"):
            vs = dict(istio["virtualServices"][0])
            vs_path = f"{path}.istio.virtualServices[0]"
            for i in range(1, len(istio["virtualServices"])):
                notes.drop(f"{path}.istio.virtualServices[{i}]", "one VirtualService per rollout")
        if vs:
            # changeover steers HTTP routes only: TLS/TCP routes are reported, not carried
            out["virtualService"] = {k: v for k, v in vs.items() if k in ("name", "routes")}
            notes.rest(vs, vs_path, {"name", "routes"}, "changeover steers HTTP routes only")
        if "destinationRule" in istio:
            dr = dict(istio["destinationRule"])
            known = {"name", "stableSubsetName", "canarySubsetName"}
            out["destinationRule"] = {k: v for k, v in dr.items() if k in known}
            notes.rest(dr, f"{path}.istio.destinationRule", known)
        notes.rest(istio, f"{path}.istio", {"virtualService", "virtualServices", "destinationRule"})
        result = {"istio": out}
    elif "nginx" in routing:
        nginx = routing["nginx"]
        result = {"nginx": {"stableIngress": nginx["stableIngress"]}}
        notes.rest(nginx, f"{path}.nginx", {"stableIngress"})
    elif "smi" in routing:
        result = {
            "smi": {
                k: v for k, v in routing["smi"].items() if k in ("rootService", "trafficSplitName")
            }
        }
        notes.rest(routing["smi"], f"{path}.smi", {"rootService", "trafficSplitName"})
    elif _gateway_plugin(routing) is not None:
        where, plugin = _gateway_plugin(routing) or ("", {})
        result = {"gatewayAPI": {"httpRoute": _http_route(plugin, f"{path}.{where}", notes)}}
        notes.rest(plugin, f"{path}.{where}", {"httpRoute", "httpRoutes", "namespace"})
    else:
        for key in routing:
            notes.drop(
                f"{path}.{key}",
                f"the {key} router is not supported: the canary's "
                "weight will follow its share of replicas",
            )
        return None
    if "managedRoutes" in routing:
        notes.change(
            f"{path}.managedRoutes",
            "not needed: changeover records the routes it "
            "adds (annotation changeover.dev/managed-routes) and removes exactly those",
            loss=False,
        )
    for key in routing:
        if key not in ("istio", "nginx", "smi", "plugins", "plugin", "managedRoutes"):
            notes.drop(f"{path}.{key}", "one router per rollout")
    return result


def _gateway_plugin(routing: JSON) -> tuple[str, JSON] | None:
    """The Gateway API plug-in's settings: ``plugins: {argoproj-labs/gatewayAPI: ...}`` (or
    the early docs' ``plugin: {gatewayAPI: ...}``) and where they were."""
    for group in ("plugins", "plugin"):
        for key, value in (routing.get(group) or {}).items():
            if "gatewayAPI" in key and isinstance(value, dict):
                return f"{group}.{key}", value
    return None


def _http_route(plugin: JSON, path: str, notes: Notes) -> Any:
    if "namespace" in plugin:
        notes.change(f"{path}.namespace", "the HTTPRoute is read in the Rollout's own namespace")
    if plugin.get("httpRoute"):
        return plugin["httpRoute"]
    routes = plugin.get("httpRoutes") or [{}]
    notes.change(f"{path}.httpRoutes[0].name", "written as httpRoute", loss=False)
    for i in range(1, len(routes)):
        notes.drop(f"{path}.httpRoutes[{i}]", "one HTTPRoute per rollout")
    if "useHeaderRoutes" in routes[0]:
        notes.change(f"{path}.httpRoutes[0].useHeaderRoutes", "header routes are always allowed")
    return routes[0].get("name")


def rollout(doc: JSON, source: str, deployments: dict[str, JSON] | None = None) -> Result:
    notes = Notes(source)
    spec = doc.get("spec") or {}
    out_spec: JSON = {
        k: spec[k]
        for k in (
            "replicas",
            "minReadySeconds",
            "progressDeadlineSeconds",
            "progressDeadlineAbort",
            "rollbackWindow",
            "revisionHistoryLimit",
            "paused",
        )
        if k in spec
    }
    template = copy.deepcopy(spec.get("template") or {})
    if "workloadRef" in spec:
        ref = str((spec.get("workloadRef") or {}).get("name"))
        deployment = (deployments or {}).get(ref)
        if deployment is not None:
            template = copy.deepcopy((deployment.get("spec") or {}).get("template") or {})
            notes.change(
                "spec.workloadRef",
                f"Deployment {ref}'s pod template moved into "
                "spec.template (scale the Deployment to 0 once the Rollout runs)",
            )
        else:
            notes.change(
                "spec.workloadRef",
                f"Deployment {ref} is not among the imported "
                "documents: spec.template is a placeholder, fill in its pod template",
            )
    if not (template.get("spec") or {}).get("containers"):
        name = (doc.get("metadata") or {}).get("name", "app")
        template = {
            "metadata": template.get("metadata") or {"labels": {"app": name}},
            "spec": {"containers": [{"name": "app", "image": "REPLACE-ME"}]},
        }
    if "selector" in spec:
        notes.change(
            "spec.selector",
            "changeover selects pods by its own labels "
            "(changeover.dev/rollout, rollouts-pod-template-hash)",
            loss=False,
        )
    meta = template.get("metadata") or {}
    out_spec["template"] = {
        "metadata": {k: meta[k] for k in ("labels", "annotations") if k in meta},
        "spec": template.get("spec") or {},
    }
    port = _first_port(template)
    service: JSON = {"port": port or 80}
    strategy = spec.get("strategy") or {}
    # Argo's basic canary (no trafficRouting, no canary or stable Service) touches no
    # Service: the user's own selects every revision's pods. Without spec.service, ours too.
    canary_keys = set(strategy["canary"] or {}) if "canary" in strategy else {"-"}
    basic = not canary_keys & {"trafficRouting", "canaryService", "stableService", "-"}
    if not basic:
        notes.change(
            "spec.service.port",
            f"added as {port or 80} (the first containerPort"
            f"{'' if port else '; none is declared, so 80'}): the Services' port",
            loss=port is None,  # a guessed port is worth a look; the declared one is not
        )
    if "canary" in strategy:
        canary = strategy["canary"]
        out_canary: JSON = {
            k: canary[k]
            for k in (
                "maxSurge",
                "maxUnavailable",
                "abortScaleDownDelaySeconds",
                "scaleDownDelaySeconds",
            )
            if k in canary
        }
        steps = []
        for i, step in enumerate(canary.get("steps") or []):
            converted = _step(step, f"spec.strategy.canary.steps[{i}]", notes)
            if converted is not None:
                steps.append(converted)
        out_canary["steps"] = steps
        if "analysis" in canary:
            out_canary["analysis"] = _analysis(
                canary["analysis"], "spec.strategy.canary.analysis", notes
            )
        if "canaryService" in canary:
            service["canaryName"] = canary["canaryService"]
        if "stableService" in canary:
            service["name"] = canary["stableService"]
        if "trafficRouting" in canary:
            traffic = _traffic(
                canary["trafficRouting"], "spec.strategy.canary.trafficRouting", notes, service
            )
            if traffic is not None:
                out_spec["traffic"] = traffic
        notes.rest(canary, "spec.strategy.canary", _CANARY)
        out_spec["strategy"] = {"canary": out_canary}
    elif "blueGreen" in strategy:
        bg = strategy["blueGreen"]
        out_bg = {k: copy.deepcopy(v) for k, v in bg.items() if k in _BLUE_GREEN}
        for key in ("prePromotionAnalysis", "postPromotionAnalysis"):
            if key in bg:
                out_bg[key] = _analysis(bg[key], f"spec.strategy.blueGreen.{key}", notes)
        notes.rest(bg, "spec.strategy.blueGreen", _BLUE_GREEN)
        out_spec["strategy"] = {"blueGreen": out_bg}
    else:
        notes.drop("spec.strategy", "no canary or blueGreen: read as a rolling update")
        out_spec["strategy"] = {"rollingUpdate": {}}
    if not basic:
        out_spec["service"] = service
    notes.rest(spec, "spec", _TOP)
    body = {
        "apiVersion": API,
        "kind": "Rollout",
        "metadata": _metadata(doc, notes),
        "spec": out_spec,
    }
    return Result(documents=[body], notes=notes.items)


_METRIC = {
    "name",
    "interval",
    "initialDelay",
    "count",
    "successCondition",
    "failureCondition",
    "failureLimit",
    "inconclusiveLimit",
    "consecutiveErrorLimit",
    "provider",
}
_VALUE_FROM = {"podTemplateHashValue", "fieldRef", "secretKeyRef"}


def _args(args: list[JSON], path: str, notes: Notes) -> list[JSON]:
    out = []
    for i, arg in enumerate(args):
        kept = {k: copy.deepcopy(v) for k, v in arg.items() if k in ("name", "value", "default")}
        value_from = arg.get("valueFrom") or {}
        for key in value_from:
            if key not in _VALUE_FROM:
                notes.drop(
                    f"{path}[{i}].valueFrom.{key}",
                    "not supported (valueFrom takes podTemplateHashValue, fieldRef or "
                    "secretKeyRef)",
                )
        if any(k in _VALUE_FROM for k in value_from):
            kept["valueFrom"] = {k: v for k, v in value_from.items() if k in _VALUE_FROM}
        out.append(kept)
    return out


def analysis_template(doc: JSON, source: str) -> Result:
    notes = Notes(source)
    spec = copy.deepcopy(doc.get("spec") or {})
    known = {"metrics", "args", "dryRun", "measurementRetention"}
    notes.rest(spec, "spec", known)
    if "args" in spec:
        spec["args"] = _args(spec["args"], "spec.args", notes)
    metrics = []
    for i, metric in enumerate(spec.get("metrics") or []):
        if "maxFailures" in metric and "failureLimit" not in metric:
            # Argo Rollouts' name for failureLimit before v0.9.
            metric = {**metric, "failureLimit": metric["maxFailures"]}
            notes.change(f"spec.metrics[{i}].maxFailures", "written as failureLimit", loss=False)
        notes.rest(metric, f"spec.metrics[{i}]", _METRIC | {"maxFailures"})
        metrics.append({k: v for k, v in metric.items() if k in _METRIC})
    spec["metrics"] = _runnable(metrics, notes, source)
    body = {
        "apiVersion": API,
        "kind": "AnalysisTemplate",
        "metadata": _metadata(doc, notes),
        "spec": {k: v for k, v in spec.items() if k in known},
    }
    if doc.get("kind") == "ClusterAnalysisTemplate":
        notes.change("kind", "ClusterAnalysisTemplate imported as a namespaced AnalysisTemplate")
    return Result(documents=[body], notes=notes.items)


_PROVIDERS = ("prometheus", "web", "job")


def _runnable(metrics: list[JSON], notes: Notes, source: str) -> list[JSON]:
    """The metrics whose provider changeover has; the others are left out (noted). A
    template left with none is refused: it could only ever error."""
    kept = []
    for i, metric in enumerate(metrics):
        missing = [p for p in metric.get("provider") or {} if p not in _PROVIDERS]
        for provider in missing:
            notes.drop(
                f"spec.metrics[{i}].provider.{provider}",
                f"provider {provider} is not available (have: {', '.join(_PROVIDERS)}): "
                f"metric {metric.get('name')!r} is left out",
            )
        if not missing:
            kept.append(metric)
    if metrics and not kept:
        first = next(iter(metrics[0].get("provider") or {"?": None}))
        raise errors.SpecError.single(
            file=source,
            path=f"spec.metrics[0].provider.{first}",
            message=f"no metric of this template has a provider changeover has "
            f"({', '.join(_PROVIDERS)}): it could only ever error",
        )
    return kept


def _first_port(template: JSON) -> int | None:
    for container in (template.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if isinstance(port.get("containerPort"), int):
                return int(port["containerPort"])
    return None
