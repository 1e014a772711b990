"""Analysis in the engine: given a rollout with analysis, when runs report, then...

The FakeWorld plays the analysis runner: ``StartAnalysis`` makes a Running run, the test
says how it ends (``world.analysis_result("step1", "Failed", ...)``), ``StopAnalysis`` ends
a running run Successful (Argo's terminated run).
"""

from __future__ import annotations

from typing import Any

from changeover.engine import actions, commands

from .world import FakeWorld, Phase, Reason, rollout

ERROR_RATE = {
    "metrics": [
        {
            "name": "error-rate",
            "interval": "5s",
            "count": 3,
            "successCondition": "result < 0.05",
            "provider": {"builtin": {"metric": "error-rate"}},
        }
    ]
}


def canary(steps: list[dict[str, Any]], **canary_fields: Any) -> FakeWorld:
    """Revision 1 is Healthy; revision 2 has just been applied."""
    world = FakeWorld(rollout({"canary": {"steps": steps, **canary_fields}}))
    world.settle()
    return world.apply(revision=2).clear()


def test_an_analysis_step_blocks_until_successful_then_the_canary_goes_on() -> None:
    world = canary([{"setWeight": 25}, {"analysis": ERROR_RATE}, {"setWeight": 50}]).settle()
    assert world.weights == {1: 75, 2: 25} and world.status.current_step_index == 1
    assert world.phase == Phase.PROGRESSING
    (start,) = world.of_type(actions.StartAnalysis)
    assert start.run_id == "web-2-1-step1" and start.kind == "step"
    assert start.revision == 2 and start.stable_revision == 1
    assert start.analysis.metrics[0].name == "error-rate"
    assert Reason.ANALYSIS_RUNNING in world.reasons()

    world.advance(600).settle()  # a long analysis is a deliberate wait, not a stuck rollout
    assert world.phase == Phase.PROGRESSING

    world.analysis_result("step1", "Successful", "1 metric Successful").settle()
    assert world.phase == Phase.HEALTHY and world.weights == {2: 100}
    assert Reason.ANALYSIS_SUCCESSFUL in world.reasons()
    assert world.status.analysis_runs == {}  # done and forgotten: nobody asks any more


def test_a_failed_analysis_step_aborts_with_the_failing_metric_in_the_message() -> None:
    world = canary([{"setWeight": 25}, {"analysis": ERROR_RATE}, {"setWeight": 50}]).settle()
    message = "metric error-rate Failed = 0.31 (successCondition 'result < 0.05' is false)"
    world.analysis_result("step1", "Failed", message).settle()
    assert world.phase == Phase.ABORTED
    assert world.weights == {1: 100}
    assert "step 2/3 analysis Failed" in world.status.message
    assert "error-rate" in world.status.message and "0.31" in world.status.message
    assert Reason.ANALYSIS_FAILED in world.reasons() and Reason.ABORTED in world.reasons()
    # the canary keeps its replica for abortScaleDownDelaySeconds, then goes
    assert world.desired(2) == 1
    world.advance(30).settle()
    assert world.desired(2) == 0


def test_an_errored_analysis_aborts_too() -> None:
    world = canary([{"analysis": ERROR_RATE}]).settle()
    world.analysis_result("step0", "Error", "metric error-rate Error; 5 errors in a row").settle()
    assert world.phase == Phase.ABORTED and "Error" in world.status.message


def test_an_inconclusive_step_pauses_and_promote_skips_it() -> None:
    world = canary([{"setWeight": 25}, {"analysis": ERROR_RATE}, {"setWeight": 50}]).settle()
    world.analysis_result("step1", "Inconclusive", "neither condition holds").settle()
    assert world.phase == Phase.PAUSED
    assert world.status.pause is not None and world.status.pause.reason == "inconclusive"
    assert "promote to go on" in world.status.message

    world.command(commands.promote).settle()
    assert world.phase == Phase.HEALTHY and world.weights == {2: 100}


def test_abort_while_a_step_analysis_runs_stops_the_run() -> None:
    world = canary([{"setWeight": 25}, {"analysis": ERROR_RATE}]).settle()
    world.clear().command(commands.abort, now=world.now).settle()
    assert world.phase == Phase.ABORTED and world.weights == {1: 100}
    assert world.of_type(actions.StopAnalysis) == [actions.StopAnalysis(run_id="web-2-1-step1")]


def test_promote_skips_a_running_analysis_step_and_stops_its_run() -> None:
    world = canary([{"analysis": ERROR_RATE}, {"setWeight": 50}, {"pause": {}}]).settle()
    world.clear().command(commands.promote).settle()
    assert world.status.current_step_index == 2 and world.weights == {1: 50, 2: 50}
    assert [a.run_id for a in world.of_type(actions.StopAnalysis)] == ["web-2-1-step0"]


def test_background_analysis_starts_at_starting_step_and_runs_until_completion() -> None:
    steps = [{"setWeight": 20}, {"pause": {}}, {"setWeight": 60}, {"pause": {}}]
    world = canary(steps, analysis={**ERROR_RATE, "startingStep": 2}).settle()
    assert world.status.current_step_index == 1 and world.running_analysis() == []

    world.command(commands.promote).settle()
    assert world.running_analysis() == ["web-2-1-background"]
    assert world.weights == {1: 40, 2: 60} and world.phase == Phase.PAUSED

    world.clear().command(commands.promote).settle()
    assert world.phase == Phase.HEALTHY
    # the rollout completed: its background run is stopped (and so Successful)
    assert [a.run_id for a in world.of_type(actions.StopAnalysis)] == ["web-2-1-background"]


