"""Blue-green: the new revision is brought up beside the old one and served on the preview
endpoint; when promoted (by hand, after ``autoPromotionSeconds``, or at once) all traffic
switches to it atomically, and the old revision is scaled down ``scaleDownDelaySeconds``
later (Argo Rollouts' blueGreen).

``current_step_index`` is 0 while the preview is prepared and 1 once promotion was decided
(so a promote is remembered while the new revision scales to full size).
"""

from __future__ import annotations

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
    if stable is not None:
        d.scale(stable, d.replicas)
        d.set_weights({stable: 100})
    index = d.status.current_step_index or 0
    if d.take_promote() is not None and index == 0:
        index = 1
        d.update(current_step_index=1)
        d.leave_pause(f"revision {new} promoted")
    if index == 0 and not _preview(d, bg):
        return
    if shared.promote_fully(d, delay=bg.scale_down_delay_seconds):
        d.event(Reason.SWITCHED, f"active service switched from revision {stable} to {new}", new)


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
