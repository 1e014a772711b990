"""Canary: walk ``strategy.canary.steps``, then promote fully (Argo Rollouts' canary with a
traffic router).

The stable revision keeps all its replicas throughout (Argo's default without
dynamicStableScale); the canary gets ``ceil(replicas * weight / 100)`` replicas unless a
``setCanaryScale`` step says otherwise, and a weight is only set once the canary has that
many replicas available. ``engine.plan`` calls ``advance`` while the canary is in flight.
Without a traffic router (``replica-ratio``) the weight is the ratio of replicas, so each
step sizes stable too, as Argo's basic canary does (``basic_canary``).

Analysis: an ``analysis`` step blocks until its run is Successful; a ``check`` step until
``spec.checks`` passed (``engine.checks``: Flagger's gated steps, failed checks counted
across the rollout); ``strategy.canary.
analysis`` runs in the background from ``startingStep`` until the rollout completes. Either
aborts the rollout when it fails and pauses it when Inconclusive (promote then skips an
analysis step, or measures the background analysis afresh). Webhooks: ``pre-rollout``
before the first step that sends the canary traffic, ``confirm-traffic-increase`` before
every weight increase, ``confirm-promotion`` before the final cut-over.
"""

from __future__ import annotations

from changeover.engine import checks, replicas, runs
from changeover.engine.actions import Plan
from changeover.engine.context import Context
from changeover.engine.draft import Draft, Reason
from changeover.engine.strategies import basic_canary, shared
from changeover.spec import models


def plan(ctx: Context) -> Plan:
    d = Draft(ctx)
    advance(d)
    return d.finish()


def scale_in_effect(steps: list[models.CanaryStep], index: int) -> models.SetCanaryScale | None:
    """The last setCanaryScale at or before ``index``: it stays in effect until another one
    replaces it (``matchTrafficWeight: true`` hands the scale back to the weight)."""
    found: models.SetCanaryScale | None = None
    for step in steps[: index + 1]:
        if step.set_canary_scale is not None:
            found = step.set_canary_scale
    return found


def desired_canary_replicas(steps: list[models.CanaryStep], index: int, total: int) -> int:
    """Canary replicas at step ``index``: from the last setWeight at or before it, unless a
    setCanaryScale is in effect.

    >>> s = [models.CanaryStep(set_weight=20), models.CanaryStep(pause=models.Pause())]
    >>> desired_canary_replicas(s, 0, 10), desired_canary_replicas(s, 1, 10)
    (2, 2)
    """
    weight = 0
    for step in steps[: index + 1]:
        if step.set_weight is not None:
            weight = step.set_weight
    return replicas.canary_scale(total, weight, scale_in_effect(steps, index))


def _traffic_floor(d: Draft, steps: list[models.CanaryStep], index: int) -> int:
    """Replicas the canary needs for the weight it has now: when the weight goes down, the
    canary shrinks only after the router moved traffic away, never before. An explicit
    setCanaryScale is the user's call and has no floor."""
    scale = scale_in_effect(steps, index)
    if scale is not None and not scale.match_traffic_weight:
        return 0
    return replicas.canary_replicas(d.replicas, d.weights().get(d.target, 0))


def advance(d: Draft) -> None:
    strategy = d.spec.strategy.canary or models.CanaryStrategy()
    steps = strategy.steps
    stable, canary = d.stable, d.target
    basic = basic_canary.applies(d.spec)
    if stable is not None and not basic:
        d.scale(stable, d.replicas)
    index = _apply_promote(d, steps)
    background = strategy.analysis
    if background is not None and index >= (background.starting_step or 0):
        verdict = shared.analysis(
            d, "background", background, kind="background", what="background", blocking=False
        )
        if verdict == "stopped":
            return
    first = next((i for i, step in enumerate(steps) if _sends_traffic(step)), len(steps))
    if index > first:
        # passed at the first traffic step; keep it on record
        runs.gate(d, "pre-rollout", suffix=checks.pre_rollout_suffix(d))
    while index < len(steps):
        where = f"step {index + 1}/{len(steps)}"
        if basic:
            done = _basic_step(d, index, steps, where)
        else:
            want = desired_canary_replicas(steps, index, d.replicas)
            d.scale(canary, max(want, _traffic_floor(d, steps, index)))
            done = _run_step(d, index, steps[index], want, where)
        if not done:
            return
        index += 1
        d.update(current_step_index=index, step_started_at=d.now, pause=None)
        d.event(Reason.STEP_COMPLETED, f"step {index}/{len(steps)} completed", canary)
    if not basic:
        shared.promote_fully(d, delay=strategy.scale_down_delay_seconds)
        return
    basic_canary.scale(d, 100)
    available = d.available(canary)
    if available < d.replicas:
        d.note(f"promoting revision {canary}: {available}/{d.replicas} replicas available")
        return
    # Without a router old pods take requests until they are gone: no scale-down delay.
    shared.promote_fully(d, delay=0.0)


