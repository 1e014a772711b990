"""Pieces several strategies share: converging on one revision, the final cut-over, holding
on stable after an abort, and waiting for promotion.

Called by ``engine.plan`` and the strategy modules with the plan's ``Draft``.
"""

from __future__ import annotations

from changeover.engine.draft import Draft, Phase, Reason
from changeover.spec import models

# Argo Rollouts' default scaleDownDelaySeconds for a traffic-routed canary: the router has
# switched, but a remote data plane (Istio, an ingress) may take a moment to follow.
DEFAULT_SCALE_DOWN_DELAY = 30.0


def abort_delay(spec: models.RolloutSpec) -> float:
    """How long an aborted revision keeps its replicas (abortScaleDownDelaySeconds)."""
    if spec.strategy.canary is not None:
        return spec.strategy.canary.abort_scale_down_delay_seconds
    return DEFAULT_SCALE_DOWN_DELAY


def converge(d: Draft) -> None:
    """One revision serves everything: the first revision ever, a Healthy rollout (which
    self-heals by rescaling) or a rollback to the stable revision. Healthy once available."""
    rev = d.stable if d.stable is not None else d.target
    d.scale(rev, d.replicas)
    d.set_weights({rev: 100})
    d.remove_managed_routes()
    d.preview(None)
    available = d.available(rev)
    if d.status.traffic.maintenance and available >= d.replicas:
        d.maintenance(False)
    if d.status.canary_revision is not None:
        d.update(canary_revision=None)
    if d.status.phase == Phase.HEALTHY:
        return
    if available < d.replicas:
        d.note(f"waiting for revision {rev}: {available}/{d.replicas} replicas available")
        return
    d.update(stable_revision=rev, canary_revision=None, current_step_index=None, pause=None)
    d.move_to(Phase.HEALTHY, f"revision {rev} is healthy")
    d.event(Reason.COMPLETED, f"Rollout completed: revision {rev} serves 100% of traffic", rev)


def promote_fully(d: Draft, *, delay: float) -> bool:
    """The final cut-over: once the new revision has all its replicas available it takes
    100% of traffic atomically, becomes stable, and the old one is scaled down ``delay``
    seconds later. False while still waiting for replicas."""
    new, old = d.target, d.stable
    d.scale(new, d.replicas)
    available = d.available(new)
    if available < d.replicas:
        d.note(f"promoting revision {new}: {available}/{d.replicas} replicas available")
        return False
    d.set_weights({new: 100})
    d.remove_managed_routes()
    d.preview(None)
    if old is not None and old != new:
        d.schedule_scale_down(old, d.now + delay)
    d.update(stable_revision=new, canary_revision=None, pause=None)
    d.move_to(Phase.HEALTHY, f"revision {new} is stable")
    d.event(Reason.COMPLETED, f"Rollout completed: revision {new} serves 100% of traffic", new)
    return True


def hold_stable(d: Draft) -> None:
    """Aborted: everything back on stable (atomically), managed routes and preview gone.
    The aborted revision is scaled down by ``status.scale_down_at`` (set when aborting)."""
    stable = d.stable
    if stable is None:
        return
    d.scale(stable, d.replicas)
    d.set_weights({stable: 100})
    d.remove_managed_routes()
    d.preview(None)


def wait_for_promotion(d: Draft, *, seconds: float | None, message: str) -> bool:
    """Paused (reason "promotion") until promote, or for ``seconds``. True once the timer
    has run out; the caller then leaves the pause. A promote request is handled by the
    caller before it gets here."""
    if seconds is not None and seconds <= 0:
        return True
    pause = d.status.pause
    if pause is None or pause.reason != "promotion":
        until = d.now + seconds if seconds is not None else None
        d.pause_for("promotion", until, message)
        return False
    return pause.until is not None and d.now >= pause.until


def run_for(d: Draft, *, duration: float | None, label: str) -> bool:
    """An experiment (A/B test, shadow) runs for ``duration`` while Progressing, or, with
    no duration, Paused until promote. True when its time is up."""
    if duration is None:
        wait_for_promotion(d, seconds=None, message=f"{label} running: waiting for promote")
        return False
    started = d.status.step_started_at if d.status.step_started_at is not None else d.now
    if d.now >= started + duration:
        return True
    d.deliberate_wait = True
    d.note(f"{label} running for {models.format_duration(duration)}")
    return False
