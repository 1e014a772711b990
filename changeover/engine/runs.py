"""Analysis runs and webhook gates as the engine sees them: asked for, observed, forgotten.

A strategy asks ``analysis(d, point, spec)`` or ``gate(d, type)`` every tick for as long as
it cares; the first ask emits ``StartAnalysis`` / ``CallWebhook`` and records the id in the
status, later asks read ``Observations``. What no strategy asked about in a plan is stopped
(if still running) and forgotten by ``sweep``, which ``engine.plan`` calls after the
strategy: a canary step completes, a rollout is aborted or promoted, and its runs and
pollers end without any strategy having to remember them. Like hooks, ids carry the
attempt, so a retried revision measures afresh::

    web-2-1-step3          analysis of revision 2, attempt 1, at step index 3
    web-2-1-background     canary background analysis
    web-2-1-confirm-promotion-approve     the webhook named "approve"

Pure: called by ``engine.plan`` and the strategies with the plan's ``Draft``.
"""

from __future__ import annotations

from typing import Literal

from changeover.engine import actions
from changeover.engine.draft import Draft, Reason
from changeover.spec import analysis as spec_analysis

COMPLETED = ("Successful", "Failed", "Error", "Inconclusive")
RunPhase = Literal["Running", "Successful", "Failed", "Error", "Inconclusive"]
GateState = Literal["waiting", "passed", "failed"]

_REASONS = {
    "Successful": Reason.ANALYSIS_SUCCESSFUL,
    "Failed": Reason.ANALYSIS_FAILED,
    "Error": Reason.ANALYSIS_ERROR,
    "Inconclusive": Reason.ANALYSIS_INCONCLUSIVE,
}
_SENT_KEPT = 20


def run_id(d: Draft, point: str) -> str:
    st = d.status
    rounds = f"-r{st.analysis_round}" if st.analysis_round else ""
    # Rollouts of one name in two namespaces (Kubernetes) must not share runs; "/" is in
    # no name, so "prod/web-2-1-step1" cannot clash. The local platform's ids are unchanged.
    namespace = d.ctx.rollout.metadata.namespace
    scope = f"{namespace}/" if namespace != "default" else ""
    return f"{scope}{d.ctx.rollout.name}-{d.target}-{st.attempt}{rounds}-{point}"


def analysis(
    d: Draft,
    point: str,
    spec: spec_analysis.RolloutAnalysis,
    *,
    kind: str,
    blocking: bool = True,
    measure_once_after: float | None = None,
) -> tuple[RunPhase, str]:
    """Run ``spec`` at ``point`` (once per attempt) and say where it is, with its message.
    A blocking run is a deliberate wait: it never trips progressDeadlineSeconds."""
    rid = run_id(d, point)
    d.touched_runs.add(rid)
    recorded = d.status.analysis_runs.get(rid)
    seen = d.ctx.observations.analysis.get(rid)
    message = seen.message if seen is not None else ""
    if recorded in COMPLETED:
        return recorded, message  # type: ignore[return-value]
    if seen is None or seen.phase not in COMPLETED:
        if seen is None:
            d.act(
                actions.StartAnalysis(
                    run_id=rid,
                    kind=kind,
                    analysis=spec,
                    revision=d.target,
                    stable_revision=d.stable,
                    measure_once_after=measure_once_after,
                )
            )
        if recorded is None:
            _record_run(d, rid, "Running")
            d.event(Reason.ANALYSIS_RUNNING, f"analysis run {rid} started ({kind})", d.target)
        d.deliberate_wait = d.deliberate_wait or blocking
        return "Running", message
    phase: RunPhase = seen.phase  # type: ignore[assignment]
    _record_run(d, rid, phase)
    text = f"analysis run {rid} {phase}" + (f": {message}" if message else "")
    d.event(_REASONS[phase], text, d.target)
    return phase, message


