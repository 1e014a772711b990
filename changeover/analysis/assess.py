"""Pure verdicts: a measurement's phase from its value, a metric's from its measurements, a
run's from its metrics. Argo Rollouts' rules, so its users' limits mean the same here.

A measurement (``judge``): with both conditions, Failed if ``failureCondition`` holds, else
Successful if ``successCondition`` holds, else Inconclusive; with only one, the other is
its negation; with none, Successful. A condition that cannot be evaluated is an Error.
A provider that judges by itself may also say Undecided (an A/B test short of its sample
size): kept and shown, counted in ``undecided`` only: not a pass, a fail nor inconclusive.

A metric (``assess_metric``), once its latest measurement is in::

    failed > failureLimit                       → Failed
    inconclusive > inconclusiveLimit            → Inconclusive
    consecutive errors > consecutiveErrorLimit  → Error
    measurements (errors excluded) ≥ count      → Successful, or Inconclusive if the latest
    the run is stopping                           judged one was Undecided ("the experiment
                                                  did not reach a decision"); a metric that
                                                  runs until stopped ends the same way
    stopping, and every measurement an Error    → Error (an Error is never a success; Argo
                                                  would say Successful here)
    otherwise                                   → Running (Pending before the first)

A run (``assess_run``): Running while any metric that counts is; then the worst phase of
those (Successful < Inconclusive < Error < Failed). ``dryRun`` metrics are measured and
shown but never count. Once a counting metric is Failed, Error or Inconclusive the run is
*terminating*: the others stop early, as in Argo Rollouts.

Called by the controller's analysis runner after every measurement; tested on its own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from changeover.analysis import conditions, conditions_eval
from changeover.analysis.templates import MetricSpec
from changeover.spec import analysis as spec_analysis

Phase = Literal["Pending", "Running", "Successful", "Failed", "Error", "Inconclusive"]
MeasurementPhase = Literal["Successful", "Failed", "Inconclusive", "Error", "Undecided"]
COMPLETED: tuple[Phase, ...] = ("Successful", "Failed", "Error", "Inconclusive")
NOT_MEASURED = "not measured (the run ended before its first measurement)"
_WORSE = {"Pending": 0, "Running": 1, "Successful": 2, "Inconclusive": 3, "Error": 4, "Failed": 5}


@dataclass(frozen=True, kw_only=True)
class Measurement:
    phase: MeasurementPhase
    value: Any = None
    message: str = ""
    started_at: float = 0.0
    finished_at: float = 0.0
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class MetricResult:
    """A metric's tally; ``measurements`` keeps only the newest few (retention)."""

    name: str
    phase: Phase = "Pending"
    message: str = ""
    measurements: tuple[Measurement, ...] = ()
    count: int = 0  # Successful + Failed + Inconclusive: errors do not count
    successful: int = 0
    failed: int = 0
    inconclusive: int = 0
    error: int = 0
    undecided: int = 0  # "not decided yet": counted towards ``count`` measurements taken only
    consecutive_error: int = 0
    consecutive_success: int = 0
    consecutive_undecided: int = 0  # > 0: the latest judged measurement was Undecided
    last_finished_at: float | None = None

    @property
    def latest(self) -> Measurement | None:
        return self.measurements[-1] if self.measurements else None

    @property
    def taken(self) -> int:
        """Measurements that were not errors, decided or not: what ``count`` limits."""
        return self.count + self.undecided


# --- one measurement --------------------------------------------------------------------


def judge(value: Any, *, success: str | None, failure: str | None) -> tuple[MeasurementPhase, str]:
    """The phase of one measured ``value`` and why.

    >>> judge(0.31, success="result < 0.05", failure=None)
    ('Failed', "successCondition 'result < 0.05' is false for 0.31")
    >>> judge(0.01, success="result < 0.05", failure="result > 0.2")
    ('Successful', '')
    >>> judge(0.1, success="result < 0.05", failure="result > 0.2")
    ('Inconclusive', 'neither successCondition nor failureCondition holds for 0.1')
    """
    shown = conditions_eval.show(value)
    try:
        ok = conditions.evaluate(success, value) if success else None
        bad = conditions.evaluate(failure, value) if failure else None
    except conditions.ConditionError as exc:
        return "Error", f"cannot evaluate the condition for {shown}: {exc}"
    except Exception as exc:  # hostile values: whatever breaks is this measurement's Error
        return "Error", f"cannot evaluate the condition for {shown}: {type(exc).__name__}"
    if ok is None and bad is None:
        return "Successful", ""
    if bad:
        return "Failed", f"failureCondition '{failure}' holds for {shown}"
    if ok is None:
        return "Successful", ""
    if bad is None and not ok:
        return "Failed", f"successCondition '{success}' is false for {shown}"
    if ok:
        return "Successful", ""
    return "Inconclusive", f"neither successCondition nor failureCondition holds for {shown}"


