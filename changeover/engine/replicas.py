"""Replica and weight arithmetic: pure functions with Kubernetes' and Argo Rollouts' rules.

Called by the strategies in ``engine/strategies``; nothing here knows about status, time or
actions. Every docstring carries worked examples, mirrored by ``tests/engine/test_replicas.py``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from changeover.spec import models


def resolve(value: int | str, total: int, *, round_up: bool) -> int:
    """An ``IntOrPercent`` against ``total`` replicas.

    >>> resolve(3, 10, round_up=True), resolve("25%", 10, round_up=True)
    (3, 3)
    >>> resolve("25%", 10, round_up=False)
    2
    """
    if isinstance(value, int):
        return value
    percent = int(value.rstrip("%"))
    if round_up:
        return -(-total * percent // 100)
    return total * percent // 100


def surge_and_unavailable(
    max_surge: int | str, max_unavailable: int | str, replicas: int
) -> tuple[int, int]:
    """``(surge, unavailable)`` as Kubernetes resolves them: surge rounds UP, unavailable
    rounds DOWN, both zero → unavailable 1 (a rollout must be able to move), and unavailable
    never exceeds the replica count.

    >>> surge_and_unavailable("25%", "25%", 10)
    (3, 2)
    >>> surge_and_unavailable(0, 0, 4)
    (0, 1)
    >>> surge_and_unavailable("0%", "10%", 5)  # 10% of 5 is 0.5 → 0; both zero → 1
    (0, 1)
    >>> surge_and_unavailable(1, 5, 3)  # cannot lose more replicas than there are
    (1, 3)
    """
    surge = resolve(max_surge, replicas, round_up=True)
    unavailable = resolve(max_unavailable, replicas, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, min(unavailable, replicas)


@dataclass(frozen=True, kw_only=True)
class Pool:
    """One revision's replicas as the rolling update sees them."""

    revision: int
    replicas: int  # desired, as last asked of the platform
    available: int


def rolling_scale_up(*, replicas: int, surge: int, new_replicas: int, total_replicas: int) -> int:
    """How many replicas to add to the new revision now (Kubernetes' NewRSNewReplicas):
    up to ``replicas + surge`` in total across revisions, never above ``replicas`` for new.

    >>> rolling_scale_up(replicas=10, surge=3, new_replicas=0, total_replicas=10)
    3
    >>> rolling_scale_up(replicas=10, surge=3, new_replicas=3, total_replicas=13)  # at the limit
    0
    >>> rolling_scale_up(replicas=4, surge=2, new_replicas=3, total_replicas=4)  # capped at 4
    1
    >>> rolling_scale_up(replicas=3, surge=0, new_replicas=0, total_replicas=0)  # first revision
    3
    """
    if new_replicas >= replicas:
        return 0
    room = replicas + surge - total_replicas
    return max(0, min(room, replicas - new_replicas))


def rolling_scale_down(
    *, replicas: int, unavailable: int, new: Pool, old: Sequence[Pool]
) -> dict[int, int]:
    """The replica count each old revision may go down to now (Kubernetes'
    reconcileOldReplicaSets): first drop old replicas that are not available anyway, then
    remove available ones while at least ``replicas - unavailable`` stay available, oldest
    revision first. Only old revisions that change are returned.

    >>> rolling_scale_down(replicas=4, unavailable=1, new=Pool(revision=2, replicas=1,
    ...     available=0), old=[Pool(revision=1, replicas=4, available=4)])
    {1: 3}
    >>> rolling_scale_down(replicas=4, unavailable=0, new=Pool(revision=2, replicas=1,
    ...     available=0), old=[Pool(revision=1, replicas=4, available=4)])  # new not ready yet
    {}
    >>> rolling_scale_down(replicas=4, unavailable=0, new=Pool(revision=2, replicas=1,
    ...     available=1), old=[Pool(revision=1, replicas=4, available=4)])
    {1: 3}
    >>> rolling_scale_down(replicas=2, unavailable=0, new=Pool(revision=3, replicas=2,
    ...     available=2), old=[Pool(revision=1, replicas=1, available=0),
    ...     Pool(revision=2, replicas=1, available=1)])  # unhealthy first, then oldest
    {1: 0, 2: 0}
    """
    ordered = sorted(old, key=lambda p: p.revision)
    if sum(p.replicas for p in ordered) == 0:
        return {}
    all_replicas = new.replicas + sum(p.replicas for p in ordered)
    min_available = replicas - unavailable
    max_scaled_down = all_replicas - min_available - (new.replicas - new.available)
    if max_scaled_down <= 0:
        return {}
    targets = {p.revision: p.replicas for p in ordered}
    cleaned = 0
    for pool in ordered:
        unhealthy = min(pool.replicas - pool.available, max_scaled_down - cleaned)
        if unhealthy > 0:
            targets[pool.revision] -= unhealthy
            cleaned += unhealthy
    room = new.available + sum(p.available for p in ordered) - min_available
    for pool in ordered:
        step = max(0, min(targets[pool.revision], room))
        targets[pool.revision] -= step
        room -= step
    return {p.revision: targets[p.revision] for p in ordered if targets[p.revision] != p.replicas}


