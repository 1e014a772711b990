"""assess: Argo Rollouts' rules for measurements, metrics and runs, case by case."""

from __future__ import annotations

from typing import Any

import pytest

from changeover.analysis import assess, templates
from changeover.analysis.run import AnalysisRun


def metric(name: str = "m", **fields: Any) -> templates.MetricSpec:
    return templates.MetricSpec(name=name, provider="builtin", config={}, **fields)


def tally(*phases: str, name: str = "m") -> assess.MetricResult:
    result = assess.MetricResult(name=name)
    for i, phase in enumerate(phases):
        m = assess.Measurement(phase=phase, value=i, finished_at=float(i))  # type: ignore[arg-type]
        result = assess.record(result, m, retention=10)
    return result


# --- one measurement -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("success", "failure", "value", "phase"),
    [
        (None, None, 1, "Successful"),  # no conditions: any measurement passes
        ("result > 0", None, 1, "Successful"),
        ("result > 0", None, 0, "Failed"),  # only success: its negation fails
        (None, "result > 5", 1, "Successful"),  # only failure: its negation passes
        (None, "result > 5", 9, "Failed"),
        ("result < 1", "result > 5", 0, "Successful"),
        ("result < 1", "result > 5", 3, "Inconclusive"),  # neither holds
        ("result < 1", "result > 5", 9, "Failed"),
        ("result > 0", "result > 0", 1, "Failed"),  # both hold: failure wins
        ("result[0] > 0", None, 1, "Error"),  # cannot evaluate: an Error, not a crash
    ],
)
def test_judge(success: str | None, failure: str | None, value: Any, phase: str) -> None:
    assert assess.judge(value, success=success, failure=failure)[0] == phase


def test_record_counts_like_argo() -> None:
    result = tally("Successful", "Error", "Error", "Failed", "Inconclusive")
    assert (result.count, result.successful, result.failed, result.inconclusive) == (3, 1, 1, 1)
    assert result.error == 2 and result.consecutive_error == 0  # reset by the Failed one
    assert tally("Successful", "Error", "Error").consecutive_error == 2


def test_retention_keeps_the_newest_measurements_but_all_counts() -> None:
    result = assess.MetricResult(name="m")
    for i in range(25):
        result = assess.record(result, assess.Measurement(phase="Successful", value=i), retention=3)
    assert [m.value for m in result.measurements] == [22, 23, 24] and result.count == 25


# --- a metric --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "phases", "terminating", "expected"),
    [
        ({}, [], False, "Pending"),
        ({}, [], True, "Successful"),
        ({}, ["Successful"], False, "Successful"),  # no interval, no count: one measurement
        ({"interval": 5.0, "count": 3}, ["Successful"], False, "Running"),
        ({"interval": 5.0, "count": 3}, ["Successful"] * 3, False, "Successful"),
        ({"interval": 5.0, "count": 3}, ["Failed"], False, "Failed"),  # failureLimit 0
        ({"interval": 5.0, "count": 3, "failure_limit": 1}, ["Failed"], False, "Running"),
        (
            {"interval": 5.0, "count": 3, "failure_limit": 1},
            ["Failed", "Successful", "Successful"],
            False,
            "Successful",  # count reached with failures within the limit
        ),
        ({"interval": 5.0, "count": 3, "failure_limit": 1}, ["Failed"] * 2, False, "Failed"),
        ({"interval": 5.0, "count": 3}, ["Inconclusive"], False, "Inconclusive"),
        (
            {"interval": 5.0, "count": 3, "inconclusive_limit": 1},
            ["Inconclusive"],
            False,
            "Running",
        ),
        ({"interval": 5.0, "count": 3}, ["Error"] * 4, False, "Running"),  # 4 is not > 4
        ({"interval": 5.0, "count": 3}, ["Error"] * 5, False, "Error"),
        ({"interval": 5.0, "count": 3, "consecutive_error_limit": 0}, ["Error"], False, "Error"),
        ({"interval": 5.0}, ["Successful"] * 50, False, "Running"),  # until stopped
        ({"interval": 5.0}, ["Successful"] * 50, True, "Successful"),
    ],
)
def test_assess_metric(
    spec: dict[str, Any], phases: list[str], terminating: bool, expected: str
) -> None:
    assert assess.assess_metric(metric(**spec), tally(*phases), terminating=terminating) == expected


@pytest.mark.parametrize(
    ("phases", "failure_limit", "expected"),
    [
        (["Failed", "Successful", "Successful"], 3, "Successful"),  # 2 in a row: done early
        (["Successful", "Failed", "Successful"], 3, "Running"),
        (["Successful", "Failed", "Successful", "Failed"], 3, "Inconclusive"),  # count, no run
        (["Successful", "Failed", "Successful", "Failed"], -1, "Failed"),  # only success applies
        (["Failed"] * 4, 3, "Failed"),
        (["Failed"] * 4, -1, "Failed"),
        (["Failed"] * 3, -1, "Running"),  # failureLimit -1: failures alone never fail it
    ],
)
def test_consecutive_success_limit_argo_1_8(
    phases: list[str], failure_limit: int, expected: str
) -> None:
    spec = metric(interval=1.0, count=4, consecutive_success_limit=2, failure_limit=failure_limit)
    assert assess.assess_metric(spec, tally(*phases), terminating=False) == expected


