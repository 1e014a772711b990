"""What the operator writes into a Rollout's ``status`` besides the engine's status, and
the CLI's status document (``rollout_service``) built from a Rollout and its ReplicaSets.

The engine's ``RolloutStatus`` is stored as is (camelCase), so a restarted or failed-over
operator resumes from it; next to it go the fields people and ``kubectl`` read:

    stepText "2/4"   weightsText "1:80 2:20"   observedGeneration   replicas / readyReplicas
    selector (for the scale subresource)   lastRevision (the highest revision number used)
"""

from __future__ import annotations

from typing import Any

from changeover.engine.status import RolloutStatus
from changeover.kube import names
from changeover.platforms.kubernetes.replicasets import Counts
from changeover.spec import models

JSON = dict[str, Any]


def total_steps(rollout: models.Rollout) -> int | None:
    canary = rollout.spec.strategy.canary
    return len(canary.steps) if canary is not None else None


def step_text(status: RolloutStatus, total: int | None) -> str:
    if status.current_step_index is None or not total:
        return "-"
    return f"{min(status.current_step_index + 1, total)}/{total}"


def weights_text(status: RolloutStatus) -> str:
    return " ".join(f"{rev}:{pct}" for rev, pct in sorted(status.traffic.weights.items())) or "-"


def status_body(
    *,
    rollout: models.Rollout,
    status: RolloutStatus,
    counts: dict[int, Counts],
    generation: int,
    last_revision: int,
) -> JSON:
    body: JSON = status.to_json_dict()
    body.update(
        stepText=step_text(status, total_steps(rollout)),
        weightsText=weights_text(status),
        observedGeneration=generation,
        replicas=sum(c.desired for c in counts.values()),
        readyReplicas=sum(c.ready for c in counts.values()),
        selector=f"{names.ROLLOUT_LABEL}={rollout.name}",
        lastRevision=last_revision,
    )
    return body


def status_document(
    obj: JSON,
    rollout: models.Rollout | None,
    counts: dict[int, Counts],
    *,
    error: str = "",
    ports: dict[str, int] | None = None,
) -> JSON:
    """The JSON contract of ``changeover status NAME -o json`` for a Rollout resource;
    ``ports``: Service name → the port the Service in the cluster listens on (an adopted
    Service keeps its own port, which the endpoints show over ``spec.service.port``)."""
    raw = obj.get("status") or {}
    status = RolloutStatus.model_validate(raw)
    meta = obj["metadata"]
    name, namespace = meta["name"], meta["namespace"]
    strategy = rollout.spec.strategy.name if rollout is not None else status.strategy
    port = rollout.spec.service.port if rollout is not None else None
    stable_svc = names.stable_service(name, rollout.spec.service.name if rollout else None)
    preview = None
    if rollout is not None and rollout.spec.strategy.blue_green is not None:
        bg = rollout.spec.strategy.blue_green
        stable_svc = bg.active_service or stable_svc
        preview_svc = names.preview_service(name, bg.preview_service)
        preview_port = (ports or {}).get(preview_svc, port)
        preview = f"http://{preview_svc}.{namespace}.svc:{preview_port}"
    stable_port = (ports or {}).get(stable_svc, port)
    updated = meta.get("managedFields") or []
    return {
        "name": name,
        "namespace": namespace,
        "phase": str(status.phase) if raw.get("phase") else "Progressing",
        "message": status.message or ("waiting for the operator" if not raw else ""),
        "error": error or raw.get("error") or None,
        "strategy": strategy,
        "revision": status.target_revision,
        "stableRevision": status.stable_revision,
        "canaryRevision": status.canary_revision,
        "currentStepIndex": status.current_step_index,
        "totalSteps": total_steps(rollout) if rollout is not None else None,
        "weights": dict(status.traffic.weights),
        "replicas": {
            str(rev): c.ready for rev, c in sorted(counts.items()) if c.desired or c.ready
        },
        "desiredReplicas": rollout.spec.replicas if rollout is not None else None,
        "analysis": raw.get("analysis") or {},
        "endpoint": f"http://{stable_svc}.{namespace}.svc:{stable_port}" if port else None,
        "previewEndpoint": preview,
        "pause": status.pause.model_dump(mode="json", by_alias=True) if status.pause else None,
        "abort": status.abort,
        "userPaused": status.user_paused,
        "observedGeneration": raw.get("observedGeneration"),
        "generation": meta.get("generation"),
        "updatedAt": epoch(updated[-1].get("time") if updated else meta.get("creationTimestamp")),
    }


def parse_rollout(obj: JSON) -> models.Rollout:
    """The Rollout resource as the spec models read it (ValidationError if it is invalid)."""
    meta = obj["metadata"]
    return models.Rollout.model_validate(
        {
            "apiVersion": obj.get("apiVersion", models.API_VERSION),
            "kind": "Rollout",
            "metadata": {
                "name": meta["name"],
                "namespace": meta.get("namespace", "default"),
                "labels": meta.get("labels") or {},
                "annotations": {
                    k: v
                    for k, v in (meta.get("annotations") or {}).items()
                    if k != "kubectl.kubernetes.io/last-applied-configuration"
                },
            },
            "spec": obj.get("spec") or {},
        }
    )


def epoch(stamp: object) -> float | None:
    """Kubernetes' RFC 3339 timestamps as the epoch seconds the CLI renders."""
    import datetime

    if not isinstance(stamp, str):
        return None
    try:
        return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def service_port(svc: JSON, target_port: int | None) -> int | None:
    """The port a Service listens on for ``target_port`` (its first port if none targets
    it); None for a Service with no usable port."""
    found = [p for p in (svc.get("spec") or {}).get("ports") or [] if isinstance(p, dict)]
    chosen = [p for p in found if p.get("targetPort") == target_port] or found
    port = chosen[0].get("port") if chosen else None
    return port if isinstance(port, int) and not isinstance(port, bool) else None
