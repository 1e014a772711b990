"""What every strategy shares: self-heal, pause/resume, history, idempotence, phase table."""

from __future__ import annotations

from typing import Any

import pytest

from changeover import errors
from changeover.engine import actions, commands, phases

from .world import FakeWorld, Phase, Reason, rollout

STRATEGIES: dict[str, dict[str, Any]] = {
    "recreate": {"recreate": {"pre": {"command": ["true"]}}},
    "rollingUpdate": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}},
    "blueGreen": {"blueGreen": {"autoPromotionEnabled": False}},
    "canary": {"canary": {"steps": [{"setWeight": 50}, {"pause": {"duration": "10s"}}]}},
    "abTest": {"abTest": {"userKey": {"header": "x-user"}}},
    "shadow": {"shadow": {"duration": "1m"}},
}


def drive(world: FakeWorld) -> None:
    """Push a rollout to the end whatever its strategy: hooks succeed, promote pauses."""
    for _ in range(20):
        world.settle()
        if world.phase == Phase.HEALTHY:
            return
        for hook in [h for h, r in world.hooks.items() if r.state == "running"]:
            world.hook_result(hook.split(":")[2], "succeeded")
        if world.phase == Phase.PAUSED:
            world.command(commands.promote)
        world.advance(60)
    raise AssertionError(f"did not finish: {world.status}")


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_rolls_out_and_back_with_allowed_transitions(name: str) -> None:
    world = FakeWorld(rollout(STRATEGIES[name]))
    drive(world)
    assert world.weights == {1: 100}
    world.apply(revision=2)
    drive(world)
    assert world.weights == {2: 100} and world.status.stable_revision == 2
    world.apply(revision=1)  # undo
    drive(world)
    world.advance(3600).settle()
    assert world.weights == {1: 100}
    assert world.desired(2) == 0 and world.desired(1) == 4
    assert world.transitions, "phases changed"
    for old, new in world.transitions:
        assert new in phases.TRANSITIONS[old], (old, new)
    assert world.status.strategy == name


def test_healthy_rollout_self_heals_by_rescaling() -> None:
    world = FakeWorld(rollout(STRATEGIES["canary"])).settle()
    world.lose_replica(1).clear()
    plan = world.tick()
    assert plan.actions == (actions.ScaleRevision(revision=1, replicas=4),)
    assert world.phase == Phase.HEALTHY


def test_replicas_change_rescales_a_healthy_rollout() -> None:
    world = FakeWorld(rollout(STRATEGIES["blueGreen"])).settle()
    world.apply(rollout(STRATEGIES["blueGreen"], replicas=6), revision=1).settle()
    assert world.desired(1) == 6 and world.phase == Phase.HEALTHY


def test_pause_and_resume_a_healthy_rollout_holds_a_new_revision() -> None:
    world = FakeWorld(rollout(STRATEGIES["canary"])).settle()
    world.command(commands.pause, now=world.now).settle()
    assert world.phase == Phase.PAUSED
    world.apply(revision=2).clear().settle()
    assert world.phase == Phase.PAUSED and world.desired(2) == 0
    assert world.reasons() == [Reason.UPDATED, Reason.PAUSED]
    world.clear().command(commands.resume).settle()
    assert world.reasons()[0] == Reason.RESUMED
    assert world.weights == {1: 50, 2: 50}
    with pytest.raises(errors.StateError, match="not paused"):
        commands.resume(world.status.model_copy(update={"pause": None}))


def test_resume_a_paused_healthy_rollout_is_healthy_again_without_completing() -> None:
    world = FakeWorld(rollout(STRATEGIES["canary"])).settle()
    world.command(commands.pause, now=world.now).settle()
    world.clear().command(commands.resume).settle()
    assert world.phase == Phase.HEALTHY and world.reasons() == [Reason.RESUMED]


def test_spec_paused_holds_like_a_user_pause() -> None:
    world = FakeWorld(rollout(STRATEGIES["canary"], paused=True)).settle()
    assert world.phase == Phase.PAUSED and world.desired(1) == 0


def test_history_beyond_the_limit_is_deleted() -> None:
    world = FakeWorld(rollout(STRATEGIES["blueGreen"] | {}, revisionHistoryLimit=1))
    drive(world)
    for revision in (2, 3, 4):
        world.apply(revision=revision)
        drive(world)
        world.advance(60).settle()
    deleted = [a.revision for a in world.of_type(actions.DeleteRevision)]
    assert deleted == [1, 2]
    assert sorted(world.replicas) == [3, 4]


def test_first_revision_deadline() -> None:
    world = FakeWorld(rollout(STRATEGIES["canary"], progressDeadlineSeconds=30), auto_ready=False)
    world.settle().advance(31).settle()
    assert world.phase == Phase.DEGRADED and world.status.deadline_exceeded
    world.ready(1).settle()
    assert world.phase == Phase.HEALTHY


def test_commands_refuse_what_does_not_apply() -> None:
    world = FakeWorld(rollout(STRATEGIES["canary"])).settle()
    with pytest.raises(errors.StateError, match="nothing to abort"):
        commands.abort(world.status, world.now)
    with pytest.raises(errors.StateError, match="retry needs an Aborted or Degraded"):
        commands.retry(world.status)
