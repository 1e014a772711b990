"""Canary: given steps and observations, when the clock moves / a human acts, then...."""

from __future__ import annotations

from typing import Any

import pytest

from changeover import errors
from changeover.engine import actions, commands

from .world import FakeWorld, Phase, Reason, rollout

STEPS = [
    {"setWeight": 25},
    {"pause": {}},
    {"setWeight": 50},
    {"pause": {"duration": "30s"}},
]


def started(steps: list[dict[str, Any]] | None = None, **spec: Any) -> FakeWorld:
    """Revision 1 is Healthy; revision 2 has just been applied."""
    world = FakeWorld(rollout({"canary": {"steps": STEPS if steps is None else steps}}, **spec))
    world.settle()
    assert world.phase == Phase.HEALTHY and world.weights == {1: 100}
    return world.apply(revision=2).clear()


def test_first_revision_scales_up_and_becomes_healthy() -> None:
    world = FakeWorld(rollout({"canary": {"steps": STEPS}}), auto_ready=False)
    plan = world.tick()
    assert actions.ScaleRevision(revision=1, replicas=4) in plan.actions
    assert world.weights == {1: 100} and world.phase == Phase.PROGRESSING
    assert world.tick().actions == ()  # waiting for replicas: nothing new
    world.ready(1).settle()
    assert world.phase == Phase.HEALTHY
    assert world.status.stable_revision == 1 and world.status.canary_revision is None
    assert Reason.COMPLETED in world.reasons()


def test_steps_pause_until_promote_then_timed_pause_then_full_promotion() -> None:
    world = started().settle()
    # setWeight 25 → ceil(4*25/100) = 1 canary replica, stable stays at 4
    assert world.desired(2) == 1 and world.desired(1) == 4
    assert world.weights == {1: 75, 2: 25}
    assert world.phase == Phase.PAUSED and world.status.current_step_index == 1
    assert world.status.pause is not None and world.status.pause.until is None
    assert world.reasons()[0] == Reason.UPDATED

    world.advance(3600).settle()  # an indefinite pause does not time out
    assert world.phase == Phase.PAUSED

    world.command(commands.promote).settle()
    assert world.weights == {1: 50, 2: 50} and world.desired(2) == 2
    assert world.phase == Phase.PAUSED and world.status.pause is not None
    assert world.status.pause.until == world.now + 30

    world.advance(29).settle()
    assert world.phase == Phase.PAUSED
    world.clear().advance(1).settle()
    assert world.phase == Phase.HEALTHY
    assert world.weights == {2: 100}
    assert world.status.stable_revision == 2 and world.status.canary_revision is None
    assert world.status.current_step_index == 4
    assert world.desired(2) == 4 and world.desired(1) == 4  # old scaled down after a delay
    assert str(1) in world.status.scale_down_at
    assert Reason.COMPLETED in world.reasons()

    world.advance(30).settle()
    assert world.desired(1) == 0 and world.status.scale_down_at == {}


def test_weight_waits_for_canary_available() -> None:
    world = started()
    world.auto_ready = False
    plan = world.tick()
    assert actions.ScaleRevision(revision=2, replicas=1) in plan.actions
    assert world.weights == {1: 100}
    assert world.tick().actions == ()
    world.ready(2).settle()
    assert world.weights == {1: 75, 2: 25}


def test_promote_full_jumps_to_the_end() -> None:
    world = started().settle()
    world.command(commands.promote, full=True).settle()
    assert world.phase == Phase.HEALTHY and world.weights == {2: 100}
    assert Reason.PROMOTED in world.reasons()


def test_promote_when_healthy_is_a_state_error() -> None:
    world = started([]).settle()
    assert world.phase == Phase.HEALTHY
    with pytest.raises(errors.StateError, match="nothing to promote"):
        commands.promote(world.status)


def test_abort_returns_traffic_then_scales_canary_down_after_delay() -> None:
    world = started().settle()
    world.command(commands.abort, now=world.now).clear().settle()
    assert world.phase == Phase.ABORTED
    assert world.weights == {1: 100}
    assert world.status.message.startswith("Rollout aborted")
    assert world.desired(2) == 1  # abortScaleDownDelaySeconds (30s) not over yet
    world.advance(30).settle()
    assert world.desired(2) == 0
    assert world.reasons()[0] == Reason.ABORTED
    with pytest.raises(errors.StateError, match="already Aborted"):
        commands.abort(world.status, world.now)


def test_abort_removes_managed_routes() -> None:
    steps = [
        {
            "setHeaderRoute": {
                "name": "beta",
                "match": [{"headerName": "x-beta", "headerValue": {"exact": "1"}}],
            }
        },
        {"setMirrorRoute": {"name": "copy", "percentage": 10}},
        {"pause": {}},
    ]
    world = started(steps).settle()
    assert set(world.status.traffic.header_routes) == {"beta"}
    assert set(world.status.traffic.mirrors) == {"copy"}
    world.command(commands.abort, now=world.now).settle()
    assert world.of_type(actions.RemoveManagedRoutes)
    assert world.status.traffic.header_routes == {} and world.status.traffic.mirrors == {}


