"""The engine gives Argo Rollouts' words Argo's meaning (issue 13): a ``setMirrorRoute``
without ``match`` or ``percentage`` removes the mirror route, on every router."""

from __future__ import annotations

from typing import Any

from changeover.engine import actions, commands

from .world import FakeWorld, Phase, rollout

HEADER = [{"headerName": "x-mirror", "headerValue": {"exact": "yes"}}]


def started(steps: list[dict[str, Any]]) -> FakeWorld:
    world = FakeWorld(rollout({"canary": {"steps": steps}}))
    world.settle()
    assert world.phase == Phase.HEALTHY
    return world.apply(revision=2).clear()


def test_set_mirror_route_without_match_removes_the_mirror() -> None:
    # Argo Rollouts' docs (features/traffic-management: "Mirroring"): add, then remove.
    steps = [
        {"setWeight": 20},
        {"setMirrorRoute": {"name": "mirror-route", "match": HEADER, "percentage": 35}},
        {"pause": {}},
        {"setMirrorRoute": {"name": "mirror-route"}},
        {"pause": {}},
    ]
    world = started(steps).settle()
    assert world.status.current_step_index == 2
    mirror = world.status.traffic.mirrors["mirror-route"]
    assert mirror.percentage == 35 and mirror.revision == 2
    world.clear().command(commands.promote).settle()
    assert world.status.current_step_index == 4 and world.phase == Phase.PAUSED
    assert world.status.traffic.mirrors == {}
    removed = world.of_type(actions.SetMirror)
    assert removed == [actions.SetMirror(name="mirror-route", revision=None)]


def test_a_match_without_percentage_copies_every_matching_request() -> None:
    world = started([{"setMirrorRoute": {"name": "m", "match": HEADER}}, {"pause": {}}]).settle()
    assert world.status.traffic.mirrors["m"].percentage == 100


def test_a_bare_mirror_step_first_sends_no_traffic_and_copies_nothing() -> None:
    world = started([{"setMirrorRoute": {"name": "m"}}, {"pause": {}}]).settle()
    assert world.status.current_step_index == 1 and world.status.traffic.mirrors == {}
    assert world.of_type(actions.SetMirror) == []