def test_verdict_names_the_metric_the_value_and_the_limit() -> None:
    spec = metric("error-rate", interval=5.0, count=3, failure_limit=1)
    result = assess.MetricResult(name="error-rate")
    for value in (0.31, 0.28):
        m = assess.Measurement(
            phase="Failed", value=value, message="successCondition 'result < 0.05' is false"
        )
        result = assess.record(result, m, retention=10)
    assert assess.verdict(spec, result, "Failed") == (
        "metric error-rate Failed = 0.28 (successCondition 'result < 0.05' is false); "
        "2 failed > failureLimit 1"
    )


# --- a run -----------------------------------------------------------------------------------


def test_the_run_is_running_until_every_counting_metric_completes() -> None:
    a, b = metric("a"), metric("b", interval=1.0, count=2)
    verdict = assess.assess_run([a, b], {"a": tally("Successful", name="a")}, stopped=False)
    assert verdict.phase == "Running"
    results = {"a": tally("Successful", name="a"), "b": tally("Successful", "Successful", name="b")}
    verdict = assess.assess_run([a, b], results, stopped=False)
    assert verdict.phase == "Successful" and verdict.message == "2 metrics Successful"


def test_the_worst_metric_decides_and_a_failure_ends_the_others_early() -> None:
    a, b = metric("a", interval=1.0, count=10), metric("b", interval=1.0, count=10)
    results = {"a": tally("Failed", name="a"), "b": tally("Successful", name="b")}
    verdict = assess.assess_run([a, b], results, stopped=False)
    assert verdict.phase == "Failed" and verdict.message.startswith("metric a Failed")
    assert verdict.metrics["b"].phase == "Successful"  # terminated early, as in Argo


def test_order_of_badness_failed_error_inconclusive() -> None:
    a, b, c = (metric(n, count=1) for n in "abc")
    results = {
        "a": tally("Inconclusive", name="a"),
        "b": tally(*["Error"] * 5, name="b"),
        "c": tally("Successful", name="c"),
    }
    assert assess.assess_run([a, b, c], results, stopped=False).phase == "Error"
    results["c"] = tally("Failed", name="c")
    assert assess.assess_run([a, b, c], results, stopped=False).phase == "Failed"


def test_dry_run_metrics_are_shown_but_never_decide() -> None:
    real = metric("real", count=1)
    dry = metric("dry", count=1, dry_run=True)
    results = {"real": tally("Successful", name="real"), "dry": tally("Failed", name="dry")}
    verdict = assess.assess_run([real, dry], results, stopped=False)
    assert verdict.phase == "Successful" and verdict.metrics["dry"].phase == "Failed"


def test_a_stopped_run_is_successful_unless_something_failed() -> None:
    forever = metric("forever", interval=1.0)
    results = {"forever": tally("Successful", "Successful", name="forever")}
    assert assess.assess_run([forever], results, stopped=True).phase == "Successful"
    assert assess.assess_run([forever], {}, stopped=True).phase == "Successful"


@pytest.mark.parametrize("spec", [{"interval": 1.0}, {"interval": 1.0, "count": 5}])
def test_a_stopped_run_whose_every_measurement_is_an_error_is_never_successful(
    spec: dict[str, Any],
) -> None:
    m = metric("success-rate", **spec)
    results = {"success-rate": tally("Error", "Error", "Error", name="success-rate")}
    verdict = assess.assess_run([m], results, stopped=True)
    assert verdict.phase == "Error"
    assert verdict.message == (
        "metric success-rate Error; stopped after 3 measurements, all errors: "
        "an Error is never a success"
    )
    # one judged measurement among the errors: stopped, it passes as in Argo Rollouts
    results = {"success-rate": tally("Error", "Successful", "Error", name="success-rate")}
    assert assess.assess_run([m], results, stopped=True).phase == "Successful"


def test_next_due_follows_initial_delay_interval_and_error_retry() -> None:
    m = metric(interval=5.0, count=3, initial_delay=10.0)
    assert assess.next_due(m, assess.MetricResult(name="m"), started_at=100.0) == 110.0
    assert assess.next_due(m, tally("Successful"), started_at=100.0) == 0.0 + 5.0
    assert assess.next_due(m, tally(*["Successful"] * 3), started_at=100.0) is None
    once = metric()  # no interval: an Error is retried after 10 s (Argo's default)
    assert assess.next_due(once, tally("Error"), started_at=0.0) == 10.0
    assert assess.next_due(once, tally("Successful"), started_at=0.0) is None


# --- the run as data -------------------------------------------------------------------------