def test_retry_after_abort_restarts_from_step_zero() -> None:
    world = started().settle()
    world.command(commands.promote).settle()  # at step 3 (50%)
    world.command(commands.abort, now=world.now).advance(60).settle()
    assert world.desired(2) == 0
    world.clear().command(commands.retry).settle()
    assert world.reasons()[0] == Reason.RETRIED
    assert world.status.current_step_index == 1 and world.phase == Phase.PAUSED
    assert world.weights == {1: 75, 2: 25} and world.desired(2) == 1
    assert str(2) not in world.status.scale_down_at


def test_new_revision_mid_rollout_restarts_with_the_new_canary() -> None:
    world = started().settle()
    world.command(commands.promote).settle()
    assert world.weights == {1: 50, 2: 50}
    world.clear().apply(revision=3).settle()
    assert world.status.canary_revision == 3 and world.status.target_revision == 3
    assert world.weights == {1: 75, 3: 25}
    assert world.desired(2) == 0  # abandoned canary scaled down at once
    assert world.status.current_step_index == 1 and world.phase == Phase.PAUSED


def test_undo_to_stable_mid_rollout_goes_straight_back() -> None:
    world = started().settle()
    world.clear().apply(revision=1).settle()
    assert world.phase == Phase.HEALTHY and world.weights == {1: 100}
    assert world.desired(2) == 0 and world.status.canary_revision is None


def test_set_canary_scale_overrides_weight_replicas() -> None:
    steps = [{"setCanaryScale": {"replicas": 3}}, {"setWeight": 10}, {"pause": {}}]
    world = started(steps).settle()
    assert world.desired(2) == 3 and world.weights == {1: 90, 2: 10}


def test_user_pause_holds_a_timed_pause_and_resume_restarts_it() -> None:
    world = started([{"setWeight": 25}, {"pause": {"duration": "1m"}}]).settle()
    world.command(commands.pause, now=world.now).settle()
    assert world.phase == Phase.PAUSED and world.status.pause is not None
    assert world.status.pause.reason == "user"
    world.advance(120).settle()
    assert world.phase == Phase.PAUSED  # the user's pause wins over the step's timer
    with pytest.raises(errors.StateError, match="already paused"):
        commands.pause(world.status, world.now)
    world.clear().command(commands.resume).settle()
    assert world.reasons()[0] == Reason.RESUMED
    assert world.status.pause is not None and world.status.pause.reason == "step"
    world.advance(60).settle()
    assert world.phase == Phase.HEALTHY


def test_resume_of_a_step_pause_asks_for_promote() -> None:
    world = started().settle()
    with pytest.raises(errors.StateError, match="use promote"):
        commands.resume(world.status)


def test_canary_never_available_hits_the_progress_deadline() -> None:
    world = started(progressDeadlineSeconds=60)
    world.auto_ready = False
    world.settle()
    world.advance(61).clear().settle()
    assert world.phase == Phase.DEGRADED
    assert "progressDeadlineSeconds" in world.status.message
    assert Reason.DEADLINE in world.reasons()
    world.ready(2).clear().settle()  # progress again: heals and carries on
    assert world.phase == Phase.PAUSED and world.weights == {1: 75, 2: 25}


def test_every_step_emits_events_once() -> None:
    world = started().settle()
    counts = [r for r in world.reasons() if r == Reason.PAUSED]
    assert len(counts) == 1
    for _ in range(3):
        assert world.tick().events == ()


def test_lower_weight_moves_traffic_before_shrinking_the_canary() -> None:
    world = started([{"setWeight": 50}, {"pause": {}}, {"setWeight": 25}, {"pause": {}}])
    world.settle()
    assert world.desired(2) == 2 and world.weights == {1: 50, 2: 50}
    world.clear().command(commands.promote).settle()
    kinds = [type(a).__name__ for a in world.actions]
    assert kinds == ["SetWeight", "ScaleRevision"]
    assert world.actions[1] == actions.ScaleRevision(revision=2, replicas=1)
    assert world.weights == {1: 75, 2: 25}


def test_abort_scale_down_delay_from_the_spec() -> None:
    world = FakeWorld(
        rollout({"canary": {"steps": STEPS, "abortScaleDownDelaySeconds": "5s"}})
    ).settle()
    world.apply(revision=2).settle()
    world.command(commands.abort, now=world.now).settle()
    world.advance(4).settle()
    assert world.desired(2) == 1
    world.advance(1).settle()
    assert world.desired(2) == 0
