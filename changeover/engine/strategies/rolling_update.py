"""Rolling update: replace old replicas with new ones a few at a time, within maxSurge
extra and maxUnavailable missing replicas, as Kubernetes' deployment controller does
(``engine.replicas`` holds the arithmetic). Traffic follows the available replicas: the
weights are the ratio of available replicas per revision, so the router pool follows.

Every revision the platform still runs, other than the one rolled towards, counts as old,
so a new revision mid-rollout (or a rollback) simply rolls on from wherever it is. An
aborted rolling update rolls back towards the stable revision the same way.
"""

from __future__ import annotations

from changeover.engine import replicas
from changeover.engine.actions import Plan
from changeover.engine.context import Context
from changeover.engine.draft import Draft, Phase, Reason
from changeover.spec import models


def plan(ctx: Context) -> Plan:
    d = Draft(ctx)
    advance(d)
    return d.finish()


def advance(d: Draft) -> None:
    new = d.target
    if not _roll(d, new):
        return
    if d.stable == new and d.status.phase == Phase.HEALTHY:
        return
    d.update(stable_revision=new, canary_revision=None)
    d.move_to(Phase.HEALTHY, f"revision {new} is healthy")
    d.event(Reason.COMPLETED, f"Rollout completed: revision {new} serves 100% of traffic", new)


def hold(d: Draft) -> None:
    """Aborted: roll back towards the stable revision with the same limits."""
    if d.stable is not None:
        _roll(d, d.stable)


def _roll(d: Draft, new: int) -> bool:
    """One step towards ``new``; True when it has all replicas available and no old ones."""
    strategy = d.spec.strategy.rolling_update or models.RollingUpdateStrategy()
    surge, unavailable = replicas.surge_and_unavailable(
        strategy.max_surge, strategy.max_unavailable, d.replicas
    )
    seen = d.ctx.observations.revisions
    old = [
        replicas.Pool(revision=rev, replicas=o.desired, available=o.available)
        for rev, o in sorted(seen.items())
        if rev != new and o.desired > 0
    ]
    current = d.obs(new)
    pool = replicas.Pool(revision=new, replicas=current.desired, available=current.available)
    total = pool.replicas + sum(p.replicas for p in old)
    up = replicas.rolling_scale_up(
        replicas=d.replicas, surge=surge, new_replicas=pool.replicas, total_replicas=total
    )
    if up > 0 or pool.replicas > d.replicas:
        # One move per plan, as Kubernetes does: scale up, then scale down next time round.
        d.scale(new, min(pool.replicas + up, d.replicas))
    else:
        targets = replicas.rolling_scale_down(
            replicas=d.replicas, unavailable=unavailable, new=pool, old=old
        )
        for revision, count in targets.items():
            d.scale(revision, count)
    d.remove_managed_routes()
    d.preview(None)
    weights = replicas.ratio_weights({p.revision: p.available for p in [*old, pool]})
    if weights:
        d.set_weights(weights)
        d.maintenance(False)  # left on by an interrupted recreate
    done = not old and pool.available >= d.replicas
    if not done:
        left = sum(p.replicas for p in old)
        msg = f"rolling to revision {new}: {pool.available}/{d.replicas} available, {left} old"
        d.note(msg)
    return done
