"""The basic canary's replica arithmetic (no traffic router) against Argo Rollouts' own
cases: utils/replicaset/canary_test.go's TestApproximateWeightedNewStableReplicaCounts and
the cases of TestCalculateReplicaCountsForCanary without trafficRouting (a promoteFull case
as weight 100), copied value for value."""

from __future__ import annotations

from typing import Any

import pytest

from changeover.engine import commands, replicas
from changeover.engine.replicas import Pool

from .world import FakeWorld, Phase, rollout

# (replicas, weight, maxSurge, canary, stable)
APPROXIMATE = [
    (0, 0, 0, 0, 0),
    (0, 50, 0, 0, 0),
    (0, 100, 0, 0, 0),
    (0, 0, 1, 0, 0),
    (0, 50, 1, 0, 0),
    (0, 100, 1, 0, 0),
    (1, 0, 0, 0, 1),
    (1, 1, 0, 0, 1),
    (1, 49, 0, 0, 1),
    (1, 50, 0, 1, 0),
    (1, 99, 0, 1, 0),
    (1, 100, 0, 1, 0),
    (1, 0, 1, 0, 1),
    (1, 1, 1, 1, 1),
    (1, 49, 1, 1, 1),
    (1, 50, 1, 1, 1),
    (1, 99, 1, 1, 1),
    (1, 100, 1, 1, 0),
    (2, 0, 0, 0, 2),
    (2, 1, 0, 1, 1),
    (2, 50, 0, 1, 1),
    (2, 99, 0, 1, 1),
    (2, 100, 0, 2, 0),
    (2, 0, 1, 0, 2),
    (2, 1, 1, 1, 2),
    (2, 50, 1, 1, 1),
    (2, 99, 1, 2, 1),
    (2, 100, 1, 2, 0),
    (3, 10, 0, 1, 2),
    (3, 25, 0, 1, 2),
    (3, 33, 0, 1, 2),
    (3, 34, 0, 1, 2),
    (3, 49, 0, 1, 2),
    (3, 50, 0, 2, 1),
    (3, 10, 1, 1, 3),
    (3, 25, 1, 1, 3),
    (3, 33, 1, 1, 2),
    (3, 34, 1, 1, 2),
    (3, 49, 1, 2, 2),
    (3, 50, 1, 2, 2),
    (10, 0, 1, 0, 10),
    (10, 1, 0, 1, 9),
    (10, 14, 0, 1, 9),
    (10, 15, 0, 2, 8),
    (10, 16, 0, 2, 8),
    (10, 99, 0, 9, 1),
    (10, 100, 1, 10, 0),
    (10, 0, 1, 0, 10),
    (10, 1, 1, 1, 10),
    (10, 18, 1, 2, 9),
    (10, 19, 1, 2, 9),
    (10, 20, 1, 2, 8),
    (10, 23, 1, 2, 8),
    (10, 24, 1, 3, 8),
    (10, 25, 1, 3, 8),
    (10, 99, 1, 10, 1),
    (10, 100, 1, 10, 0),
]


@pytest.mark.parametrize(("total", "weight", "surge", "canary", "stable"), APPROXIMATE)
def test_approximate_weighted_counts(
    total: int, weight: int, surge: int, canary: int, stable: int
) -> None:
    assert replicas.approximate_weighted_counts(total, weight, surge) == (canary, stable)


