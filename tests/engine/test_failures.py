"""A crash-looping target degrades at once; a rollout whose router cannot serve plans
nothing, says why, and still runs out its deadline."""

from __future__ import annotations

import dataclasses

import pytest

from changeover.engine import plan as engine_plan
from changeover.engine.draft import Phase, Reason

from .test_plan import STRATEGIES
from .world import FakeWorld, rollout


def crashing(world: FakeWorld, revision: int, failures: int) -> FakeWorld:
    seen = world.replicas[revision]
    world.replicas[revision] = dataclasses.replace(
        seen,
        ready=0,
        available=0,
        failures=failures,
        last_failure="cannot execute 'pythn3': No such file or directory",
    )
    return world


def test_a_crash_looping_first_revision_degrades_without_waiting_for_the_deadline() -> None:
    world = FakeWorld(rollout(STRATEGIES["rollingUpdate"]), auto_ready=False).settle()
    crashing(world, 1, 2).settle()
    assert world.phase == Phase.PROGRESSING  # two crashes are not yet a loop
    crashing(world, 1, 3).advance(4).settle()
    assert world.phase == Phase.DEGRADED
    assert "crash-looping" in world.status.message
    assert "cannot execute 'pythn3'" in world.status.message
    assert Reason.DEGRADED in world.reasons()
    # It heals by itself, as after a passed deadline, once the revision comes up.
    world.ready(1).settle()
    assert world.phase == Phase.HEALTHY


def test_a_crash_looping_canary_degrades_with_traffic_on_stable() -> None:
    world = FakeWorld(rollout(STRATEGIES["canary"])).settle()
    assert world.phase == Phase.HEALTHY
    world.auto_ready = False
    world.apply(revision=2).settle()
    crashing(world, 2, 3).settle()
    assert world.phase == Phase.DEGRADED and "revision 2 is crash-looping" in world.status.message
    assert world.weights == {1: 100}


def test_a_blocked_rollout_plans_nothing_and_its_deadline_names_why() -> None:
    world = FakeWorld(rollout(STRATEGIES["canary"], progressDeadlineSeconds=30))
    why = "builtin router for 'chat' cannot listen on 127.0.0.1:8080: Address already in use"

    def tick() -> None:
        ctx = world.context()
        blocked = dataclasses.replace(ctx.observations, blocked=why)
        plan = engine_plan.plan(dataclasses.replace(ctx, observations=blocked))
        assert plan.actions == ()
        world.status = plan.status

    tick()
    assert world.phase == Phase.PROGRESSING and world.status.message == f"cannot serve: {why}"
    world.advance(31)
    tick()
    assert world.phase == Phase.DEGRADED
    assert "progressDeadlineSeconds" in world.status.message and why in world.status.message


def test_a_crash_loop_aborts_with_progress_deadline_abort() -> None:
    world = FakeWorld(rollout(STRATEGIES["canary"], progressDeadlineAbort=True)).settle()
    world.auto_ready = False
    world.apply(revision=2).settle()
    crashing(world, 2, 3).settle()
    assert world.phase == Phase.ABORTED
    assert "revision 2 is crash-looping" in world.status.message
    assert world.weights == {1: 100}


@pytest.mark.parametrize("strategy", ["canary", "rollingUpdate", "blueGreen"])
def test_a_healthy_rollout_whose_replicas_start_crash_looping_is_degraded_then_heals(
    strategy: str,
) -> None:
    world = FakeWorld(rollout(STRATEGIES[strategy])).settle()
    assert world.phase == Phase.HEALTHY
    crashing(world, 1, 3).settle()
    assert world.phase == Phase.DEGRADED
    assert "revision 1 is crash-looping" in world.status.message
    world.ready(1).settle()
    assert world.phase == Phase.HEALTHY
