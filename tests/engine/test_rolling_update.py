"""Rolling update: maxSurge / maxUnavailable steps, weights follow available replicas."""

from __future__ import annotations

from changeover.engine import commands

from .world import FakeWorld, Phase, rollout


def started(surge: int | str, unavailable: int | str, **spec: object) -> FakeWorld:
    strategy = {"rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}
    world = FakeWorld(rollout(strategy, **spec))
    world.settle()
    world.auto_ready = False
    return world.apply(revision=2).clear()


def test_surge_one_unavailable_zero_walks_one_replica_at_a_time() -> None:
    world = started(1, 0)
    transcript = []
    for _ in range(12):
        world.settle()
        transcript.append((world.desired(1), world.desired(2), dict(world.weights)))
        if world.phase == Phase.HEALTHY:
            break
        world.ready(2)
    assert transcript == [
        (4, 1, {1: 100}),
        (3, 2, {1: 75, 2: 25}),
        (2, 3, {1: 50, 2: 50}),
        (1, 4, {1: 25, 2: 75}),
        (0, 4, {2: 100}),
    ]
    assert world.status.stable_revision == 2


def test_total_never_exceeds_surge_and_available_never_below_minimum() -> None:
    world = started("25%", "25%", replicas=8)  # surge 2, unavailable 2
    for _ in range(20):
        world.settle()
        total = world.desired(1) + world.desired(2)
        available = sum(o.available for o in world.replicas.values())
        assert total <= 10 and available >= 6
        if world.phase == Phase.HEALTHY:
            break
        world.ready(2).ready(1, world.desired(1))
    assert world.phase == Phase.HEALTHY and world.desired(1) == 0


def test_new_revision_mid_rollout_rolls_on_from_there() -> None:
    world = started(1, 0)
    world.settle().ready(2).settle()
    assert (world.desired(1), world.desired(2)) == (3, 2)
    world.apply(revision=3).auto_ready = True
    world.settle()
    assert world.phase == Phase.HEALTHY and world.weights == {3: 100}
    assert world.desired(1) == world.desired(2) == 0


def test_abort_rolls_back_towards_stable() -> None:
    world = started(1, 0)
    world.settle().ready(2).settle()
    world.auto_ready = True
    world.command(commands.abort, now=world.now).settle()
    assert world.phase == Phase.ABORTED
    assert world.desired(1) == 4 and world.desired(2) == 0 and world.weights == {1: 100}


def test_deadline_exceeded_names_progress_deadline_seconds() -> None:
    world = started(1, 0, progressDeadlineSeconds=120).settle()
    world.advance(121).settle()
    assert world.phase == Phase.DEGRADED
    assert "progressDeadlineSeconds (2m)" in world.status.message
    world.ready(2).settle()
    assert world.phase == Phase.PROGRESSING
