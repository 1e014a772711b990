"""Canary without a traffic router (``replica-ratio`` on Kubernetes): Argo Rollouts' basic
canary.

The Service in front selects the pods of every revision, so a weight can only be the ratio
of replicas. Each step therefore sizes stable *and* canary (``replicas.
basic_canary_counts``: the closest ratio, within maxSurge and maxUnavailable, walked
towards as replicas become available), a setWeight step completes once those counts are
reached and available, and the weights the status reports are the ratio of available
replicas: what the Service actually does. Past the last step the weight is 100 (the canary
takes every replica while stable goes to zero; the rollout completes with no scale-down
delay, since old pods would go on taking requests); aborted, it is 0 the same way.
``setCanaryScale`` has no effect here, as in Argo (it needs a traffic router).

Called by ``canary`` (the steps) and ``shared.hold_stable`` (an abort).
"""

from __future__ import annotations

from changeover.engine import replicas
from changeover.engine.draft import Draft
from changeover.spec import models

# The only router without weights: a Service over every pod of the rollout.
REPLICA_RATIO = "replica-ratio"


def applies(spec: models.RolloutSpec) -> bool:
    return spec.strategy.canary is not None and spec.router == REPLICA_RATIO


def step_weight(steps: list[models.CanaryStep], index: int) -> int:
    """The weight at step ``index`` (Argo's GetCurrentSetWeight): the last setWeight at or
    before it, 0 before any, 100 once past the last step.

    >>> s = [models.CanaryStep(set_weight=20), models.CanaryStep(pause=models.Pause())]
    >>> step_weight(s, 0), step_weight(s, 1), step_weight(s, 2), step_weight(s, -1)
    (20, 20, 100, 0)
    """
    if index >= len(steps):
        return 100
    for step in reversed(steps[: index + 1] if index >= 0 else []):
        if step.set_weight is not None:
            return step.set_weight
    return 0


def scale(d: Draft, weight: int) -> bool:
    """Scale stable and canary one move towards ``weight`` percent of the replicas and
    report the ratio of available replicas as the weights; True once the counts are those
    of ``weight`` (Argo's AtDesiredReplicaCountsForCanary: the canary's all available,
    stable's extra pods gone, no older revision still serving)."""
    strategy = d.spec.strategy.canary or models.CanaryStrategy()
    surge, unavailable = replicas.surge_and_unavailable(
        strategy.max_surge, strategy.max_unavailable, d.replicas
    )
    seen = d.ctx.observations.revisions
    pools = {
        rev: replicas.Pool(revision=rev, replicas=o.desired, available=o.available)
        for rev, o in seen.items()
    }
    target, stable_rev = d.target, d.stable

    def pool(rev: int) -> replicas.Pool:
        return pools.get(rev) or replicas.Pool(revision=rev, replicas=0, available=0)

    new = pool(target)
    stable = pool(stable_rev) if stable_rev is not None and stable_rev != target else None
    others = [p for rev, p in pools.items() if rev not in (target, stable_rev) and p.replicas]
    new_count, stable_count = replicas.basic_canary_counts(
        replicas=d.replicas,
        weight=weight,
        surge=surge,
        unavailable=unavailable,
        new=new,
        stable=stable,
        others=others,
    )
    d.scale(target, new_count)
    if stable is not None:
        d.scale(stable.revision, stable_count)
    achieved = replicas.ratio_weights({rev: o.available for rev, o in seen.items()})
    if achieved:
        d.set_weights(achieved)
    stable_done = stable is None or (
        stable.replicas == stable_count and d.obs(stable.revision).ready <= stable_count
    )
    return (
        new.replicas == new_count == new.available
        and stable_done
        and not any(seen[p.revision].available for p in others)
    )


def hold(d: Draft) -> None:
    """Aborted: weight 0, back to stable within maxSurge/maxUnavailable (the canary's pods
    take requests until they are gone, so no abortScaleDownDelaySeconds either)."""
    canary = d.status.canary_revision
    if canary is not None:
        d.cancel_scale_down(canary)
    if d.stable is not None and d.target != d.stable:
        scale(d, 0)
    d.remove_managed_routes()
    d.preview(None)
