"""Recreate: stop every old replica, then start the new revision, with planned downtime
served as a maintenance page (503 + Retry-After) rather than refused connections.

``current_step_index`` is the stage, each waiting for its condition before the next:

    0 pre hook (old still serving)   1 maintenance on, old scaled to 0: wait until drained
    2 mid hook (nothing running)     3 new scaled up; when available: 100% to new,
    4 post hook (new serving)          maintenance off  → Healthy

A hook failing under ``failurePolicy: Abort`` makes the rollout Degraded; ``hold`` then
brings the stable revision back (and only then drops the maintenance page).
"""

from __future__ import annotations

from collections.abc import Callable

from changeover.engine.actions import Plan
from changeover.engine.context import Context
from changeover.engine.draft import Draft, Phase, Reason
from changeover.spec import models


def plan(ctx: Context) -> Plan:
    d = Draft(ctx)
    advance(d)
    return d.finish()


def advance(d: Draft) -> None:
    stage = d.status.current_step_index or 0
    while stage < len(_STAGES):
        if stage >= 1:
            _stop_old(d)
        if not _STAGES[stage](d):
            return
        stage += 1
        d.update(current_step_index=stage)
    new = d.target
    d.update(stable_revision=new, canary_revision=None, current_step_index=None)
    d.move_to(Phase.HEALTHY, f"revision {new} is healthy")
    d.event(Reason.COMPLETED, f"Rollout completed: revision {new} serves 100% of traffic", new)


def hold(d: Draft) -> None:
    """Aborted, or Degraded by a failed hook: bring stable back, then switch to it."""
    stable = d.stable
    if stable is None:
        return
    d.scale(stable, d.replicas)
    if d.available(stable) < d.replicas:
        return
    d.set_weights({stable: 100})
    if d.status.traffic.maintenance:
        d.maintenance(False)
        d.event(Reason.DOWNTIME, f"planned downtime ended: revision {stable} restored", stable)
    for revision, seen in d.ctx.observations.revisions.items():
        if revision != stable and seen.desired > 0:
            d.scale(revision, 0)


def _olds(d: Draft) -> list[int]:
    revisions = d.ctx.observations.revisions.items()
    return sorted(
        rev
        for rev, seen in revisions
        if rev != d.target and seen.desired + seen.ready + seen.terminating
    )


def _stop_old(d: Draft) -> None:
    for revision in _olds(d):
        d.scale(revision, 0)


def _hook_stage(point: str) -> Callable[[Draft], bool]:
    def stage(d: Draft) -> bool:
        strategy = d.spec.strategy.recreate or models.RecreateStrategy()
        hook: models.Hook | None = getattr(strategy, point)
        if hook is None:
            return True
        outcome, message = d.hook(point, hook, d.target)
        if outcome == "pending":
            d.deliberate_wait = True  # the hook has its own timeout
            d.note(f"waiting for the {point} hook")
            return False
        if outcome == "failed":
            msg = f"{point} hook failed: {message or 'no message'}"
            d.move_to(Phase.DEGRADED, msg)
            d.event(Reason.DEGRADED, msg, d.target)
            return False
        return True

    return stage


def _begin_downtime(d: Draft) -> bool:
    olds = _olds(d)
    if not d.status.traffic.maintenance:
        d.maintenance(True)
        d.update(step_started_at=d.now)
        stopping = ", ".join(str(rev) for rev in olds) or "none"
        msg = f"planned downtime: stopping revision(s) {stopping} before starting {d.target}"
        d.event(Reason.DOWNTIME, msg, d.target)
    # Old replicas drain (the maintenance page answers new requests) and stop before
    # anything new starts: recreate never runs two revisions at once.
    still = sum(d.obs(rev).ready + d.obs(rev).terminating for rev in olds)
    if still:
        d.deliberate_wait = True  # bounded by the replicas' grace period
        d.note(f"waiting for {still} old replica(s) to finish their requests and stop")
        return False
    return True


def _start_new(d: Draft) -> bool:
    new = d.target
    d.scale(new, d.replicas)
    available = d.available(new)
    if available < d.replicas:
        d.note(f"starting revision {new}: {available}/{d.replicas} replicas available")
        return False
    d.set_weights({new: 100})
    d.maintenance(False)
    began = d.status.step_started_at if d.status.step_started_at is not None else d.now
    msg = f"planned downtime ended after {d.now - began:.1f}s: revision {new} serving"
    d.event(Reason.DOWNTIME, msg, new)
    return True


_STAGES: tuple[Callable[[Draft], bool], ...] = (
    _hook_stage("pre"),
    _begin_downtime,
    _hook_stage("mid"),
    _start_new,
    _hook_stage("post"),
)
