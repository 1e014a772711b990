"""Flagger's check-gated steps (``spec.checks`` + canary ``check`` steps) in the engine.

Given a canary whose steps wait for checks (one every interval: each metric measured once,
each ``rollout`` webhook called once), when checks pass or fail, then the weight advances
only after a passing check, failed checks are counted across the whole rollout and
``threshold`` of them abort it, and ``pre-rollout`` failures are failed checks retried an
interval later (Flagger's scheduler). The FakeWorld plays the analysis and webhook runners.
"""

from __future__ import annotations

from typing import Any

from changeover.engine import actions, commands

from .world import FakeWorld, Phase, Reason, rollout

INTERVAL = 60.0
METRIC = {
    "name": "request-success-rate",
    "successCondition": "result[-1] >= 99",
    "provider": {"prometheus": {"address": "http://127.0.0.1:9", "query": "up"}},
}


def gated(*weights: int, threshold: int = 3, metrics: bool = True, **spec: Any) -> FakeWorld:
    """Revision 1 Healthy; revision 2 applied; steps: setWeight w, check (per weight)."""
    steps: list[dict[str, Any]] = []
    for weight in weights:
        steps += [{"setWeight": weight}, {"check": {}}]
    checks: dict[str, Any] = {"interval": "60s", "threshold": threshold}
    if metrics:
        checks["metrics"] = [METRIC]
    world = FakeWorld(rollout({"canary": {"steps": steps}}, checks=checks, **spec))
    world.settle()
    assert world.phase == Phase.HEALTHY
    return world.apply(revision=2).clear().settle()


def check(world: FakeWorld, n: int, phase: str) -> FakeWorld:
    """Check ``n``'s measurement comes back, an interval after the check started."""
    world.analysis_result(f"check{n}", phase)  # type: ignore[arg-type]
    return world.advance(INTERVAL).settle()


def test_a_failing_canary_never_gets_past_its_first_weight_and_rolls_back_at_threshold() -> None:
    world = gated(20, 40, 60, threshold=3)
    assert world.weights == {1: 80, 2: 20} and world.running_analysis() == ["web-2-1-check0"]
    (start,) = world.of_type(actions.StartAnalysis)
    assert start.kind == "check" and start.measure_once_after == INTERVAL
    check(world, 0, "Failed")
    assert world.weights == {1: 80, 2: 20} and world.status.checks.failed == 1
    assert world.running_analysis() == ["web-2-1-check1"]  # retried an interval later
    check(world, 1, "Error")  # no value (Flagger: "no values found") is a failed check
    assert world.weights == {1: 80, 2: 20} and world.phase == Phase.PROGRESSING
    check(world, 2, "Failed")
    assert world.phase == Phase.ABORTED and world.weights == {1: 100}
    assert "3 failed checks reached the threshold 3" in world.status.message
    assert world.reasons().count(Reason.CHECK_FAILED) == 3
    assert all(a.as_dict().get(2, 0) <= 20 for a in world.of_type(actions.SetWeight))


def test_a_healthy_canary_advances_one_weight_per_passing_check_then_promotes() -> None:
    world = gated(20, 40)
    check(world, 0, "Successful")
    assert world.weights == {1: 60, 2: 40} and world.phase == Phase.PROGRESSING
    assert world.running_analysis() == ["web-2-1-check1"]
    check(world, 1, "Successful")  # Flagger checks at maxWeight too before promoting
    assert world.phase == Phase.HEALTHY and world.weights == {2: 100}
    assert world.reasons().count(Reason.CHECK_PASSED) == 2


def test_the_weight_waits_for_the_interval_even_when_the_answer_is_early() -> None:
    world = gated(50, metrics=False, webhooks=[_hook("rollout", "load")])
    world.webhook_result("rollout", "load", "passed").settle()
    assert world.weights == {1: 50, 2: 50}  # the check's interval is not over yet
    world.advance(INTERVAL - 1).settle()
    assert world.weights == {1: 50, 2: 50}
    world.advance(1).settle()
    assert world.phase == Phase.HEALTHY and world.weights == {2: 100}


def test_failed_checks_are_counted_across_steps_not_per_step() -> None:
    world = gated(20, 40, 60, threshold=2)
    check(world, 0, "Failed")
    check(world, 1, "Successful")
    assert world.weights == {1: 60, 2: 40} and world.status.checks.failed == 1
    check(world, 2, "Failed")  # a pass in between does not reset the count (Flagger)
    assert world.phase == Phase.ABORTED and world.weights == {1: 100}