# (replicas, weight, maxSurge, maxUnavailable, (stable spec, available),
#  (canary spec, available), older (spec, available) or None, expected (stable, canary))
BASIC = [
    # Do not add extra RSs in scaleDownCount when .Spec.Replica < AvailableReplicas
    (10, 100, 3, 0, (7, 8), (6, 3), None, (7, 6)),
    # Use max surge int to scale up canary
    (10, 20, 2, 0, (10, 10), (0, 0), None, (10, 2)),
    # Use max surge percentage to scale up canary
    (10, 20, "20%", 0, (10, 10), (0, 0), None, (10, 2)),
    # Scale down extra stable replicas
    (10, 20, "20%", 0, (10, 10), (2, 2), None, (8, 2)),
    # Do not go past max surge
    (10, 30, 2, 0, (10, 10), (0, 0), None, (10, 2)),
    # Use max unavailable int to scale down stableRS
    (10, 20, 0, 2, (10, 10), (0, 0), None, (8, 0)),
    # Use max surge percentage to scale down stableRS
    (10, 20, 0, "20%", (10, 10), (0, 0), None, (8, 0)),
    # Do not go past max unavailable
    (10, 30, 0, 2, (10, 10), (0, 0), None, (8, 0)),
    # Use Max Surge and Max Unavailable
    (10, 50, 2, 1, (10, 10), (0, 0), None, (9, 2)),
    # Scale canaryRS to zero on setWeight of 0%
    (10, 0, 1, 1, (10, 10), (1, 1), None, (10, 0)),
    # Scale stable to zero on setWeight of 100%
    (10, 100, 1, 1, (1, 1), (10, 10), None, (0, 10)),
    # Do not scale canaryRS down to zero on non-zero weight
    (1, 20, 1, 0, (1, 1), (0, 0), None, (1, 1)),
    # Do not scale canaryRS down to zero on non-100 weight
    (1, 90, 1, 0, (1, 1), (0, 0), None, (1, 1)),
    # Scale canaryRS to zero on <50 weight without surge
    (1, 49, 0, 1, (1, 1), (0, 0), None, (1, 0)),
    # Scale stableRS down to zero on >=50 weight without surge
    (1, 51, 0, 1, (1, 1), (0, 0), None, (0, 0)),
    # Scale canaryRS to one on >=50 weight without surge and stable replicas
    (1, 51, 0, 1, (0, 0), (0, 0), None, (0, 1)),
    # Scale up Stable before canaryRS
    (10, 30, 1, 0, (1, 1), (0, 0), (3, 3), (7, 1)),
    # Scale down canaryRS and stable
    (10, 30, 0, 3, (8, 5), (4, 4), None, (7, 3)),
    # Scale down stable and canary available
    (10, 100, 1, 0, (10, 2), (10, 8), None, (2, 9)),
    # Do not scale down canaryRS or stable when older RS count >= scaleDownCount
    (10, 30, 0, 1, (8, 6), (4, 2), (3, 3), (8, 4)),
    # Do not round past maxSurge with uneven setWeight divisor
    (10, 5, 0, 1, (10, 10), (0, 0), None, (9, 0)),
    # Do not round past maxSurge with uneven setWeight divisor (part 2)
    (10, 5, 0, 1, (9, 9), (0, 0), None, (9, 1)),
    # Use maxUnavailable of 1 when percentage of maxUnavailable and maxSurge result in 0 replicas
    (10, 10, "0%", "0%", (10, 10), (0, 0), None, (9, 0)),
    # honor maxSurge during scale up when stableRS unavailable
    (4, 100, 1, 0, (4, 1), (0, 0), None, (4, 1)),
    # scale down to maxunavailable without exceeding maxSurge
    (3, 99, 0, 2, (3, 3), (0, 0), None, (1, 0)),
    # honor maxUnavailable during scale down stableRS unavailable
    (4, 100, 1, 0, (4, 1), (1, 1), None, (3, 1)),
    # honor maxUnavailable when aborting or reducing weight part 1
    (4, 0, 1, 0, (0, 0), (4, 4), None, (1, 4)),
    # honor maxUnavailable when aborting or reducing weight part 2
    (4, 0, 1, 0, (1, 0), (4, 4), None, (1, 4)),
    # honor maxUnavailable when aborting or reducing weight part 3
    (4, 0, 1, 0, (1, 1), (4, 4), None, (1, 3)),
    # promote full does not consider weight
    (4, 100, 4, 4, (4, 4), (0, 0), None, (0, 4)),
    # promote full still honors maxSurge/maxUnavailable
    (4, 100, 3, 0, (4, 4), (0, 0), None, (4, 3)),
]


