"""Recreate: maintenance page, old down, hooks pre/mid/post, new up, downtime reported."""

from __future__ import annotations

from typing import Any

import pytest

from changeover import errors
from changeover.engine import actions, commands
from changeover.engine.context import RevisionObservation

from .world import FakeWorld, Phase, Reason, rollout

HOOK = {"command": ["migrate"]}


def started(**recreate: Any) -> FakeWorld:
    world = FakeWorld(rollout({"recreate": recreate}))
    world.settle()
    return world.apply(revision=2).clear()


def test_without_hooks() -> None:
    world = started()
    world.auto_ready = False
    world.tick()
    assert world.status.traffic.maintenance
    assert actions.SetMaintenance(enabled=True) in world.actions
    assert actions.ScaleRevision(revision=1, replicas=0) in world.actions
    assert world.desired(2) == 0  # new does not start while old replicas are still ready
    world.ready(1, 0).settle()
    assert world.desired(2) == 4 and world.weights == {1: 100}
    world.ready(2).settle()
    assert world.phase == Phase.HEALTHY and world.weights == {2: 100}
    assert not world.status.traffic.maintenance
    downtime = [e.message for e in world.events if e.reason == Reason.DOWNTIME]
    assert len(downtime) == 2 and "ended after" in downtime[1]


def test_new_revision_waits_until_old_replicas_have_drained_and_stopped() -> None:
    world = started()
    world.auto_ready = False
    world.tick()
    assert world.desired(1) == 0
    # Not ready any more, but still finishing the requests and streams in flight.
    world.replicas[1] = RevisionObservation(
        revision=1, desired=0, ready=0, available=0, terminating=2
    )
    world.settle()
    assert world.desired(2) == 0 and world.status.traffic.maintenance
    assert "finish their requests" in world.status.message
    world.advance(3600).settle()  # a drain is bounded by the grace period, not the deadline
    assert world.phase == Phase.PROGRESSING
    world.replicas[1] = RevisionObservation(revision=1, desired=0, ready=0, available=0)
    world.settle()
    assert world.desired(2) == 4


def test_hooks_run_in_order_each_waiting_for_its_result() -> None:
    world = started(pre=HOOK, mid=HOOK, post=HOOK).settle()
    (run,) = world.of_type(actions.RunHook)
    assert run.hook_id.startswith("web:2:pre")
    assert world.desired(1) == 4 and not world.status.traffic.maintenance

    world.hook_result("pre", "succeeded").settle()
    assert world.desired(1) == 0 and world.status.traffic.maintenance
    assert [a.hook_id.split(":")[2] for a in world.of_type(actions.RunHook)] == ["pre", "mid"]
    assert world.desired(2) == 0

    world.hook_result("mid", "succeeded").settle()
    assert world.desired(2) == 4 and world.weights == {2: 100}
    assert not world.status.traffic.maintenance
    assert world.phase == Phase.PROGRESSING  # post hook still running

    world.hook_result("post", "succeeded").settle()
    assert world.phase == Phase.HEALTHY
    assert world.reasons().count(Reason.HOOK_STARTED) == 3
    assert world.reasons().count(Reason.HOOK_SUCCEEDED) == 3


def test_hook_failure_abort_degrades_and_brings_stable_back() -> None:
    world = started(mid=HOOK).settle()
    assert world.desired(1) == 0
    world.hook_result("mid", "failed", "migration 42 failed").settle()
    assert world.phase == Phase.DEGRADED
    assert "mid hook failed: migration 42 failed" in world.status.message
    assert world.desired(1) == 4 and world.desired(2) == 0
    assert not world.status.traffic.maintenance  # stable is back
    assert Reason.HOOK_FAILED in world.reasons()
    world.advance(3600).settle()
    assert world.phase == Phase.DEGRADED  # does not heal by itself

    world.clear().command(commands.retry).settle()
    assert world.reasons()[0] == Reason.RETRIED
    (rerun,) = world.of_type(actions.RunHook)  # a fresh hook id: the hook runs again
    assert rerun.hook_id.startswith("web:2:mid")
    world.hook_result("mid", "succeeded").settle()
    assert world.phase == Phase.HEALTHY and world.weights == {2: 100}


def test_hook_failure_ignore_continues() -> None:
    world = started(pre={**HOOK, "failurePolicy": "Ignore"}).settle()
    world.hook_result("pre", "failed", "cache warm-up failed").settle()
    assert world.phase == Phase.HEALTHY
    failed = [e.message for e in world.events if e.reason == Reason.HOOK_FAILED]
    assert failed and "Ignore" in failed[0]


def test_abort_mid_recreate_restores_stable() -> None:
    world = started(mid=HOOK).settle()
    with pytest.raises(errors.StateError, match="no steps"):
        commands.promote(world.status)
    world.command(commands.abort, now=world.now).settle()
    assert world.phase == Phase.ABORTED
    assert world.desired(1) == 4 and world.weights == {1: 100}
    assert not world.status.traffic.maintenance