def test_rollout_webhooks_are_called_once_per_check_and_a_failure_is_a_failed_check() -> None:
    world = gated(20, 40, threshold=2, webhooks=[_hook("rollout", "load")])
    (call,) = world.of_type(actions.CallWebhook)
    assert call.once and call.call_id.endswith("-rollout-check0-load")
    world.webhook_result("rollout", "load", "failed", "HTTP 503")
    check(world, 0, "Successful")  # the metrics passed, the webhook did not
    assert world.weights == {1: 80, 2: 20} and world.status.checks.failed == 1
    calls = [c.call_id for c in world.of_type(actions.CallWebhook)]
    assert calls[-1].endswith("-rollout-check1-load") and len(calls) == 2
    world.webhook_result("rollout", "load", "passed")
    check(world, 1, "Successful")
    assert world.weights == {1: 60, 2: 40}


def test_pre_rollout_failures_are_failed_checks_retried_each_interval() -> None:
    world = gated(20, threshold=3, webhooks=[_hook("pre-rollout", "smoke")])
    assert world.weights == {1: 100}
    world.webhook_result("pre-rollout", "smoke", "failed", "HTTP 500").settle()
    assert world.phase == Phase.PROGRESSING and world.weights == {1: 100}
    assert len(world.of_type(actions.CallWebhook)) == 1  # not again before the interval
    world.advance(INTERVAL).settle()
    assert len(world.of_type(actions.CallWebhook)) == 2
    world.webhook_result("pre-rollout", "smoke", "passed").settle()
    assert world.weights == {1: 80, 2: 20} and world.status.checks.failed == 1
    check(world, 0, "Successful")
    assert world.phase == Phase.HEALTHY


def test_pre_rollout_failing_threshold_times_aborts_without_traffic() -> None:
    world = gated(20, threshold=2, webhooks=[_hook("pre-rollout", "smoke")])
    world.webhook_result("pre-rollout", "smoke", "failed").settle()
    world.advance(INTERVAL).settle()
    world.webhook_result("pre-rollout", "smoke", "failed").settle()
    assert world.phase == Phase.ABORTED and world.weights == {1: 100}
    assert all(2 not in a.as_dict() for a in world.of_type(actions.SetWeight))


def test_promote_past_a_check_never_reads_the_abandoned_check_as_the_next_one() -> None:
    world = gated(20, 40)
    world.command(commands.promote).settle()  # skips the running check0
    world.settle()
    assert world.weights == {1: 60, 2: 40}
    assert world.running_analysis() == ["web-2-1-check1"]


def test_retry_after_an_abort_counts_failed_checks_afresh() -> None:
    world = gated(20, threshold=1)
    check(world, 0, "Failed")
    assert world.phase == Phase.ABORTED
    world.command(commands.retry).settle()
    assert world.status.checks.failed == 0 and world.weights == {1: 80, 2: 20}


def _hook(kind: str, name: str) -> dict[str, Any]:
    return {"name": name, "type": kind, "url": f"http://127.0.0.1:9/{kind}"}


def test_a_check_step_without_spec_checks_is_refused_naming_the_step() -> None:
    from changeover.validation import analysis_checks

    spec = rollout({"canary": {"steps": [{"setWeight": 20}, {"check": None}]}})
    (problem,) = analysis_checks.check_rollout(spec, {}, source="r.yaml", strict=True)
    assert (
        problem.path == "spec.strategy.canary.steps[1].check" and "spec.checks" in problem.message
    )


def test_blue_green_promotes_after_its_passing_checks_and_aborts_at_threshold() -> None:
    checks = {"interval": "60s", "threshold": 2, "metrics": [METRIC]}
    strategy = {"blueGreen": {"prePromotionChecks": 2}}
    world = FakeWorld(rollout(strategy, checks=checks)).settle()
    world.apply(revision=2).clear().settle()
    assert world.status.traffic.preview_revision == 2 and world.weights == {1: 100}
    check(world, 0, "Failed")
    check(world, 1, "Successful")
    assert world.weights == {1: 100}  # one passing check of two
    check(world, 2, "Successful")
    assert world.phase == Phase.HEALTHY and world.weights == {2: 100}

    world.apply(revision=3).clear().settle()
    check(world, 0, "Failed")
    check(world, 1, "Failed")
    assert world.phase == Phase.ABORTED and world.weights == {2: 100}
