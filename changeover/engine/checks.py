"""Flagger's check-gated steps (``spec.checks``, see ``spec.analysis.Checks``), as the engine
runs them: a check every interval, steps that wait for passing checks, failed checks
counted across the rollout until ``threshold`` aborts it.

Flagger's scheduler (``pkg/controller/scheduler.go``) ticks once per analysis interval; a
tick runs the ``rollout`` webhooks and the metrics, and only if all pass does the weight
advance; otherwise ``failedChecks`` goes up and, once it reaches ``threshold``, the canary
is rolled back. Here check *n* is one analysis run (``...-check<n>``: every metric measured
once, an interval after the check starts) plus one call of every ``rollout`` webhook as it
starts; its verdict is taken when both are in and the interval is over, so checks (passed
or failed) follow each other one interval apart, as Flagger's ticks do. Flagger rolls back
on the tick after the threshold-th failure; here the abort comes with that failure
(the caller aborts on a "threshold" verdict).

Before the first traffic, Flagger runs the ``pre-rollout`` webhooks on each tick until
they pass, each failure a failed check: ``pre_rollout`` does the same.

Pure: called by ``strategies.canary`` and ``strategies.shared`` with the plan's ``Draft``;
they abort the rollout on a "threshold" verdict.
"""

from __future__ import annotations

from typing import Literal

from changeover.engine import runs
from changeover.engine.draft import Draft, Reason
from changeover.engine.status import CheckState
from changeover.spec import models


def in_use(spec: models.RolloutSpec) -> bool:
    """True when ``spec.checks`` gates something: a canary ``check`` step or blueGreen's
    ``prePromotionChecks``."""
    canary, blue_green = spec.strategy.canary, spec.strategy.blue_green
    if spec.checks is None:
        return False
    if blue_green is not None:
        return blue_green.pre_promotion_checks is not None
    return canary is not None and any(step.check is not None for step in canary.steps)


def state(d: Draft) -> CheckState:
    """This attempt's check state (a new revision or a retry starts from nothing)."""
    current = d.status.checks
    if current.attempt != d.status.attempt:
        return CheckState(attempt=d.status.attempt)
    return current


def _save(d: Draft, st: CheckState) -> None:
    if st != d.status.checks:
        d.update(checks=st)


Verdict = Literal["passed", "waiting", "threshold"]


def passed(d: Draft, step: int, count: int, where: str) -> tuple[Verdict, str]:
    """The ``check`` step at index ``step``: "passed" once ``count`` checks passed there,
    "threshold" (with why) when a failed check reached the threshold (the caller aborts),
    else "waiting"."""
    checks = d.spec.checks
    assert checks is not None  # validation.analysis_checks refuses a check step without it
    st = state(d)
    if st.step != step:
        # A new step (or one reached by promote): its passing checks count from 0, and a
        # check left in flight is abandoned under its number, never read as this one's.
        bump = 1 if st.started_at is not None else 0
        st = st.model_copy(
            update={"step": step, "passed": 0, "started_at": None, "number": st.number + bump}
        )
        _save(d, st)
    if st.passed >= count:
        return "passed", ""
    if st.started_at is None:
        st = st.model_copy(update={"started_at": d.now})
        _save(d, st)
    n, started = st.number, st.started_at
    assert started is not None
    hooks, why_hooks = runs.gate(d, "rollout", suffix=f"-check{n}", once=True)
    metrics, why_metrics = "Successful", ""
    if checks.metrics or checks.templates:
        metrics, why_metrics = runs.analysis(
            d, f"check{n}", checks, kind="check", measure_once_after=checks.interval
        )
    d.deliberate_wait = True
    label = f"{where}: check {st.passed + 1}/{count}"
    if hooks == "waiting" or metrics == "Running" or d.now < started + checks.interval:
        d.note(f"{label} running ({st.failed}/{checks.threshold} failed checks so far)")
        return "waiting", ""
    st = st.model_copy(update={"number": n + 1, "started_at": None})
    if hooks == "passed" and metrics == "Successful":
        st = st.model_copy(update={"passed": st.passed + 1})
        _save(d, st)
        d.event(Reason.CHECK_PASSED, f"{label} passed", d.target)
        return ("passed" if st.passed >= count else "waiting"), ""
    why = why_hooks if hooks == "failed" else f"analysis {metrics}: {why_metrics or 'no detail'}"
    return _failed(d, st, label, why)


def _failed(d: Draft, st: CheckState, label: str, why: str) -> tuple[Verdict, str]:
    """Count one failed check: "threshold" (and why) once failures reach it."""
    checks = d.spec.checks
    assert checks is not None
    st = st.model_copy(update={"failed": st.failed + 1})
    _save(d, st)
    text = f"{label} failed ({st.failed}/{checks.threshold}): {why}"
    d.event(Reason.CHECK_FAILED, text, d.target)
    if st.failed >= checks.threshold:
        return "threshold", (
            f"{st.failed} failed checks reached the threshold {checks.threshold} (last: {why})"
        )
    return "waiting", ""


def pre_rollout(d: Draft) -> tuple[Verdict, str]:
    """The ``pre-rollout`` webhooks as Flagger calls them: until they pass, once per
    interval, each failure a failed check. "passed" once they did; "threshold" (and why)
    when their failures reached it; else "waiting"."""
    checks = d.spec.checks
    assert checks is not None
    st = state(d)
    if st.retry_at is not None and d.now < st.retry_at:
        d.deliberate_wait = True
        d.note(f"pre-rollout webhooks failed: calling them again in {st.retry_at - d.now:.0f}s")
        return "waiting", ""
    tries = st.pre_rollout_tries
    result, why = runs.gate(d, "pre-rollout", suffix=f"-try{tries}" if tries else "")
    if result == "passed":
        return "passed", ""
    d.deliberate_wait = True
    if result == "waiting":
        d.note(why)
        return "waiting", ""
    st = st.model_copy(update={"pre_rollout_tries": tries + 1, "retry_at": d.now + checks.interval})
    return _failed(d, st, "pre-rollout", why)


def pre_rollout_suffix(d: Draft) -> str:
    """The suffix of the pre-rollout call that passed (kept on record after it)."""
    tries = state(d).pre_rollout_tries
    return f"-try{tries}" if tries else ""
