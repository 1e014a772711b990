"""Blue-green: preview, promotion (manual, timed, automatic), atomic switch, scale-down."""

from __future__ import annotations

from typing import Any

from changeover.engine import actions, commands

from .world import FakeWorld, Phase, Reason, rollout


def started(**blue_green: Any) -> FakeWorld:
    world = FakeWorld(rollout({"blueGreen": blue_green}))
    world.settle()
    return world.apply(revision=2).clear()


def test_manual_promotion_switches_atomically_and_scales_old_down_after_delay() -> None:
    world = started(autoPromotionEnabled=False, scaleDownDelaySeconds="1m", previewReplicaCount=1)
    world.settle()
    assert world.desired(2) == 1 and world.desired(1) == 4
    assert world.status.traffic.preview_revision == 2
    assert world.weights == {1: 100}
    assert world.phase == Phase.PAUSED and world.status.pause is not None
    assert world.status.pause.reason == "promotion"

    world.clear().command(commands.promote).settle()
    assert world.phase == Phase.HEALTHY
    assert world.desired(2) == 4  # scaled from the preview count to full before switching
    assert world.weights == {2: 100} and world.status.traffic.preview_revision is None
    assert actions.SetWeight.of({2: 100}) in world.actions
    assert Reason.SWITCHED in world.reasons()
    assert world.status.scale_down_at == {"1": world.now + 60}
    world.advance(59).settle()
    assert world.desired(1) == 4
    world.advance(1).settle()
    assert world.desired(1) == 0


def test_switch_waits_for_full_availability() -> None:
    world = started(autoPromotionEnabled=False, previewReplicaCount=1).settle()
    world.auto_ready = False
    world.command(commands.promote).settle()
    assert world.desired(2) == 4 and world.weights == {1: 100}
    assert world.phase == Phase.PROGRESSING
    world.ready(2).settle()
    assert world.weights == {2: 100} and world.phase == Phase.HEALTHY


def test_auto_promotion_seconds() -> None:
    world = started(autoPromotionSeconds="2m").settle()
    assert world.phase == Phase.PAUSED and world.status.pause is not None
    assert world.status.pause.until == world.now + 120
    world.advance(119).settle()
    assert world.weights == {1: 100}
    world.advance(1).settle()
    assert world.phase == Phase.HEALTHY and world.weights == {2: 100}


def test_auto_promotion_enabled_switches_once_available() -> None:
    world = started().settle()
    assert world.phase == Phase.HEALTHY and world.weights == {2: 100}
    assert world.transitions[-1] == (Phase.PROGRESSING, Phase.HEALTHY)


def test_abort_removes_preview_and_keeps_stable() -> None:
    world = started(autoPromotionEnabled=False).settle()
    world.clear().command(commands.abort, now=world.now).settle()
    assert world.phase == Phase.ABORTED
    assert world.weights == {1: 100} and world.status.traffic.preview_revision is None
    assert actions.SetPreview(revision=None) in world.actions
    world.advance(30).settle()
    assert world.desired(2) == 0


def test_new_revision_during_preview_replaces_it() -> None:
    world = started(autoPromotionEnabled=False).settle()
    world.apply(revision=3).settle()
    assert world.status.traffic.preview_revision == 3
    assert world.desired(2) == 0 and world.phase == Phase.PAUSED