def record(result: MetricResult, measurement: Measurement, *, retention: int) -> MetricResult:
    """Add a finished measurement to the tally (Argo's counters)."""
    phase = measurement.phase
    kept = (*result.measurements, measurement)[-max(1, retention) :]
    counts: dict[str, Any] = {
        "measurements": kept,
        "last_finished_at": measurement.finished_at,
        "message": measurement.message,
    }
    if phase == "Undecided":  # no verdict either way: the success streak is not broken
        counts["undecided"] = result.undecided + 1
        counts["consecutive_undecided"] = result.consecutive_undecided + 1
        counts["consecutive_error"] = 0
        return replace(result, **counts)
    counts["consecutive_success"] = result.consecutive_success + 1 if phase == "Successful" else 0
    if phase == "Error":
        counts["error"] = result.error + 1
        counts["consecutive_error"] = result.consecutive_error + 1
    else:
        counts["consecutive_undecided"] = 0
        counts["count"] = result.count + 1
        counts["consecutive_error"] = 0
        key = {"Successful": "successful", "Failed": "failed", "Inconclusive": "inconclusive"}
        counts[key[phase]] = getattr(result, key[phase]) + 1
    return replace(result, **counts)


# --- a metric ------------------------------------------------------------------------------


def assess_metric(metric: MetricSpec, result: MetricResult, *, terminating: bool) -> Phase:
    if result.phase in COMPLETED:
        return result.phase
    if not result.measurements and result.error == 0:
        return "Successful" if terminating else "Pending"
    failure_applies = metric.failure_limit >= 0
    success_applies = metric.consecutive_success_limit > 0
    if failure_applies and result.failed > metric.failure_limit:
        return "Failed"
    if result.inconclusive > metric.inconclusive_limit:
        return "Inconclusive"
    if result.consecutive_error > metric.consecutive_error_limit:
        return "Error"
    if success_applies and result.consecutive_success >= metric.consecutive_success_limit:
        return "Successful"
    count = metric.effective_count
    undecided = result.consecutive_undecided > 0
    if count is not None and result.taken >= count:
        if undecided:
            return "Inconclusive"
        # Argo Rollouts 1.8: a consecutiveSuccessLimit not reached by the last measurement
        # fails the metric, or leaves it Inconclusive when failureLimit applies as well.
        if success_applies:
            return "Inconclusive" if failure_applies else "Failed"
        return "Successful"
    if terminating:
        if result.taken == 0:  # only errors: nothing showed the revision is good
            return "Error"
        return "Inconclusive" if undecided else "Successful"
    return "Running"


def verdict(metric: MetricSpec, result: MetricResult, phase: Phase) -> str:
    """Why a metric ended as it did, naming the metric, its value and the limit passed."""
    latest = result.latest
    if latest is None and result.error == 0:
        return f"metric {metric.name} {phase}: {NOT_MEASURED}"
    shown = latest is not None and latest.phase != "Error"  # an Error has no value to show
    value = f" = {conditions_eval.show(latest.value)}" if shown and latest is not None else ""
    why = latest.message if latest is not None and latest.message else ""
    within = metric.failure_limit < 0 or result.failed <= metric.failure_limit
    short = metric.consecutive_success_limit > 0 and within
    if phase == "Inconclusive" and result.consecutive_undecided > 0:
        limit = (
            f"the experiment did not reach a decision ({result.undecided} of "
            f"{result.taken} measurements undecided)"
        )
    elif short and phase in ("Failed", "Inconclusive"):
        limit = (
            f"{result.consecutive_success} in a row passed < consecutiveSuccessLimit "
            f"{metric.consecutive_success_limit} after {result.count} measurements"
        )
    elif phase == "Failed":
        limit = f"{result.failed} failed > failureLimit {metric.failure_limit}"
    elif phase == "Inconclusive":
        limit = f"{result.inconclusive} inconclusive > inconclusiveLimit "
        limit += str(metric.inconclusive_limit)
    elif phase == "Error" and result.consecutive_error <= metric.consecutive_error_limit:
        limit = f"stopped after {result.error} measurement{'s' if result.error != 1 else ''}, "
        limit += "all errors: an Error is never a success"
        value = ""
    elif phase == "Error":
        limit = f"{result.consecutive_error} errors in a row > consecutiveErrorLimit "
        limit += str(metric.consecutive_error_limit)
        value = ""
    else:
        return f"metric {metric.name} {phase}{value}"
    detail = f" ({why})" if why else ""
    return f"metric {metric.name} {phase}{value}{detail}; {limit}"


