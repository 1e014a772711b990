"""Going back: reverts, rollbackWindow, the revisions undo returns to, progressDeadlineAbort."""

from __future__ import annotations

from typing import Any

from changeover.engine import actions, commands, rollback
from changeover.engine.status import RolloutStatus

from .world import FakeWorld, Phase, Reason, rollout

STEPS = [{"setWeight": 25}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}]


def canary(**spec: Any) -> FakeWorld:
    """Revisions 1, 2 and 3 each rolled out in turn (3 stable), through every step."""
    world = FakeWorld(rollout({"canary": {"steps": STEPS}}, **spec)).settle()
    for revision in (2, 3):
        world.apply(revision=revision).settle()
        while world.phase != Phase.HEALTHY:
            world.command(commands.promote).settle()
    assert world.status.stable_revision == 3
    return world.clear()


def test_template_equal_to_stable_while_a_canary_is_aborted_goes_back_at_once() -> None:
    world = canary()
    world.apply(revision=4).settle()
    world.command(commands.abort, now=world.now).settle()
    assert world.phase == Phase.ABORTED
    world.clear().apply(revision=3).settle()  # the reverted commit, re-applied
    assert world.phase == Phase.HEALTHY and world.weights == {3: 100}
    assert world.status.canary_revision is None
    assert not world.of_type(actions.StartAnalysis) and Reason.PAUSED not in world.reasons()


def test_going_back_within_the_rollback_window_skips_steps_and_analysis() -> None:
    world = canary(rollbackWindow={"revisions": 2})
    world.apply(revision=2).settle()  # stable 3, window 2: revisions 3 and 2
    assert world.phase == Phase.HEALTHY and world.weights == {2: 100}
    assert world.status.stable_revision == 2 and not world.status.fast_track
    assert Reason.PAUSED not in world.reasons()
    assert "no steps, no analysis" in world.events[0].message
    world.advance(30).settle()
    assert world.desired(3) == 0  # the old stable scaled down after the usual delay


def test_going_back_outside_the_rollback_window_runs_the_steps() -> None:
    world = canary(rollbackWindow={"revisions": 2})
    world.apply(revision=1).settle()  # two revisions back: outside
    assert world.phase == Phase.PAUSED and world.weights == {3: 75, 1: 25}
    without = canary()
    without.apply(revision=2).settle()
    assert without.phase == Phase.PAUSED and without.weights == {3: 75, 2: 25}


def test_blue_green_back_to_a_revision_still_scaled_up_is_instant() -> None:
    spec = {"blueGreen": {"autoPromotionEnabled": False, "scaleDownDelaySeconds": "30s"}}
    world = FakeWorld(rollout(spec)).settle()
    world.apply(revision=2).settle()
    world.command(commands.promote).settle()
    assert world.phase == Phase.HEALTHY and world.desired(1) == 4  # within its delay
    world.clear().apply(revision=1).settle()
    assert world.phase == Phase.HEALTHY and world.weights == {1: 100}
    assert world.status.traffic.preview_revision is None


def test_healthy_revisions_remember_what_undo_goes_back_to() -> None:
    world = canary()
    assert world.status.healthy_revisions == [1, 2, 3]
    world.apply(revision=4).settle()
    world.command(commands.abort, now=world.now).settle()
    assert world.status.healthy_revisions == [1, 2, 3]  # 4 never was Healthy
    world.apply(revision=2).settle()
    while world.phase != Phase.HEALTHY:
        world.command(commands.promote).settle()
    assert world.status.healthy_revisions == [1, 3, 2]


def test_progress_deadline_abort_puts_all_traffic_back_on_stable() -> None:
    deadline = {"progressDeadlineSeconds": 60, "progressDeadlineAbort": True}
    world = FakeWorld(rollout({"canary": {"steps": STEPS}}, **deadline)).settle()
    world.auto_ready = False
    world.apply(revision=2).settle()
    assert world.phase == Phase.PROGRESSING and world.weights == {1: 100}
    world.advance(61).settle()
    assert world.phase == Phase.ABORTED and world.weights == {1: 100}
    assert Reason.DEADLINE in world.reasons() and Reason.ABORTED in world.reasons()
    assert "progressDeadlineSeconds" in world.status.message
    world.advance(30).settle()
    assert world.desired(2) == 0


def test_progress_deadline_without_abort_only_degrades() -> None:
    world = FakeWorld(rollout({"canary": {"steps": STEPS}}, progressDeadlineSeconds=60)).settle()
    world.auto_ready = False
    world.apply(revision=2).settle()
    world.advance(61).settle()
    assert world.phase == Phase.DEGRADED and world.desired(2) == 1


def test_rolling_update_deadline_abort_rolls_back() -> None:
    world = FakeWorld(
        rollout({"rollingUpdate": {}}, progressDeadlineSeconds=60, progressDeadlineAbort=True)
    ).settle()
    world.auto_ready = False
    world.apply(revision=2).settle()
    world.advance(61).settle()
    assert world.phase == Phase.ABORTED
    world.settle()
    assert world.desired(2) == 0 and world.desired(1) == 4 and world.weights == {1: 100}


def test_undo_target_is_the_last_healthy_revision_other_than_the_current() -> None:
    status = RolloutStatus(healthy_revisions=[1, 3, 2])
    assert rollback.undo_target(status, 4, {1, 2, 3, 4}) == 2
    assert rollback.undo_target(status, 2, {1, 2, 3, 4}) == 3
    assert rollback.undo_target(status, 2, {1, 2, 4}) == 1  # 3 was pruned
    # A status from before healthyRevisions: the highest earlier number, as before.
    assert rollback.undo_target(RolloutStatus(), 3, {1, 2, 3}) == 2
    assert rollback.undo_target(RolloutStatus(), 1, {1}) is None


def test_canary_scale_down_delay_keeps_the_old_stable_that_long() -> None:
    world = FakeWorld(rollout({"canary": {"steps": STEPS, "scaleDownDelaySeconds": "5s"}}))
    world.settle().apply(revision=2).settle()
    while world.phase != Phase.HEALTHY:
        world.command(commands.promote).settle()
    assert world.weights == {2: 100} and world.desired(1) == 4
    world.advance(5).settle()
    assert world.desired(1) == 0