def _record_run(d: Draft, rid: str, phase: str) -> None:
    d.update(analysis_runs={**d.status.analysis_runs, rid: phase})


def gate(d: Draft, kind: str, *, suffix: str = "", once: bool = False) -> tuple[GateState, str]:
    """Every webhook of type ``kind``: passed once all passed, failed if any failed,
    else waiting (with the first waiting one's message). No such webhook: passed.
    ``once``: each is called once, whatever its type (a check's rollout webhooks)."""
    overall: GateState = "passed"
    why = ""
    for hook in d.spec.webhooks:
        if hook.type != kind:
            continue
        state, message = _webhook(d, f"{_prefix(d)}-{kind}{suffix}-{hook.name}", hook, once)
        if state == "failed" and overall != "failed":
            overall, why = "failed", f"{kind} webhook {hook.name}: {message or 'failed'}"
        elif state == "waiting" and overall == "passed":
            overall = "waiting"
            why = f"waiting for {kind} webhook {hook.name}" + (f": {message}" if message else "")
    return overall, why


def has(d: Draft, kind: str) -> bool:
    return any(hook.type == kind for hook in d.spec.webhooks)


def _prefix(d: Draft) -> str:
    return f"{d.ctx.rollout.name}-{d.target}-{d.status.attempt}"


def _webhook(
    d: Draft, call_id: str, hook: spec_analysis.Webhook, once: bool = False
) -> tuple[GateState, str]:
    d.touched_webhooks.add(call_id)
    recorded = d.status.webhooks.get(call_id)
    seen = d.ctx.observations.webhooks.get(call_id)
    message = seen.message if seen is not None else ""
    if recorded in ("passed", "failed"):
        return recorded, message  # type: ignore[return-value]
    if seen is None or seen.state == "waiting":
        if seen is None:
            d.act(
                actions.CallWebhook(
                    call_id=call_id,
                    webhook=hook,
                    phase=str(d.status.phase),
                    revision=d.target,
                    once=once,
                )
            )
        if recorded is None:
            d.update(webhooks={**d.status.webhooks, call_id: "waiting"})
        return "waiting", message
    d.update(webhooks={**d.status.webhooks, call_id: seen.state})
    reason = Reason.WEBHOOK_PASSED if seen.state == "passed" else Reason.WEBHOOK_FAILED
    verb = "passed" if seen.state == "passed" else "failed"
    d.event(reason, f"{hook.type} webhook {hook.name} {verb}" + (f": {message}" if message else ""))
    return seen.state, message


def notify(d: Draft, kind: str) -> None:
    """Call the webhooks of ``kind`` once (post-rollout): fire and forget."""
    sent = list(d.status.webhooks_sent)
    for hook in d.spec.webhooks:
        call_id = f"{_prefix(d)}-{kind}-{hook.name}"
        if hook.type != kind or call_id in sent:
            continue
        d.act(
            actions.CallWebhook(
                call_id=call_id, webhook=hook, phase=str(d.status.phase), revision=d.target
            )
        )
        sent.append(call_id)
    if sent != d.status.webhooks_sent:
        d.update(webhooks_sent=sent[-_SENT_KEPT:])


def sweep(d: Draft) -> None:
    """Stop and forget the runs and gates nobody asked about in this plan."""
    if d.keep_runs:
        return
    runs = dict(d.status.analysis_runs)
    for rid, phase in d.status.analysis_runs.items():
        if rid in d.touched_runs:
            continue
        if phase not in COMPLETED:
            d.act(actions.StopAnalysis(run_id=rid))
        del runs[rid]
    hooks = dict(d.status.webhooks)
    for call_id, state in d.status.webhooks.items():
        if call_id in d.touched_webhooks:
            continue
        if state == "waiting":
            d.act(actions.StopWebhook(call_id=call_id))
        del hooks[call_id]
    if runs != d.status.analysis_runs or hooks != d.status.webhooks:
        d.update(analysis_runs=runs, webhooks=hooks)