# --- a run ---------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class RunAssessment:
    phase: Phase
    message: str
    metrics: Mapping[str, MetricResult] = field(default_factory=dict)
    terminating: bool = False


def is_terminating(
    metrics: Sequence[MetricSpec], results: Mapping[str, MetricResult], *, stopped: bool
) -> bool:
    """Stopped on request, or a counting metric already ended badly."""
    if stopped:
        return True
    return any(
        not m.dry_run and results[m.name].phase in ("Failed", "Error", "Inconclusive")
        for m in metrics
        if m.name in results
    )


def assess_run(
    metrics: Sequence[MetricSpec], results: Mapping[str, MetricResult], *, stopped: bool
) -> RunAssessment:
    """Re-assess every metric, then the run. Metrics missing from ``results`` are Pending."""
    current = {m.name: results.get(m.name) or MetricResult(name=m.name) for m in metrics}
    # Twice: a metric that fails makes the run terminating, which completes the others.
    for _ in range(2):
        terminating = is_terminating(metrics, current, stopped=stopped)
        for metric in metrics:
            result = current[metric.name]
            phase = assess_metric(metric, result, terminating=terminating)
            if phase != result.phase:
                message = verdict(metric, result, phase) if phase in COMPLETED else result.message
                current[metric.name] = replace(result, phase=phase, message=message)
    counting = [m for m in metrics if not m.dry_run]
    if any(current[m.name].phase not in COMPLETED for m in counting):
        return RunAssessment(phase="Running", message="", metrics=current, terminating=terminating)
    worst = max(counting, key=lambda m: _WORSE[current[m.name].phase], default=None)
    if worst is None:  # only dry-run metrics: the run passes once they are done
        if any(current[m.name].phase not in COMPLETED for m in metrics):
            return RunAssessment(phase="Running", message="", metrics=current)
        return RunAssessment(phase="Successful", message="all metrics are dryRun", metrics=current)
    for metric in metrics:  # the run is over: dry-run metrics still measuring end with it
        result = current[metric.name]
        if result.phase not in COMPLETED:
            done = assess_metric(metric, result, terminating=True)
            current[metric.name] = replace(
                result, phase=done, message=verdict(metric, result, done)
            )
    phase = current[worst.name].phase
    message = current[worst.name].message if phase != "Successful" else ""
    if phase == "Successful":
        message = f"{len(counting)} metric{'s' if len(counting) != 1 else ''} Successful"
    return RunAssessment(phase=phase, message=message, metrics=current, terminating=True)


def next_due(metric: MetricSpec, result: MetricResult, *, started_at: float) -> float | None:
    """When ``metric`` should next be measured (clock seconds); None when never again."""
    if result.phase in COMPLETED:
        return None
    count = metric.effective_count
    if count is not None and result.taken >= count:
        return None
    if result.last_finished_at is None:
        return started_at + metric.initial_delay
    latest = result.latest
    if metric.interval is not None:
        return result.last_finished_at + metric.interval
    if latest is not None and latest.phase == "Error":
        return result.last_finished_at + spec_analysis.ERROR_RETRY_SECONDS
    return None


def finite(value: Any) -> Any:
    """``value`` with NaN and ±Inf as strings, so it can be stored and sent as JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")
    if isinstance(value, Mapping):
        return {str(k): finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value
