"""Webhook gates in the engine: given Flagger-style webhooks, when they answer, then...

The FakeWorld plays the webhook runner: ``CallWebhook`` makes a waiting call, the test says
how it answers (``world.webhook_result("confirm-promotion", "approve", "passed")``).
"""

from __future__ import annotations

from typing import Any

from changeover.engine import actions, commands

from .world import FakeWorld, Phase, Reason, rollout


def hook(kind: str, name: str | None = None) -> dict[str, Any]:
    return {"name": name or kind, "type": kind, "url": f"http://127.0.0.1:9/{kind}"}


def started(strategy: dict[str, Any], *hooks: dict[str, Any]) -> FakeWorld:
    world = FakeWorld(rollout(strategy, webhooks=list(hooks)))
    world.settle()
    assert world.phase == Phase.HEALTHY  # the first revision passes no gate
    assert world.of_type(actions.CallWebhook) == []
    return world.apply(revision=2).clear()


CANARY = {"canary": {"steps": [{"setWeight": 25}, {"setWeight": 50}]}}


def test_confirm_rollout_keeps_the_new_revision_from_starting_until_it_passes() -> None:
    world = started(CANARY, hook("confirm-rollout", "approve")).settle()
    assert world.desired(2) == 0 and world.weights == {1: 100}
    assert (
        world.phase == Phase.PROGRESSING and "waiting for confirm-rollout" in world.status.message
    )
    (call,) = world.of_type(actions.CallWebhook)
    assert call.webhook.name == "approve" and call.revision == 2 and call.phase == "Progressing"

    world.advance(3600).settle()  # waiting for a human is not a stuck rollout
    assert world.phase == Phase.PROGRESSING

    world.webhook_result("confirm-rollout", "approve", "passed").settle()
    assert world.phase == Phase.HEALTHY and world.weights == {2: 100}
    assert Reason.WEBHOOK_PASSED in world.reasons()


def test_pre_rollout_is_called_before_the_canary_gets_traffic_and_its_failure_aborts() -> None:
    world = started(CANARY, hook("pre-rollout", "acceptance")).settle()
    assert world.desired(2) == 1 and world.weights == {1: 100}  # up, but no traffic yet
    world.webhook_result("pre-rollout", "acceptance", "failed", "HTTP 500").settle()
    assert world.phase == Phase.ABORTED and world.weights == {1: 100}
    assert "pre-rollout webhook acceptance: HTTP 500" in world.status.message


def test_confirm_traffic_increase_gates_every_weight_increase() -> None:
    world = started(CANARY, hook("confirm-traffic-increase", "ok")).settle()
    assert world.weights == {1: 100}
    world.webhook_result("confirm-traffic-increase", "ok", "passed").settle()
    assert world.weights == {1: 75, 2: 25}  # the next increase asks again
    world.webhook_result("confirm-traffic-increase", "ok", "passed").settle()
    assert world.weights == {2: 100}  # the last step's increase passed: promoted


def test_confirm_promotion_holds_the_final_cut_over() -> None:
    world = started(CANARY, hook("confirm-promotion", "ship-it")).settle()
    assert world.weights == {1: 50, 2: 50} and world.phase == Phase.PROGRESSING
    world.webhook_result("confirm-promotion", "ship-it", "passed").settle()
    assert world.phase == Phase.HEALTHY and world.weights == {2: 100}


def test_post_rollout_is_sent_once_when_the_rollout_completes() -> None:
    world = started(CANARY, hook("post-rollout", "tell")).settle()
    calls = world.of_type(actions.CallWebhook)
    assert [c.webhook.name for c in calls] == ["tell"] and calls[0].phase == "Healthy"
    world.settle()
    assert len(world.of_type(actions.CallWebhook)) == 1


def test_a_rollback_webhook_answering_2xx_aborts() -> None:
    world = started({"canary": {"steps": [{"setWeight": 25}, {"pause": {}}]}}, hook("rollback"))
    world.settle()
    assert world.phase == Phase.PAUSED
    world.webhook_result("rollback", "rollback", "passed").settle()
    assert world.phase == Phase.ABORTED and world.weights == {1: 100}
    assert "rollback webhook" in world.status.message


def test_rollout_webhooks_run_while_in_flight_and_stop_when_done() -> None:
    world = started(
        {"canary": {"steps": [{"setWeight": 25}, {"pause": {}}]}}, hook("rollout", "load")
    )
    world.settle()
    (call,) = world.of_type(actions.CallWebhook)
    assert call.webhook.type == "rollout"
    world.clear().command(commands.promote).settle()
    assert world.phase == Phase.HEALTHY
    assert [a.call_id for a in world.of_type(actions.StopWebhook)] == [call.call_id]


def test_a_failing_rollout_webhook_aborts() -> None:
    world = started(CANARY, hook("confirm-promotion", "gate"), hook("rollout", "load")).settle()
    world.webhook_result("rollout", "load", "failed", "4 failed calls > failureLimit 3").settle()
    assert world.phase == Phase.ABORTED
    assert "rollout webhook load" in world.status.message


def test_rolling_update_waits_for_pre_rollout() -> None:
    world = started({"rollingUpdate": {}}, hook("pre-rollout", "smoke")).settle()
    assert world.desired(2) == 0
    world.webhook_result("pre-rollout", "smoke", "passed").settle()
    assert world.phase == Phase.HEALTHY and world.desired(2) == 4


def test_blue_green_confirm_promotion_gates_the_switch() -> None:
    world = started({"blueGreen": {"previewPort": 8081}}, hook("confirm-promotion", "qa")).settle()
    assert world.status.traffic.preview_revision == 2 and world.weights == {1: 100}
    world.webhook_result("confirm-promotion", "qa", "passed").settle()
    assert world.phase == Phase.HEALTHY and world.weights == {2: 100}