def test_background_analysis_failure_aborts_even_during_a_pause() -> None:
    world = canary([{"setWeight": 20}, {"pause": {}}], analysis=ERROR_RATE).settle()
    assert world.phase == Phase.PAUSED and world.running_analysis() == ["web-2-1-background"]
    world.analysis_result("background", "Failed", "metric error-rate Failed = 0.2").settle()
    assert world.phase == Phase.ABORTED and world.weights == {1: 100}
    assert "background analysis Failed: metric error-rate Failed = 0.2" in world.status.message


def test_inconclusive_background_analysis_pauses_then_promote_measures_it_again() -> None:
    world = canary([{"setWeight": 20}, {"pause": {"duration": "1h"}}], analysis=ERROR_RATE)
    world.settle()
    world.analysis_result("background", "Inconclusive", "too few requests").settle()
    assert world.phase == Phase.PAUSED and world.status.pause is not None
    assert world.status.pause.reason == "inconclusive"

    world.clear().command(commands.promote).settle()
    # same step (the timed pause), a fresh background run
    assert world.status.current_step_index == 1
    assert world.running_analysis() == ["web-2-1-r1-background"]


def test_retry_after_a_failed_analysis_runs_it_again_under_a_new_id() -> None:
    world = canary([{"setWeight": 25}, {"analysis": ERROR_RATE}]).settle()
    world.analysis_result("step1", "Failed", "bad").settle()
    world.command(commands.retry).settle()
    assert world.phase == Phase.PROGRESSING
    assert world.running_analysis() == ["web-2-2-step1"]


def test_user_pause_keeps_analysis_running() -> None:
    world = canary([{"setWeight": 25}, {"analysis": ERROR_RATE}]).settle()
    world.clear().command(commands.pause, now=world.now).settle()
    assert world.phase == Phase.PAUSED and world.of_type(actions.StopAnalysis) == []
    assert world.running_analysis() == ["web-2-1-step1"]


def blue_green(**fields: Any) -> FakeWorld:
    world = FakeWorld(rollout({"blueGreen": {"previewPort": 8081, **fields}}))
    world.settle()
    return world.apply(revision=2).clear()


def test_pre_promotion_analysis_gates_the_switch() -> None:
    world = blue_green(prePromotionAnalysis=ERROR_RATE).settle()
    assert world.status.traffic.preview_revision == 2 and world.weights == {1: 100}
    assert world.running_analysis() == ["web-2-1-pre-promotion"]
    world.analysis_result("pre-promotion", "Successful").settle()
    assert world.phase == Phase.HEALTHY and world.weights == {2: 100}


def test_pre_promotion_failure_aborts_before_any_traffic_moved() -> None:
    world = blue_green(prePromotionAnalysis=ERROR_RATE).settle()
    world.analysis_result("pre-promotion", "Failed", "metric error-rate Failed").settle()
    assert world.phase == Phase.ABORTED and world.weights == {1: 100}
    assert world.status.traffic.preview_revision is None
    assert not any(w.as_dict().get(2) for w in world.of_type(actions.SetWeight))


def test_post_promotion_analysis_runs_after_the_switch_and_failure_switches_back() -> None:
    world = blue_green(postPromotionAnalysis=ERROR_RATE).settle()
    assert world.weights == {2: 100} and world.status.stable_revision == 1
    assert world.phase == Phase.PROGRESSING and world.desired(1) == 4  # old kept at full size
    assert world.running_analysis() == ["web-2-1-post-promotion"]

    world.analysis_result("post-promotion", "Failed", "metric error-rate Failed = 0.4").settle()
    assert world.phase == Phase.ABORTED and world.weights == {1: 100}
    assert world.status.stable_revision == 1


def test_post_promotion_success_makes_the_new_revision_stable() -> None:
    world = blue_green(postPromotionAnalysis=ERROR_RATE).settle()
    world.analysis_result("post-promotion", "Successful").settle()
    assert world.phase == Phase.HEALTHY and world.status.stable_revision == 2
    assert world.weights == {2: 100} and str(1) in world.status.scale_down_at


def test_ab_test_analysis_success_promotes_b_before_the_duration() -> None:
    world = FakeWorld(
        rollout(
            {
                "abTest": {
                    "userKey": {"header": "x-user"},
                    "weight": 50,
                    "duration": "1h",
                    "analysis": ERROR_RATE,
                }
            }
        )
    )
    world.settle().apply(revision=2).settle()
    assert world.running_analysis() == ["web-2-1-experiment"]
    world.analysis_result("experiment", "Successful").settle()
    assert world.phase == Phase.HEALTHY and world.weights == {2: 100}


def test_shadow_analysis_failure_aborts() -> None:
    world = FakeWorld(rollout({"shadow": {"duration": "1h", "analysis": ERROR_RATE}}))
    world.settle().apply(revision=2).settle()
    world.analysis_result("experiment", "Failed", "metric error-rate Failed").settle()
    assert world.phase == Phase.ABORTED and world.status.traffic.mirrors == {}


def test_runs_of_same_named_rollouts_in_two_namespaces_do_not_share_an_id() -> None:
    spec = rollout({"canary": {"steps": [{"setWeight": 25}, {"analysis": ERROR_RATE}]}})
    prod = spec.model_copy(
        update={"metadata": spec.metadata.model_copy(update={"namespace": "prod"})}
    )
    world = FakeWorld(prod)
    world.settle()
    world.apply(revision=2).clear().settle()
    (start,) = world.of_type(actions.StartAnalysis)
    assert start.run_id == "prod/web-2-1-step1"  # "web-2-1-step1" is the default namespace's
    world.analysis_result("step1", "Failed", "metric error-rate Failed").settle()
    assert world.phase == Phase.ABORTED
