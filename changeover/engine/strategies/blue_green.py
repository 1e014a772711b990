"""Blue-green: the new revision is brought up beside the old one and served on the preview
endpoint; when promoted (by hand, after ``autoPromotionSeconds``, or at once) all traffic
switches to it atomically, and the old revision is scaled down ``scaleDownDelaySeconds``
later (Argo Rollouts' blueGreen).

``current_step_index`` is 0 while the preview is prepared and 1 once promotion was decided
(so a promote is remembered while the new revision scales to full size); with
``postPromotionAnalysis`` it is 2 once traffic switched and the analysis runs, 3 when a
human promoted past it.

Analysis (Argo Rollouts' blueGreen): ``prePromotionAnalysis`` runs once the preview is up
and must succeed before the switch (failure aborts, Inconclusive pauses), after
``prePromotionChecks`` passing checks of ``spec.checks`` (``engine.checks``; Flagger's
blue/green iterations);
``postPromotionAnalysis`` runs after the switch, with the old revision still at full size,
and its failure switches traffic straight back. ``pre-rollout`` webhooks are called once the
preview is up, ``confirm-promotion`` webhooks gate the switch.
"""

from __future__ import annotations

from changeover.engine import checks
from changeover.engine.actions import Plan
from changeover.engine.context import Context
from changeover.engine.draft import Draft, Reason
from changeover.engine.strategies import shared
from changeover.spec import models


def plan(ctx: Context) -> Plan:
    d = Draft(ctx)
    advance(d)
    return d.finish()


def advance(d: Draft) -> None:
    bg = d.spec.strategy.blue_green or models.BlueGreenStrategy()
    new, stable = d.target, d.stable
    index = d.status.current_step_index or 0
    if stable is not None:
        d.scale(stable, d.replicas)
        if index < 2:
            d.set_weights({stable: 100})
    if d.take_promote() is not None and index in (0, 2):
        index += 1
        d.update(current_step_index=index)
        d.leave_pause(f"revision {new} promoted")
    if index == 0:
        if not _preview(d, bg):
            return
        index = 1
    post = bg.post_promotion_analysis
    if index == 1 and post is not None:
        if not _switch(d):
            return
        index = 2
    if index == 2 and post is not None:
        verdict = shared.analysis(
            d, "post-promotion", post, kind="postPromotion", what="post-promotion"
        )
        if verdict != "passed":
            return
    switched_already = index >= 2
    promoted = shared.promote_fully(
        d, delay=bg.scale_down_delay_seconds, confirm=not switched_already
    )
    if promoted and not switched_already:
        d.event(Reason.SWITCHED, f"active service switched from revision {stable} to {new}", new)


def _switch(d: Draft) -> bool:
    """Switch traffic to the new revision but keep the old one stable (and at full size)
    until the post-promotion analysis passed."""
    new, stable = d.target, d.stable
    d.scale(new, d.replicas)
    available = d.available(new)
    if available < d.replicas:
        d.note(f"promoting revision {new}: {available}/{d.replicas} replicas available")
        return False
    if not shared.confirmed(d, "confirm-promotion"):
        return False
    d.set_weights({new: 100})
    d.preview(None)
    d.update(current_step_index=2, step_started_at=d.now)
    text = f"active service switched from revision {stable} to {new}"
    d.event(Reason.SWITCHED, f"{text}; post-promotion analysis running", new)
    return True


def _preview(d: Draft, bg: models.BlueGreenStrategy) -> bool:
    """Bring the preview up and wait for promotion; True once promotion is due."""
    new = d.target
    wanted = bg.preview_replica_count or d.replicas
    d.scale(new, wanted)
    available = d.available(new)
    if available < wanted:
        d.note(f"preview revision {new}: {available}/{wanted} replicas available")
        return False
    d.preview(new)
    if not shared.pre_rollout(d):
        return False
    if bg.pre_promotion_checks is not None:
        outcome, why = checks.passed(d, 0, bg.pre_promotion_checks, "pre-promotion")
        if outcome == "threshold":
            shared.abort(d, why)
        if outcome != "passed":
            return False
    pre = bg.pre_promotion_analysis
    if pre is not None:
        verdict = shared.analysis(
            d, "pre-promotion", pre, kind="prePromotion", what="pre-promotion"
        )
        if verdict != "passed":
            return False
    if not bg.auto_promotion_enabled:
        msg = f"revision {new} is on preview: waiting for promote"
        shared.wait_for_promotion(d, seconds=None, message=msg)
        return False
    seconds = bg.auto_promotion_seconds
    if seconds is not None:
        label = models.format_duration(seconds)
        msg = f"revision {new} is on preview: promoting automatically after {label}"
        if not shared.wait_for_promotion(d, seconds=seconds, message=msg):
            return False
    d.update(current_step_index=1, step_started_at=d.now)
    d.leave_pause(f"promoting revision {new}")
    return True