def canary_replicas(replicas: int, weight: int) -> int:
    """Canary replicas for a traffic weight: ``ceil(replicas * weight / 100)`` (Argo).

    >>> canary_replicas(10, 15), canary_replicas(5, 20), canary_replicas(3, 50)
    (2, 1, 2)
    >>> canary_replicas(4, 0), canary_replicas(4, 100)
    (0, 4)
    """
    return -(-replicas * weight // 100)


def canary_scale(replicas: int, weight: int, scale: models.SetCanaryScale | None) -> int:
    """Canary replicas when a ``setCanaryScale`` step may be in effect.

    >>> canary_scale(10, 20, None)
    2
    >>> canary_scale(10, 20, models.SetCanaryScale(replicas=5))
    5
    >>> canary_scale(10, 20, models.SetCanaryScale(weight=50))
    5
    >>> canary_scale(10, 20, models.SetCanaryScale(match_traffic_weight=True))
    2
    """
    if scale is None or scale.match_traffic_weight:
        return canary_replicas(replicas, weight)
    if scale.replicas is not None:
        return scale.replicas
    return canary_replicas(replicas, scale.weight or 0)


def ratio_weights(available: Mapping[int, int]) -> dict[int, int]:
    """Traffic weights proportional to available replicas (rolling update), summing to 100
    by largest remainder; ties go to the newer revision. Revisions at 0% are left out;
    nothing available → no weights at all.

    >>> ratio_weights({1: 3, 2: 1})
    {1: 75, 2: 25}
    >>> ratio_weights({1: 2, 2: 1})
    {1: 67, 2: 33}
    >>> ratio_weights({1: 1, 2: 1, 3: 1})
    {1: 33, 2: 33, 3: 34}
    >>> ratio_weights({1: 0, 2: 2}), ratio_weights({1: 0})
    ({2: 100}, {})
    """
    total = sum(available.values())
    if total <= 0:
        return {}
    shares = {rev: 100 * n // total for rev, n in available.items()}
    left = 100 - sum(shares.values())
    by_remainder = sorted(available, key=lambda rev: (-(100 * available[rev] % total), -rev))
    for rev in by_remainder[:left]:
        shares[rev] += 1
    return {rev: shares[rev] for rev in sorted(shares) if shares[rev] > 0}


# --- the basic canary: no traffic router, the replica ratio is the weight -------------------
#
# Argo Rollouts' utils/replicaset/canary.go (CalculateReplicaCountsForBasicCanary and the
# helpers below it), mirrored line by line so that a manifest means the same replica counts
# here: tests/engine/test_basic_canary.py runs Argo's own table of cases.


def approximate_weighted_counts(replicas: int, weight: int, surge: int) -> tuple[int, int]:
    """``(canary, stable)`` replicas whose ratio comes closest to ``weight`` percent, using
    at most one replica more than ``replicas`` when surging is allowed; a weight of 1-99 on
    two or more replicas never rounds either side to zero (Argo's
    approximateWeightedCanaryStableReplicaCounts).

    >>> approximate_weighted_counts(4, 50, 1), approximate_weighted_counts(4, 25, 1)
    ((2, 2), (1, 3))
    >>> approximate_weighted_counts(5, 5, 2)  # 1 of 6 (17%) is closer to 5% than 1 of 5
    (1, 5)
    >>> approximate_weighted_counts(3, 50, 0), approximate_weighted_counts(1, 49, 0)
    ((2, 1), (0, 1))
    """
    if replicas == 0:
        return 0, 0
    exact = replicas * weight / 100
    ceil, floor = math.ceil(exact), math.floor(exact)
    zero_allowed = weight in (0, 100) or (replicas == 1 and surge == 0)
    options: list[tuple[int, int]] = []  # (canary, total)
    if ceil < replicas or zero_allowed:
        options.append((ceil, replicas))
    if not _tied(weight, replicas) and (floor != 0 or zero_allowed):
        options.append((floor, replicas))
    if surge > 0:
        options.append((ceil, replicas + 1))
        if not _tied(weight, replicas + 1) and (floor != 0 or zero_allowed):
            options.append((floor, replicas + 1))
    if not options:
        return 0, replicas
    best = options[0]
    for option in options[1:]:
        if _delta(weight, *option) < _delta(weight, *best):
            best = option
    return best[0], best[1] - best[0]


def _tied(weight: int, total: int) -> bool:
    """Floor and ceiling are as far from the weight (3 replicas at 50%): take the larger."""
    return math.modf(total * (weight / 100))[0] == 0.5


def _delta(weight: int, canary: int, total: int) -> float:
    return abs(canary * 100 / total - weight)


def _for_scale_down(pool: Pool | None, ignore_availability: bool) -> int:
    """Argo's GetReplicasForScaleDown."""
    if pool is None:
        return 0
    if pool.replicas < pool.available or ignore_availability:
        return pool.replicas
    return pool.available


def basic_canary_counts(
    *,
    replicas: int,
    weight: int,
    surge: int,
    unavailable: int,
    new: Pool,
    stable: Pool | None,
    others: Sequence[Pool] = (),
) -> tuple[int, int]:
    """``(new, stable)`` replica counts for this step of a canary without a traffic router
    (Argo's CalculateReplicaCountsForBasicCanary): towards ``approximate_weighted_counts``,
    never more than ``replicas + surge`` in all and never fewer than ``replicas -
    unavailable`` available; stable is scaled up before the canary, older revisions
    (``others``) are scaled down before either. ``stable`` None: the new one takes all.
    Called again as replicas become available, it walks to the weight.

    >>> p = Pool
    >>> basic_canary_counts(replicas=4, weight=50, surge=1, unavailable=1,
    ...     new=p(revision=2, replicas=0, available=0), stable=p(revision=1, replicas=4,
    ...     available=4))
    (1, 3)
    >>> basic_canary_counts(replicas=4, weight=50, surge=1, unavailable=1,
    ...     new=p(revision=2, replicas=1, available=1), stable=p(revision=1, replicas=3,
    ...     available=3))
    (2, 2)
    """
    desired_new, desired_stable = approximate_weighted_counts(replicas, weight, surge)
    new_count = new.replicas
    stable_count = 0
    if stable is not None:
        stable_count = stable.replicas
    else:
        desired_new, desired_stable = replicas, 0
    max_allowed = replicas + surge
    total = new.replicas + (stable.replicas if stable else 0) + sum(p.replicas for p in others)
    scale_up = max_allowed - total
    if stable is not None and stable.replicas < desired_stable and scale_up > 0:
        if stable.replicas + scale_up < desired_stable:
            stable_count, scale_up = stable.replicas + scale_up, 0
        else:
            stable_count = desired_stable
            scale_up -= desired_stable - stable.replicas
    if new.replicas < desired_new and scale_up > 0:
        new_count = min(new.replicas + scale_up, desired_new)
    if sum(p.replicas for p in others) > 0:
        return new_count, stable_count
    min_available = replicas - unavailable
    increasing = desired_new >= new.replicas
    to_scale_down = _for_scale_down(new, not increasing) + _for_scale_down(stable, increasing)
    if to_scale_down <= min_available:
        return new_count, stable_count
    scale_down = to_scale_down - min_available
    if not increasing:
        if new.replicas > desired_new:
            new_count = max(desired_new, new.replicas - scale_down)
        new_count, stable_count = _within_limits(
            new, stable, new_count, stable_count, max_allowed, min_available
        )
    elif stable is not None:
        if stable.replicas > desired_stable:
            stable_count = max(desired_stable, stable.replicas - scale_down)
        stable_count, new_count = _within_limits(
            stable, new, stable_count, new_count, max_allowed, min_available
        )
    return new_count, stable_count


def _within_limits(
    drain: Pool | None,
    adjust: Pool | None,
    drain_count: int,
    adjust_count: int,
    max_allowed: int,
    min_available: int,
) -> tuple[int, int]:
    """Argo's adjustReplicaWithinLimits: trim ``adjust`` back under maxSurge, give back
    what that costs in availability, then trim ``drain``."""
    if adjust is None:
        return drain_count, adjust_count
    over = max(0, adjust_count + drain_count - max_allowed)
    available = min(drain.available, drain_count) if drain is not None else 0
    adjust_count -= over
    available += min(adjust.available, adjust_count)
    extra = max(0, adjust.available - adjust_count)
    needed = max(0, min_available - available)
    adjust_count += min(extra, needed)
    over = max(0, adjust_count + drain_count - max_allowed)
    return drain_count - over, adjust_count
