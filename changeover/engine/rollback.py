"""Going back: which rollbacks skip steps and analysis, and which revisions were Healthy.

``engine.plan`` asks ``fast_track`` when the target changes and, while the status says
so, ``promote`` instead of running the strategy; it calls ``remember_healthy`` on every
plan so ``undo`` (``undo_target``, for the controller and the operator) can go back to the
last revision that was Healthy.

A rollback is fast-tracked (Argo Rollouts' rules) when the revision gone back to is one
of the last ``rollbackWindow.revisions`` revisions counting the stable one (with stable 5
and a window of 3: revisions 4 and 3), or when it is a blue-green revision whose replicas
are all still up (within its ``scaleDownDelaySeconds``). Going back to the stable revision
itself needs no fast track: the rollout simply converges on it.
"""

from __future__ import annotations

from collections.abc import Iterable

from changeover.engine.draft import Draft, Phase
from changeover.engine.status import RolloutStatus
from changeover.engine.strategies import shared

# Strategies with steps or analysis to skip; recreate's stages are what recreate is.
_FAST = ("canary", "blueGreen", "abTest", "shadow")

# How many Healthy revisions the status remembers for undo.
HEALTHY_KEPT = 20


def fast_track(d: Draft, revision: int) -> bool:
    """Whether going to ``revision`` (the new target) skips steps and analysis."""
    stable, name = d.stable, d.spec.strategy.name
    if stable is None or revision >= stable or name not in _FAST:
        return False
    window = d.spec.rollback_window
    if window is not None and stable - revision < window.revisions:
        return True
    return name == "blueGreen" and d.replicas > 0 and d.available(revision) >= d.replicas


def promote(d: Draft) -> None:
    """The fast-tracked revision takes all traffic once its replicas are available; the
    old stable is scaled down after the strategy's usual delay."""
    strategy = d.spec.strategy.blue_green or d.spec.strategy.canary
    delay = (
        strategy.scale_down_delay_seconds
        if strategy is not None
        else shared.DEFAULT_SCALE_DOWN_DELAY
    )
    if shared.promote_fully(d, delay=delay, confirm=False):
        d.update(fast_track=False, current_step_index=None)


def remember_healthy(d: Draft) -> None:
    """Add the stable revision to ``healthy_revisions`` when the rollout is Healthy."""
    st = d.status
    stable = st.stable_revision
    if st.phase != Phase.HEALTHY or stable is None:
        return
    seen = st.healthy_revisions
    if seen and seen[-1] == stable:
        return
    kept = [rev for rev in seen if rev != stable][-(HEALTHY_KEPT - 1) :]
    d.update(healthy_revisions=[*kept, stable])


def undo_target(status: RolloutStatus, current: int | None, kept: Iterable[int]) -> int | None:
    """Where ``undo`` without a revision goes: the last revision that was Healthy other
    than ``current`` and still ``kept`` (as ``oc rollout undo`` goes to the last successful
    deployment); for a status that never recorded one, the highest earlier number."""
    kept = set(kept)
    for revision in reversed(status.healthy_revisions):
        if revision != current and revision in kept:
            return revision
    earlier = [n for n in kept if current is None or n < current]
    return max(earlier) if earlier else None