@pytest.mark.parametrize(
    ("total", "weight", "max_surge", "max_unavailable", "stable", "canary", "older", "want"),
    BASIC,
)
def test_basic_canary_counts_as_argo(
    total: int,
    weight: int,
    max_surge: int | str,
    max_unavailable: int | str,
    stable: tuple[int, int],
    canary: tuple[int, int],
    older: tuple[int, int] | None,
    want: tuple[int, int],
) -> None:
    surge, unavailable = replicas.surge_and_unavailable(max_surge, max_unavailable, total)
    new, stable_count = replicas.basic_canary_counts(
        replicas=total,
        weight=weight,
        surge=surge,
        unavailable=unavailable,
        new=Pool(revision=3, replicas=canary[0], available=canary[1]),
        stable=Pool(revision=2, replicas=stable[0], available=stable[1]),
        others=[Pool(revision=1, replicas=older[0], available=older[1])] if older else [],
    )
    assert (stable_count, new) == want


# --- the strategy: a canary on Kubernetes without a router ------------------------------

POD = {
    "metadata": {"labels": {"app": "web"}},
    "spec": {"containers": [{"name": "app", "image": "app:v1"}]},
}


def _kube(steps: list[dict[str, Any]], replicas: int = 4, **canary: Any) -> FakeWorld:
    """Revision 1 Healthy on the replica-ratio router; revision 2 just applied."""
    spec = rollout({"canary": {"steps": steps, **canary}}, template=POD, replicas=replicas)
    assert spec.spec.router == "replica-ratio"
    world = FakeWorld(spec).settle()
    assert world.phase == Phase.HEALTHY
    return world.apply(revision=2).clear()


def _walk(world: FakeWorld, limit: int) -> FakeWorld:
    """Settle, one replica set's readiness at a time, never above ``limit`` pods."""
    for _ in range(60):
        plan = world.tick()
        assert sum(o.desired for o in world.replicas.values()) <= limit, world.replicas
        if not plan.actions and not plan.events:
            return world
    raise AssertionError("no quiescence")


def test_set_weight_50_on_4_replicas_is_2_and_2_within_max_surge() -> None:
    # Argo's docs (features/canary.md): "setWeight: 50" without a traffic router.
    world = _walk(_kube([{"setWeight": 50}, {"pause": {}}]), limit=5)
    assert world.status.current_step_index == 1 and world.phase == Phase.PAUSED
    assert {rev: o.desired for rev, o in world.replicas.items()} == {1: 2, 2: 2}
    assert world.weights == {1: 50, 2: 50}


def test_the_weight_reported_is_the_ratio_achieved() -> None:
    # An ALB rollout's `setWeight: 5` on 5 replicas, read without its router: Argo runs
    # 5 stable and 1 canary (1 of 6 is the closest to 5%), which is 17%, not 5%.
    world = _walk(_kube([{"setWeight": 5}, {"pause": {}}], replicas=5), limit=7)
    assert {rev: o.desired for rev, o in world.replicas.items()} == {1: 5, 2: 1}
    assert world.weights == {1: 83, 2: 17}


def test_completion_leaves_no_old_pod_selected() -> None:
    world = _walk(_kube([{"setWeight": 50}, {"pause": {}}]), limit=5)
    world.command(commands.promote)
    _walk(world, limit=5)
    assert world.phase == Phase.HEALTHY and world.status.stable_revision == 2
    # The old pods are gone when it says 100%: no 30 s of old pods behind the Service.
    assert {rev: o.desired for rev, o in world.replicas.items()} == {1: 0, 2: 4}
    assert world.weights == {2: 100}


def test_abort_scales_back_within_limits_without_the_abort_delay() -> None:
    world = _walk(_kube([{"setWeight": 75}, {"pause": {}}]), limit=5)
    assert {rev: o.desired for rev, o in world.replicas.items()} == {1: 1, 2: 3}
    world.command(commands.abort, now=world.now)
    _walk(world, limit=5)
    assert world.phase == Phase.ABORTED
    assert {rev: o.desired for rev, o in world.replicas.items()} == {1: 4, 2: 0}
    assert world.weights == {1: 100}


def test_set_canary_scale_has_no_effect_without_a_router() -> None:
    steps = [{"setCanaryScale": {"replicas": 3}}, {"setWeight": 25}, {"pause": {}}]
    world = _walk(_kube(steps), limit=5)
    assert {rev: o.desired for rev, o in world.replicas.items()} == {1: 3, 2: 1}