def _basic_step(d: Draft, index: int, steps: list[models.CanaryStep], where: str) -> bool:
    """A step of the canary without a traffic router (``basic_canary``)."""
    step, before = steps[index], basic_canary.step_weight(steps, index - 1)
    basic_canary.scale(d, before)  # held there until this step's gates pass
    if step.set_weight is None:
        # setCanaryScale needs a traffic router in Argo too: without one it does nothing.
        return step.set_canary_scale is not None or _run_step(d, index, step, 0, where)
    weight = step.set_weight
    if not _gates(d, index, weight, before):
        return False
    if basic_canary.scale(d, weight):
        return True
    d.note(f"{where}: setWeight {weight}: scaling towards {weight}% of the replicas")
    return False


def _gates(d: Draft, index: int, weight: int, current: int) -> bool:
    """pre-rollout before the canary's first traffic, confirm-traffic-increase before
    every increase over ``current``."""
    if weight > 0 and not shared.pre_rollout(d):
        return False
    increase = weight > current
    return not increase or shared.confirmed(d, "confirm-traffic-increase", suffix=f"-step{index}")


def _sends_traffic(step: models.CanaryStep) -> bool:
    return (
        bool(step.set_weight)
        or step.set_header_route is not None
        or (step.set_mirror_route is not None and step.set_mirror_route.copies > 0)
    )


def _apply_promote(d: Draft, steps: list[models.CanaryStep]) -> int:
    """promote skips the current step; promote --full skips them all. Past an
    Inconclusive background analysis, promote measures it afresh on the same step."""
    total = len(steps)
    index = d.status.current_step_index or 0
    inconclusive = d.status.pause is not None and d.status.pause.reason == "inconclusive"
    request = d.take_promote()
    if request is None:
        return index
    if inconclusive:
        d.update(analysis_round=d.status.analysis_round + 1)
        if request == "step" and index < total and steps[index].analysis is None:
            d.leave_pause("promoted past an Inconclusive background analysis")
            return index
    new_index = total if request == "full" else min(index + 1, total)
    d.update(current_step_index=new_index, step_started_at=d.now)
    d.leave_pause(f"promoted past step {index + 1} of {total}")
    return new_index


def _run_step(d: Draft, index: int, step: models.CanaryStep, want: int, where: str) -> bool:
    """Carry out step ``index`` (``want``: canary replicas it needs); True once complete."""
    canary = d.target
    if step.set_weight is not None:
        return _set_weight(d, index, step.set_weight, want, where)
    if step.pause is not None:
        return _pause(d, step.pause, where)
    if step.set_canary_scale is not None:
        return _wait_available(d, want, f"{where}: setCanaryScale")
    if step.set_header_route is not None:
        route = step.set_header_route
        if route.match and not shared.pre_rollout(d):
            return False
        d.header_route(route.name, canary, route.match)
        return True
    if step.set_mirror_route is not None:
        mirror = step.set_mirror_route
        if mirror.copies > 0 and not shared.pre_rollout(d):
            return False
        d.mirror(mirror.name, canary, mirror.copies, mirror.match, mirror.compare)
        return True
    if step.check is not None:
        outcome, why = checks.passed(d, index, step.check.count, where)
        if outcome == "threshold":
            shared.abort(d, why)
        return outcome == "passed"
    assert step.analysis is not None
    verdict = shared.analysis(d, f"step{index}", step.analysis, kind="step", what=where)
    return verdict == "passed"


def _wait_available(d: Draft, want: int, what: str) -> bool:
    available = d.available(d.target)
    if available >= want:
        return True
    d.note(f"{what}: waiting for canary revision {d.target}: {available}/{want} available")
    return False


def _set_weight(d: Draft, index: int, weight: int, want: int, where: str) -> bool:
    if not _wait_available(d, want, f"{where}: setWeight {weight}"):
        return False
    stable = d.stable
    if stable is None:
        return True
    if not _gates(d, index, weight, d.weights().get(d.target, 0)):
        return False
    d.set_weights({stable: 100 - weight, d.target: weight})
    return True


def _pause(d: Draft, pause: models.Pause, where: str) -> bool:
    duration = pause.duration
    if duration is not None and duration <= 0:
        return True
    current = d.status.pause
    if current is None or current.reason != "step":
        until = d.now + duration if duration is not None else None
        label = f"for {models.format_duration(duration)}" if duration else "until promote"
        d.pause_for("step", until, f"paused at {where} {label}")
        return False
    if current.until is None or d.now < current.until:
        return False
    d.update(pause=None)
    d.leave_pause(f"{where}: pause ended")
    d.event(Reason.RESUMED, f"{where}: timed pause ended", d.target)
    return True