def test_a_run_folds_measurements_in_and_survives_a_round_trip_through_json() -> None:
    m = metric("error-rate", interval=2.0, count=2, success_condition="result < 0.05")
    run = AnalysisRun(
        id="web-2-1-step1", rollout="web", kind="step", revision=2, metrics=(m,), started_at=100.0
    ).assessed(100.0)
    assert run.phase == "Pending" and [x.name for x in run.due(100.0)] == ["error-rate"]
    ok = assess.Measurement(phase="Successful", value=0.01, finished_at=101.0)
    run = run.with_measurement("error-rate", ok, now=101.0)
    assert run.phase == "Running" and run.due(102.0) == [] and run.next_wakeup() == 103.0
    again = AnalysisRun.from_json(run.to_json())
    assert again == run
    run = run.with_measurement("error-rate", ok, now=103.0)
    assert run.phase == "Successful" and run.finished_at == 103.0
    summary = run.summary()["error-rate"]
    assert summary["phase"] == "Successful" and summary["value"] == 0.01 and summary["count"] == 2


def test_non_finite_values_are_stored_as_strings() -> None:
    m = metric("lat")
    run = AnalysisRun(id="r", rollout="web", kind="step", revision=2, metrics=(m,))
    nan = assess.Measurement(phase="Error", value=float("nan"), finished_at=1.0)
    run = run.with_measurement("lat", nan, now=1.0)
    stored = run.to_json()["results"]["lat"]["measurements"][0]["value"]
    assert stored == "NaN"


# --- undecided: a judge that is still collecting (an A/B test short of its sample) --------------


def test_undecided_counts_neither_as_success_failure_nor_inconclusive() -> None:
    result = tally("Undecided", "Undecided")
    assert (result.count, result.successful, result.failed, result.inconclusive) == (0, 0, 0, 0)
    assert result.undecided == 2 and result.taken == 2 and result.latest is not None
    assert result.latest.phase == "Undecided"  # kept, so status shows it
    m = metric(interval=5.0, count=5)
    assert assess.assess_metric(m, result, terminating=False) == "Running"
    decided = tally("Undecided", "Undecided", "Successful")
    assert decided.consecutive_undecided == 0 and decided.successful == 1


def test_a_run_that_ends_undecided_is_inconclusive_and_says_why() -> None:
    m = metric("ab", interval=5.0, count=3)
    run = AnalysisRun(id="r", rollout="web", kind="experiment", revision=2, metrics=(m,))
    for at in (1.0, 6.0):
        undecided = assess.Measurement(phase="Undecided", value={"decided": False}, finished_at=at)
        run = run.with_measurement("ab", undecided, now=at)
        assert run.phase == "Running"  # not Successful: nothing was decided
    assert run.due(11.0) == [m]  # keeps measuring up to count
    undecided = assess.Measurement(
        phase="Undecided", message="collecting: 590 of 2000 per variant", finished_at=11.0
    )
    run = run.with_measurement("ab", undecided, now=11.0)
    assert run.phase == "Inconclusive" and run.due(16.0) == []
    assert "the experiment did not reach a decision (3 of 3 measurements undecided)" in run.message
    assert "collecting: 590 of 2000 per variant" in run.message
    summary = run.summary()["ab"]
    assert summary["undecided"] == 3 and summary["count"] == 0
    assert AnalysisRun.from_json(run.to_json()) == run


def test_a_decision_after_undecided_looks_ends_the_run_on_the_decision() -> None:
    m = metric("ab", interval=5.0, count=3)
    result = tally("Undecided", "Undecided", "Successful")
    assert assess.assess_metric(m, result, terminating=False) == "Successful"
    assert assess.assess_metric(m, tally("Undecided", "Failed"), terminating=False) == "Failed"


def test_a_run_stopped_while_undecided_is_inconclusive_not_successful() -> None:
    until_stopped = metric("ab", interval=5.0)  # no count: measures until the run stops
    run = AnalysisRun(
        id="r", rollout="web", kind="experiment", revision=2, metrics=(until_stopped,)
    )
    run = run.with_measurement(
        "ab", assess.Measurement(phase="Undecided", finished_at=1.0), now=1.0
    )
    assert run.stop(2.0).phase == "Inconclusive"
    decided = run.with_measurement(
        "ab", assess.Measurement(phase="Successful", finished_at=6.0), now=6.0
    )
    assert decided.stop(7.0).phase == "Successful"


def test_a_metric_never_measured_says_so_instead_of_nil() -> None:
    """Issue 12: a run stopped before a metric's first measurement showed it as
    ``Successful = nil``."""
    late = metric("late", interval=5.0, initial_delay=60.0)
    run = AnalysisRun(id="r", rollout="web", kind="background", revision=2, metrics=(late,))
    run = run.assessed(0.0).stop(1.0)
    summary = run.summary()["late"]
    assert summary["phase"] == "Successful" and summary["measured"] is False
    assert summary["message"] == (
        "metric late Successful: not measured (the run ended before its first measurement)"
    )
    assert "nil" not in summary["message"]


def test_an_error_measurement_has_no_value_to_show() -> None:
    m = metric("m", interval=1.0)
    result = tally("Successful", "Error", name="m")
    assert assess.verdict(m, result, "Successful") == "metric m Successful"
