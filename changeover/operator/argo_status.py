"""The Argo Rollout's ``.status``, written from its changeover Rollout, and the Argo fields
``kubectl argo rollouts`` patches, read back as commands. Pure functions.

``kubectl argo rollouts get/status`` and Argo CD's health check (resource_customizations/
argoproj.io/Rollout/health.lua) read ``status.phase``/``message`` once
``status.observedGeneration`` (a string in Argo's types) equals ``metadata.generation``;
``get`` also shows ``currentStepIndex``, ``canary.weights`` (written, as Argo does, only
with a ``trafficRouting``), the replica counts and the
ReplicaSet hashes (``stableRS``, ``currentPodHash``). Our ``Aborted`` is Argo's
``Degraded`` with a ``RolloutAborted:`` message, as Argo writes it.

The plugin's commands are merge patches (pkg/kubectl-argo-rollouts/cmd/promote, abort,
retry); each is told from what this module wrote by a marker Argo's controller uses too:

    promote          pauseConditions: null while controllerPause stays true (we write both
                     when paused), or currentStepIndex moved past ours on the same pod hash
                     (not in a status written while aborted: a retry restarts at step 0)
    promote --full   promoteFull: true            (index >= number of steps: the same)
    abort            abort: true without abortedAt (we write both when aborted)
    retry            abort: false with abortedAt still there
    pause / unpause  spec.paused, carried into the changeover Rollout by the converter
"""

from __future__ import annotations

import datetime
from typing import Any, Literal

from changeover.engine.phases import Phase
from changeover.engine.status import RolloutStatus
from changeover.platforms.kubernetes.replicasets import Counts

JSON = dict[str, Any]
Command = Literal["promote", "promote-full", "abort", "retry"]
_PAUSE_REASONS = {
    "step": "CanaryPauseStep",
    "promotion": "BlueGreenPause",
    "inconclusive": "InconclusiveAnalysisRun",
}


