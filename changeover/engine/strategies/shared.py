"""Pieces several strategies share: converging on one revision, the final cut-over, holding
on stable after an abort, waiting for promotion, and acting on an analysis verdict.

Called by ``engine.plan`` and the strategy modules with the plan's ``Draft``.
"""

from __future__ import annotations

from typing import Literal

from changeover.engine import checks, runs
from changeover.engine.draft import Draft, Phase, Reason
from changeover.engine.strategies import basic_canary
from changeover.spec import analysis as spec_analysis
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


def promote_fully(d: Draft, *, delay: float, confirm: bool = True) -> bool:
    """The final cut-over: once the new revision has all its replicas available (and the
    confirm-promotion webhooks passed, unless ``confirm`` is False because they already
    did) it takes 100% of traffic atomically, becomes stable, and the old one is scaled
    down ``delay`` seconds later. False while still waiting."""
    new, old = d.target, d.stable
    d.scale(new, d.replicas)
    available = d.available(new)
    if available < d.replicas:
        d.note(f"promoting revision {new}: {available}/{d.replicas} replicas available")
        return False
    if confirm and old is not None and old != new and not confirmed(d, "confirm-promotion"):
        return False
    d.set_weights({new: 100})
    d.remove_managed_routes()
    d.preview(None)
    if old is not None and old != new:
        d.schedule_scale_down(old, d.now + delay)
    d.update(stable_revision=new, canary_revision=None, pause=None)
    d.move_to(Phase.HEALTHY, f"revision {new} is stable")
    d.event(Reason.COMPLETED, f"Rollout completed: revision {new} serves 100% of traffic", new)
    if old is not None and old != new:
        runs.notify(d, "post-rollout")
    return True


def confirmed(d: Draft, kind: str, *, suffix: str = "") -> bool:
    """A confirm-* webhook gate: True once every webhook of ``kind`` passed; meanwhile the
    rollout waits (on purpose: no progress deadline) and says what it waits for."""
    state, why = runs.gate(d, kind, suffix=suffix)
    if state == "passed":
        return True
    d.deliberate_wait = True
    d.note(why)
    return False


def abort(d: Draft, message: str) -> None:
    """Abort on a verdict (failed analysis, failed or triggered webhook): everything back
    on stable now, the new revision scaled down after abortScaleDownDelaySeconds."""
    in_flight = d.status.canary_revision
    traffic_routed = d.spec.strategy.name not in ("rollingUpdate", "recreate")
    if in_flight is not None and traffic_routed:
        d.schedule_scale_down(in_flight, d.now + abort_delay(d.spec))
    d.update(aborted_at=d.now, pause=None, promote=None)
    text = f"Rollout aborted: {message}"
    d.move_to(Phase.ABORTED, text)
    d.event(Reason.ABORTED, text, d.target)
    if traffic_routed:  # the others roll back replica by replica from the next plan on
        hold_stable(d)
    runs.notify(d, "post-rollout")


Verdict = Literal["passed", "waiting", "stopped"]


def analysis(
    d: Draft,
    point: str,
    spec: spec_analysis.RolloutAnalysis,
    *,
    kind: str,
    what: str,
    blocking: bool = True,
) -> Verdict:
    """Run ``spec`` and act on its verdict: Successful → passed; Failed or Error → the
    rollout aborts; Inconclusive → paused for a human (promote goes on, abort rolls
    back); else waiting. "stopped" means the caller must not go on this tick."""
    phase, message = runs.analysis(d, point, spec, kind=kind, blocking=blocking)
    if phase == "Successful":
        return "passed"
    if phase in ("Failed", "Error"):
        abort(d, f"{what} analysis {phase}: {message}")
        return "stopped"
    if phase == "Inconclusive":
        pause = d.status.pause
        if pause is None or pause.reason != "inconclusive":
            d.pause_for(
                "inconclusive",
                None,
                f"{what} analysis Inconclusive: {message}; promote to go on, abort to roll back",
            )
        return "stopped"
    if blocking:
        d.note(f"{what}: analysis running" + (f" ({message})" if message else ""))
    return "waiting"


def hold_stable(d: Draft) -> None:
    """Aborted: everything back on stable (atomically), managed routes and preview gone.
    The aborted revision is scaled down by ``status.scale_down_at`` (set when aborting).
    A canary without a traffic router goes back replica by replica instead."""
    if basic_canary.applies(d.spec):
        basic_canary.hold(d)
        return
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


def lifecycle_gates(d: Draft) -> bool:
    """The webhooks every in-flight rollout passes through before its strategy acts: a
    ``rollback`` webhook that answers 2xx aborts; the new revision waits for every
    ``confirm-rollout``; ``rollout`` webhooks are called each interval (more than their
    failureLimit failures abort). rollingUpdate and recreate send traffic as soon as they
    start, so their ``pre-rollout`` webhooks gate here too. True when the strategy may act."""
    if runs.has(d, "rollback"):
        state, _ = runs.gate(d, "rollback")
        if state == "passed":
            abort(d, "a rollback webhook asked for it")
            return False
    if not confirmed(d, "confirm-rollout"):
        hold_stable(d)
        return False
    if not checks.in_use(d.spec):  # with checks, each check calls them once
        state, why = runs.gate(d, "rollout")
        if state == "failed":
            abort(d, why)
            return False
    if d.spec.strategy.name in ("rollingUpdate", "recreate"):
        return pre_rollout(d)
    return True


def pre_rollout(d: Draft) -> bool:
    """The ``pre-rollout`` webhooks, before the new revision gets traffic: True once they
    passed; a failure aborts the rollout (with ``spec.checks``, a failure is a failed
    check, retried an interval later: ``engine.checks``)."""
    if checks.in_use(d.spec):
        verdict, why = checks.pre_rollout(d)
        if verdict == "threshold":
            abort(d, f"pre-rollout webhooks: {why}")
        return verdict == "passed"
    state, why = runs.gate(d, "pre-rollout")
    if state == "failed":
        abort(d, why)
        return False
    if state == "waiting":
        d.deliberate_wait = True
        d.note(why)
        return False
    return True
