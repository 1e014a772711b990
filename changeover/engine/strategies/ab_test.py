"""A/B test: variant B (the new revision) runs at full size beside A; requests matching
``match`` and ``weight`` percent of users (by a stable hash of ``userKey``) go to B, the
rest stay on A. After ``duration`` (Progressing meanwhile), or on promote when there is no
duration (Paused until then), B becomes stable with 100% of traffic.

``current_step_index``: 0 waiting for B, 1 test running (since ``step_started_at``),
2 promoting.
"""

from __future__ import annotations

from changeover.engine.actions import Plan
from changeover.engine.context import Context
from changeover.engine.draft import Draft, Reason
from changeover.engine.strategies import shared
from changeover.spec import analysis as spec_analysis
from changeover.spec import models

ROUTE_NAME = "ab-match"


def plan(ctx: Context) -> Plan:
    d = Draft(ctx)
    advance(d)
    return d.finish()


def advance(d: Draft) -> None:
    ab = d.spec.strategy.ab_test
    new, stable = d.target, d.stable
    if stable is not None:
        d.scale(stable, d.replicas)
    d.scale(new, d.replicas)
    index = d.status.current_step_index or 0
    if d.take_promote() is not None:
        index = 2
        d.update(current_step_index=2)
        d.leave_pause(f"revision {new} promoted")
    if ab is not None and index == 0:
        if not _start(d, ab):
            return
        index = 1
    if ab is not None and index == 1:
        decided = _analysis(d, ab.analysis)
        if decided is None:
            return
        if not decided and not shared.run_for(d, duration=ab.duration, label="A/B test"):
            return
        d.update(current_step_index=2)
        d.leave_pause("A/B test decided by its analysis")
        d.event(Reason.STEP_COMPLETED, "A/B test finished", new)
    shared.promote_fully(d, delay=shared.DEFAULT_SCALE_DOWN_DELAY)


def _analysis(d: Draft, spec: spec_analysis.RolloutAnalysis | None) -> bool | None:
    """The test's analysis: True once it succeeded (B wins early), False while it runs (or
    there is none), None when it aborted or paused the rollout."""
    if spec is None:
        return False
    verdict = shared.analysis(
        d, "experiment", spec, kind="experiment", what="A/B test", blocking=False
    )
    return None if verdict == "stopped" else verdict == "passed"


def _start(d: Draft, ab: models.ABTestStrategy) -> bool:
    new, stable = d.target, d.stable
    available = d.available(new)
    if available < d.replicas:
        d.note(f"variant B (revision {new}): {available}/{d.replicas} replicas available")
        return False
    if not shared.pre_rollout(d):
        return False
    if stable is not None:
        # Unmatched requests stay on A: only the routes send anything to B.
        d.set_weights({stable: 100})
    if ab.match:
        d.header_route(ROUTE_NAME, new, ab.match)
    if ab.user_key is not None:
        d.sticky(new, ab.user_key, ab.weight)
    d.update(current_step_index=1, step_started_at=d.now)
    d.event(Reason.STEP_COMPLETED, f"A/B test started: revision {stable} (A) vs {new} (B)", new)
    return True