def stamp(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def commands(argo: JSON, ours: RolloutStatus, *, target_hash: str) -> list[Command]:
    """What a user asked of the Argo Rollout since this module last wrote its status."""
    st = argo.get("status") or {}
    out: list[Command] = []
    in_flight = ours.stable_revision != ours.target_revision or ours.phase != Phase.HEALTHY
    if st.get("abort") is True and not st.get("abortedAt"):
        if ours.phase != Phase.ABORTED and not ours.abort and in_flight:
            out.append("abort")
        return out
    if not st.get("abort") and st.get("abortedAt") and ours.phase == Phase.ABORTED:
        return ["retry"]
    if not in_flight or ours.phase == Phase.ABORTED or ours.abort:
        return out
    steps = _step_count(argo)
    index = st.get("currentStepIndex")
    same_revision = st.get("currentPodHash") == target_hash
    if st.get("promoteFull") is True:
        if ours.promote != "full":
            out.append("promote-full")
        return out
    # Only a canary's status carries our step index (blue-green's stages are internal).
    same_step = steps is None or index == ours.current_step_index
    # An index written while aborted is the aborted attempt's: a retry starts ours over from
    # step 0 on the same pod hash, so that index being ahead of ours is no promote.
    if (
        steps is not None
        and same_revision
        and not st.get("abortedAt")
        and isinstance(index, int)
        and ours.current_step_index is not None
        and index > ours.current_step_index
    ):
        out.append("promote-full" if steps is not None and index >= steps else "promote")
    elif (
        same_revision
        and st.get("controllerPause") is True
        and not st.get("pauseConditions")
        and ours.phase == Phase.PAUSED
        and ours.pause is not None
        and ours.pause.reason != "user"
        and same_step
        and ours.promote is None
    ):
        out.append("promote")
    return out


def _step_count(argo: JSON) -> int | None:
    canary = ((argo.get("spec") or {}).get("strategy") or {}).get("canary")
    if not isinstance(canary, dict):
        return None
    steps = canary.get("steps")
    return len(steps) if isinstance(steps, list) else 0


def status(
    argo: JSON,
    ours: RolloutStatus,
    counts: dict[int, Counts],
    *,
    observed_generation: str | None,
    now: float,
) -> JSON:
    """The Argo Rollout's status for the changeover Rollout's ``ours`` and ReplicaSets."""
    previous = argo.get("status") or {}
    spec = argo.get("spec") or {}
    hashes = {rev: c.pod_hash for rev, c in counts.items()}
    target = hashes.get(ours.target_revision or -1, "")
    stable = hashes.get(ours.stable_revision or -1, "")
    phase, message = _phase(ours)
    out: JSON = {
        "phase": phase,
        "message": message,
        "observedGeneration": observed_generation or previous.get("observedGeneration"),
        "replicas": sum(c.desired for c in counts.values()),
        "readyReplicas": sum(c.ready for c in counts.values()),
        "availableReplicas": sum(c.available for c in counts.values()),
        "updatedReplicas": counts[ours.target_revision].ready
        if ours.target_revision in counts
        else 0,
        "currentPodHash": target,
        "stableRS": stable,
        "selector": _selector(spec),
    }
    strategy = spec.get("strategy") or {}
    if isinstance(strategy.get("canary"), dict):
        out.update(_canary(strategy["canary"], ours, hashes, target, stable))
    elif isinstance(strategy.get("blueGreen"), dict):
        out["blueGreen"] = _blue_green(ours, hashes, target)
    if ours.phase == Phase.PAUSED and ours.pause is not None and ours.pause.reason != "user":
        reason = _PAUSE_REASONS[ours.pause.reason]
        before = {c.get("reason"): c for c in previous.get("pauseConditions") or []}
        started = (before.get(reason) or {}).get("startTime") or stamp(ours.pause.started_at)
        out["pauseConditions"] = [{"reason": reason, "startTime": started}]
        out["controllerPause"] = True
    if ours.phase == Phase.ABORTED:
        out["abort"] = True
        out["abortedAt"] = previous.get("abortedAt") or stamp(ours.aborted_at or now)
    out["conditions"] = _conditions(ours, counts, spec, previous, now)
    return {k: v for k, v in out.items() if v not in (None, "")}


def _phase(ours: RolloutStatus) -> tuple[str, str]:
    match ours.phase:
        case Phase.ABORTED:
            return "Degraded", f"RolloutAborted: {ours.message}".rstrip(": ")
        case Phase.DEGRADED if ours.deadline_exceeded:
            return "Degraded", f"ProgressDeadlineExceeded: {ours.message}".rstrip(": ")
        case Phase.PAUSED if ours.pause is not None and ours.pause.reason != "user":
            return "Paused", _PAUSE_REASONS[ours.pause.reason]
        case Phase.PAUSED:
            return "Paused", "manually paused"
    return str(ours.phase), ours.message if ours.phase != Phase.HEALTHY else ""


def _selector(spec: JSON) -> str:
    labels = (spec.get("selector") or {}).get("matchLabels") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()) if isinstance(v, str))


def _canary(
    canary: JSON, ours: RolloutStatus, hashes: dict[int, str], target: str, stable: str
) -> JSON:
    steps = canary.get("steps") if isinstance(canary.get("steps"), list) else []
    done = ours.phase == Phase.HEALTHY and ours.stable_revision == ours.target_revision
    out: JSON = {}
    if steps:
        index = len(steps) if done else ours.current_step_index
        if index is not None:
            out["currentStepIndex"] = min(int(index), len(steps))
    if not canary.get("trafficRouting"):
        # Without a traffic router Argo writes no weights: the plugin works the canary's
        # share out from the ReplicaSets' available replicas.
        return out
    weights = {int(rev): pct for rev, pct in ours.traffic.weights.items()}
    canary_rev = ours.canary_revision
    canary_weight = weights.get(canary_rev, 0) if canary_rev is not None and not done else 0
    canary_hash = hashes.get(canary_rev, target) if canary_rev is not None and not done else stable
    out["canary"] = {
        "weights": {
            "canary": _destination(canary_weight, canary_hash, canary.get("canaryService")),
            "stable": _destination(100 - canary_weight, stable, canary.get("stableService")),
        }
    }
    return out


