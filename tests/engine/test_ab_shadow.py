"""A/B test and shadow: routes to B / a mirror to the new revision, then cut over."""

from __future__ import annotations

from typing import Any

from changeover.engine import actions, commands

from .world import FakeWorld, Phase, Reason, rollout

MATCH = [{"headerName": "x-variant", "headerValue": {"exact": "b"}}]


def started(strategy: dict[str, Any]) -> FakeWorld:
    world = FakeWorld(rollout(strategy))
    world.settle()
    return world.apply(revision=2).clear()


def test_ab_test_with_duration_runs_then_promotes() -> None:
    world = started(
        {
            "abTest": {
                "match": MATCH,
                "userKey": {"header": "x-user"},
                "weight": 10,
                "duration": "1h",
            }
        }
    )
    world.settle()
    assert world.desired(2) == 4 and world.desired(1) == 4
    assert world.weights == {1: 100}  # unmatched traffic stays on A
    (route,) = world.of_type(actions.SetHeaderRoute)
    assert route.name == "ab-match" and route.revision == 2
    (split,) = world.of_type(actions.SetStickySplit)
    assert split.revision == 2 and split.weight == 10
    assert world.phase == Phase.PROGRESSING and "A/B test running" in world.status.message

    world.advance(3599).settle()  # a long test is not a missed progress deadline
    assert world.phase == Phase.PROGRESSING
    world.advance(1).settle()
    assert world.phase == Phase.HEALTHY and world.weights == {2: 100}
    assert world.of_type(actions.RemoveManagedRoutes)
    assert world.status.traffic.header_routes == {} and world.status.traffic.sticky is None


def test_ab_test_without_duration_waits_for_promote() -> None:
    world = started({"abTest": {"match": MATCH}}).settle()
    assert world.phase == Phase.PAUSED and world.status.pause is not None
    assert world.status.pause.reason == "promotion"
    assert not world.of_type(actions.SetStickySplit)
    world.command(commands.promote).settle()
    assert world.phase == Phase.HEALTHY and world.status.stable_revision == 2


def test_ab_test_abort_removes_routes() -> None:
    world = started({"abTest": {"userKey": {"cookie": "uid"}}}).settle()
    world.command(commands.abort, now=world.now).settle()
    assert world.phase == Phase.ABORTED and world.weights == {1: 100}
    assert world.status.traffic.sticky is None
    assert world.of_type(actions.RemoveManagedRoutes)


def test_shadow_mirrors_then_promotes_after_duration() -> None:
    world = started({"shadow": {"percentage": 20, "duration": "10m", "replicas": 1}}).settle()
    assert world.desired(2) == 1
    (mirror,) = world.of_type(actions.SetMirror)
    assert mirror == actions.SetMirror(name="shadow", revision=2, percentage=20)
    assert world.weights == {1: 100} and world.phase == Phase.PROGRESSING
    world.advance(600).settle()
    assert world.phase == Phase.HEALTHY and world.weights == {2: 100}
    assert world.desired(2) == 4 and world.status.traffic.mirrors == {}
    assert Reason.COMPLETED in world.reasons()


def test_shadow_without_duration_waits_for_promote_and_abort_removes_mirror() -> None:
    world = started({"shadow": {}}).settle()
    assert world.phase == Phase.PAUSED
    world.clear().command(commands.abort, now=world.now).settle()
    assert world.phase == Phase.ABORTED and world.status.traffic.mirrors == {}
    assert world.of_type(actions.RemoveManagedRoutes)
    assert world.weights == {1: 100}
