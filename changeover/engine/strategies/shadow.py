"""Shadow: the new revision receives a copy of ``percentage`` of requests; clients only
ever see stable's responses. After ``duration`` (Progressing meanwhile), or on promote when
there is no duration (Paused until then), the new revision takes all traffic.

``current_step_index``: 0 waiting for the shadow, 1 mirroring (since ``step_started_at``),
2 promoting.
"""

from __future__ import annotations

from changeover.engine.actions import Plan
from changeover.engine.context import Context
from changeover.engine.draft import Draft, Reason
from changeover.engine.strategies import shared
from changeover.spec import models

MIRROR_NAME = "shadow"


def plan(ctx: Context) -> Plan:
    d = Draft(ctx)
    advance(d)
    return d.finish()


def advance(d: Draft) -> None:
    sh = d.spec.strategy.shadow or models.ShadowStrategy()
    new, stable = d.target, d.stable
    if stable is not None:
        d.scale(stable, d.replicas)
        d.set_weights({stable: 100})
    index = d.status.current_step_index or 0
    if d.take_promote() is not None:
        index = 2
        d.update(current_step_index=2)
        d.leave_pause(f"revision {new} promoted")
    if index < 2:
        d.scale(new, sh.replicas or d.replicas)
    if index == 0:
        if not _start(d, sh):
            return
        index = 1
    if index == 1:
        decided = False
        if sh.analysis is not None:
            verdict = shared.analysis(
                d, "experiment", sh.analysis, kind="experiment", what="shadow", blocking=False
            )
            if verdict == "stopped":
                return
            decided = verdict == "passed"
        if not decided and not shared.run_for(d, duration=sh.duration, label="shadow"):
            return
        d.update(current_step_index=2)
        d.leave_pause("shadow decided by its analysis")
        d.event(Reason.STEP_COMPLETED, "shadow finished", new)
    shared.promote_fully(d, delay=shared.DEFAULT_SCALE_DOWN_DELAY)


def _start(d: Draft, sh: models.ShadowStrategy) -> bool:
    new = d.target
    wanted = sh.replicas or d.replicas
    available = d.available(new)
    if available < wanted:
        d.note(f"shadow revision {new}: {available}/{wanted} replicas available")
        return False
    if not shared.pre_rollout(d):
        return False
    d.mirror(MIRROR_NAME, new, sh.percentage, [], sh.compare)
    d.update(current_step_index=1, step_started_at=d.now)
    d.event(Reason.STEP_COMPLETED, f"shadow started: {sh.percentage}% copied to {new}", new)
    return True