def _destination(weight: int, pod_hash: str, service: Any) -> JSON:
    out: JSON = {"weight": weight}
    if pod_hash:
        out["podTemplateHash"] = pod_hash
    if isinstance(service, str) and service:
        out["serviceName"] = service
    return out


def _blue_green(ours: RolloutStatus, hashes: dict[int, str], target: str) -> JSON:
    weights = {int(rev): pct for rev, pct in ours.traffic.weights.items()}
    active_rev = max(weights, key=lambda r: weights[r]) if weights else ours.stable_revision
    active = hashes.get(active_rev if active_rev is not None else -1, "")
    out = {"activeSelector": active}
    if target and target != active:
        out["previewSelector"] = target
    elif active:
        out["previewSelector"] = active
    return {k: v for k, v in out.items() if v}


def _conditions(
    ours: RolloutStatus, counts: dict[int, Counts], spec: JSON, previous: JSON, now: float
) -> list[JSON]:
    desired = spec.get("replicas", 1)
    available = sum(c.available for c in counts.values())
    healthy = ours.phase == Phase.HEALTHY
    completed = healthy and ours.stable_revision == ours.target_revision
    paused = ours.phase == Phase.PAUSED
    if ours.phase == Phase.ABORTED:
        progressing = ("False", "RolloutAborted", ours.message or "Rollout aborted")
    elif ours.phase == Phase.DEGRADED and ours.deadline_exceeded:
        progressing = ("False", "ProgressDeadlineExceeded", ours.message)
    elif paused:
        progressing = ("Unknown", "RolloutPaused", "Rollout is paused")
    elif completed:
        progressing = ("True", "NewReplicaSetAvailable", "Rollout has successfully progressed")
    else:
        progressing = ("True", "ReplicaSetUpdated", ours.message or "Rollout is progressing")
    wanted = [
        ("Progressing", *progressing),
        (
            "Available",
            "True" if isinstance(desired, int) and available >= desired else "False",
            "AvailableReason",
            "Rollout has minimum availability"
            if isinstance(desired, int) and available >= desired
            else "Rollout does not have minimum availability",
        ),
        ("Paused", "True" if paused else "False", "RolloutPaused", "Rollout is paused"),
        (
            "Healthy",
            "True" if healthy else "False",
            "RolloutHealthy",
            "Rollout is healthy" if healthy else "Rollout is not healthy",
        ),
        (
            "Completed",
            "True" if completed else "False",
            "RolloutCompleted",
            "Rollout completed update to revision"
            if completed
            else "Rollout not completed, started update to new revision",
        ),
    ]
    before = {c.get("type"): c for c in previous.get("conditions") or [] if isinstance(c, dict)}
    out = []
    for kind, state, reason, message in wanted:
        old = before.get(kind) or {}
        same = old.get("status") == state and old.get("reason") == reason
        changed = not same or old.get("message") != message
        out.append(
            {
                "type": kind,
                "status": state,
                "reason": reason,
                "message": message,
                "lastTransitionTime": (old.get("lastTransitionTime") if same else None)
                or stamp(now),
                "lastUpdateTime": (old.get("lastUpdateTime") if not changed else None)
                or stamp(now),
            }
        )
    return out


def invalid(argo: JSON, message: str, *, now: float) -> JSON:
    """The status of an Argo Rollout that cannot be converted: Degraded, with Argo's
    ``InvalidSpec`` condition (what Argo CD and the plugin show for one)."""
    previous = argo.get("status") or {}
    old: JSON = next(
        (c for c in previous.get("conditions") or [] if c.get("type") == "InvalidSpec"), {}
    )
    when = old.get("lastTransitionTime") or stamp(now)
    return {
        **{k: v for k, v in previous.items() if k not in ("phase", "message", "conditions")},
        "phase": "Degraded",
        "message": f"InvalidSpec: {message}",
        "observedGeneration": str((argo.get("metadata") or {}).get("generation") or ""),
        "conditions": [
            {
                "type": "InvalidSpec",
                "status": "True",
                "reason": "InvalidSpec",
                "message": message,
                "lastTransitionTime": when,
                "lastUpdateTime": when if old.get("message") == message else stamp(now),
            }
        ],
    }
