"""The engine's entry point: ``plan(ctx) -> Plan``, called by the controller every tick.

It does what every strategy shares, then dispatches to ``strategies/<strategy>.advance``:

1. a new target revision (the first ever, or a new one mid-rollout) resets the rollout;
2. requests from ``engine.commands`` (retry, abort, pause/resume) are consumed, each with
   its event; promote requests are consumed by the strategies;
3. the strategy (or converging on one revision, or holding on stable after an abort);
4. analysis runs and webhook gates no strategy asked about are stopped (``engine.runs``);
   revisions whose ``scale_down_at`` passed, orphans, and history beyond
   ``revisionHistoryLimit`` are cleaned up;
5. progress is tracked for ``progressDeadlineSeconds``; a target revision whose replicas
   crash ``CRASH_LOOP_FAILURES`` times in a row degrades at once (Kubernetes'
   CrashLoopBackOff), without waiting for the deadline.

Planning is level-triggered: with the resulting status and observations that reflect the
actions, planning again asks for nothing new and emits no event twice.
"""

from __future__ import annotations

from collections.abc import Callable

from changeover.engine import rollback, runs
from changeover.engine.actions import Plan
from changeover.engine.context import Context
from changeover.engine.draft import Draft, Phase, Reason
from changeover.engine.status import PauseState
from changeover.engine.strategies import (
    ab_test,
    blue_green,
    canary,
    recreate,
    rolling_update,
    shadow,
    shared,
)
from changeover.spec import models

Step = Callable[[Draft], None]

ADVANCE: dict[str, Step] = {
    "recreate": recreate.advance,
    "rollingUpdate": rolling_update.advance,
    "blueGreen": blue_green.advance,
    "canary": canary.advance,
    "abTest": ab_test.advance,
    "shadow": shadow.advance,
}

# What an Aborted rollout (or one Degraded by a failed hook) does each tick.
HOLD: dict[str, Step] = {
    "recreate": recreate.hold,
    "rollingUpdate": rolling_update.hold,
}

# Strategies that walk steps keep ``current_step_index``; a rolling update has none.
_STEPPED = ("recreate", "blueGreen", "canary", "abTest", "shadow")


def plan(ctx: Context) -> Plan:
    """The actions, events and next status for ``ctx``. Pure: no I/O, time is ``ctx.now``."""
    d = Draft(ctx)
    _start(d)
    if ctx.observations.blocked:
        # Nothing can be acted on without a router; say why, and let the deadline run.
        d.note(f"cannot serve: {ctx.observations.blocked}")
        _track_progress(d)
        return d.finish()
    _consume_retry(d)
    _consume_abort(d)
    _consume_user_pause(d)
    if _dispatch(d):
        _sweep_orphans(d)
    runs.sweep(d)
    _scale_down_expired(d)
    _prune_history(d)
    _track_progress(d)
    _detect_crash_loop(d)
    rollback.remember_healthy(d)
    return d.finish()


# --- 1. new targets ----------------------------------------------------------------------


def _start(d: Draft) -> None:
    revision, name = d.ctx.revision, d.spec.strategy.name
    if d.status.target_revision is None:
        d.update(target_revision=revision, strategy=name, progress_at=d.now)
        d.update(step_started_at=d.now)
        msg = f"first revision {revision}: scaling to {d.replicas} replicas"
        d.event(Reason.UPDATED, msg, revision)
        return
    if d.status.target_revision != revision:
        _new_target(d, revision)
    elif d.status.strategy != name:
        d.update(strategy=name)


def _new_target(d: Draft, revision: int) -> None:
    """A new template mid-rollout or after one: start over towards ``revision``."""
    name = d.spec.strategy.name
    stable, in_flight = d.stable, d.status.canary_revision
    if name not in ("rollingUpdate", "recreate") and stable is not None:
        # The revision in flight never had all the traffic: put everything back on stable
        # at once; the new revision starts from the first step.
        d.set_weights({stable: 100})
        d.remove_managed_routes()
        d.preview(None)
        if in_flight is not None and in_flight != revision:
            d.schedule_scale_down(in_flight, d.now)
    d.cancel_scale_down(revision)
    rolling_back = revision == stable
    canary_revision = None if stable is None or rolling_back else revision
    fast = rollback.fast_track(d, revision)
    pause = d.status.pause
    d.update(
        target_revision=revision,
        canary_revision=canary_revision,
        strategy=name,
        current_step_index=0 if name in _STEPPED and canary_revision is not None else None,
        step_started_at=d.now,
        progress_at=d.now,
        pause=pause if pause is not None and pause.reason == "user" else None,
        promote=None,
        abort=False,
        retry=False,
        aborted_at=None,
        attempt=d.status.attempt + 1,
        hooks={},
        analysis_round=0,
        fast_track=fast,
    )
    d.move_to(Phase.PROGRESSING, f"updating to revision {revision}")
    how = "rolling back to the stable revision" if rolling_back else name
    if fast:
        how = "going back to a recent revision: no steps, no analysis"
    d.event(Reason.UPDATED, f"Rollout updated to revision {revision} ({how})", revision)


# --- 2. requests from engine.commands ----------------------------------------------------


def _in_flight(d: Draft) -> bool:
    return d.stable is not None and d.target != d.stable


def _consume_retry(d: Draft) -> None:
    if not d.status.retry:
        return
    d.update(retry=False)
    if d.status.phase not in (Phase.ABORTED, Phase.DEGRADED):
        return
    if d.status.canary_revision is not None:
        d.cancel_scale_down(d.status.canary_revision)
    stepped = d.status.strategy in _STEPPED and _in_flight(d)
    d.update(
        attempt=d.status.attempt + 1,
        analysis_round=0,
        current_step_index=0 if stepped else None,
        step_started_at=d.now,
        progress_at=d.now,
        pause=None,
        promote=None,
        aborted_at=None,
    )
    d.move_to(Phase.PROGRESSING, f"retrying revision {d.target}")
    d.event(Reason.RETRIED, f"Rollout retried: revision {d.target} starts over", d.target)


def _consume_abort(d: Draft) -> None:
    if not d.status.abort:
        return
    d.update(abort=False)
    if d.status.phase in (Phase.HEALTHY, Phase.ABORTED) or not _in_flight(d):
        return
    aborted_at = d.status.aborted_at if d.status.aborted_at is not None else d.now
    in_flight = d.status.canary_revision
    if in_flight is not None and d.status.strategy not in ("rollingUpdate", "recreate"):
        d.schedule_scale_down(in_flight, aborted_at + shared.abort_delay(d.spec))
    d.update(aborted_at=aborted_at, pause=None, promote=None)
    msg = f"Rollout aborted: traffic back on stable revision {d.stable}"
    d.move_to(Phase.ABORTED, msg)
    d.event(Reason.ABORTED, msg, d.target)
    runs.notify(d, "post-rollout")


def _consume_user_pause(d: Draft) -> None:
    st = d.status
    wanted = st.user_paused or d.spec.paused
    by_user = st.pause is not None and st.pause.reason == "user"
    if wanted and st.phase not in (Phase.ABORTED, Phase.DEGRADED):
        if st.phase != Phase.PAUSED or not by_user:
            pause = st.pause if by_user else PauseState(reason="user", started_at=d.now)
            d.update(pause=pause)
            d.move_to(Phase.PAUSED, "paused by user")
            d.event(Reason.PAUSED, "Rollout paused by user", d.target)
        return
    if not wanted and by_user:
        d.update(pause=None)
        settled = st.target_revision == st.stable_revision
        # A Healthy rollout that was paused is Healthy again, not newly completed.
        d.move_to(Phase.HEALTHY if settled else Phase.PROGRESSING, "resumed")
        d.event(Reason.RESUMED, "Rollout resumed by user", d.target)


# --- 3. dispatch -------------------------------------------------------------------------


def _dispatch(d: Draft) -> bool:
    """Run the strategy (or converge, or hold). True when orphans should be swept, i.e.
    when the strategy does not manage every revision itself."""
    st, name = d.status, d.spec.strategy.name
    held = st.phase == Phase.ABORTED or (st.phase == Phase.DEGRADED and not st.deadline_exceeded)
    user_paused = st.pause is not None and st.pause.reason == "user"
    if user_paused and st.phase == Phase.PAUSED:
        d.keep_runs = True  # a human holds the rollout; its analysis goes on measuring
        return name not in ("rollingUpdate", "recreate")
    if not held and _in_flight(d) and not shared.lifecycle_gates(d):
        return name not in ("rollingUpdate", "recreate")
    if name == "rollingUpdate":
        (rolling_update.hold if held else rolling_update.advance)(d)
        return False
    if held:
        HOLD.get(name, shared.hold_stable)(d)
        return name != "recreate"
    if d.stable is None or d.target == d.stable:
        shared.converge(d)
        return True
    if st.fast_track:
        rollback.promote(d)
        return True
    ADVANCE[name](d)
    return name != "recreate"


# --- 4. clean-up -------------------------------------------------------------------------


def _keep(d: Draft) -> set[int]:
    st = d.status
    kept = {st.stable_revision, st.target_revision, st.canary_revision}
    return {rev for rev in kept if rev is not None}


def _sweep_orphans(d: Draft) -> None:
    """Revisions nobody wants any more (an abandoned canary after a crash, a previous first
    revision) are scaled down now."""
    keep = _keep(d)
    for revision, seen in d.ctx.observations.revisions.items():
        scheduled = str(revision) in d.status.scale_down_at
        if revision not in keep and not scheduled and seen.desired > 0:
            d.scale(revision, 0)


def _scale_down_expired(d: Draft) -> None:
    """scaleDownDelaySeconds and abortScaleDownDelaySeconds: scale to zero once the time
    has come; forget the entry only once the platform reports it done (crash-safe)."""
    for key, at in d.status.scale_down_at.items():
        revision = int(key)
        # The stable revision is never scaled down; the target may be (an aborted canary),
        # and a new target or a retry cancels its entry.
        stable = revision == d.status.stable_revision
        if stable or (d.now >= at and d.obs(revision).desired == 0):
            d.cancel_scale_down(revision)
        elif d.now >= at:
            d.scale(revision, 0)


def _prune_history(d: Draft) -> None:
    """Keep the newest ``revisionHistoryLimit`` idle revisions on the platform."""
    keep = _keep(d)
    idle = sorted(
        (
            rev
            for rev, seen in d.ctx.observations.revisions.items()
            if rev not in keep
            and seen.desired == 0
            and seen.ready == 0
            and seen.terminating == 0  # deleting waits for the drain: not on this tick
            and str(rev) not in d.status.scale_down_at
        ),
        reverse=True,
    )
    for revision in idle[d.spec.revision_history_limit :]:
        d.delete(revision)


# --- 5. progress -------------------------------------------------------------------------


def _progress_key(d: Draft) -> str:
    st = d.status
    pause = st.pause.reason if st.pause is not None else "-"
    counts = ",".join(
        f"{rev}:{seen.desired}/{seen.available}"
        for rev, seen in sorted(d.ctx.observations.revisions.items())
    )
    return f"{st.target_revision}|{st.current_step_index}|{pause}|{counts}"


def _track_progress(d: Draft) -> None:
    st = d.status
    key = _progress_key(d)
    if key != st.progress_key:
        d.update(progress_key=key, progress_at=d.now)
        if st.phase == Phase.DEGRADED and st.deadline_exceeded:
            d.move_to(Phase.PROGRESSING, f"revision {d.target} is making progress again")
            d.event(Reason.UPDATED, f"revision {d.target} is making progress again", d.target)
        return
    if st.phase != Phase.PROGRESSING or d.deliberate_wait or st.progress_at is None:
        return
    deadline = d.spec.progress_deadline_seconds
    if d.now - st.progress_at <= deadline:
        return
    msg = (
        f"revision {d.target} made no progress within progressDeadlineSeconds "
        f"({models.format_duration(deadline)})"
    )
    target = d.ctx.observations.of(d.target)
    why = target.not_ready or target.last_failure
    if d.ctx.observations.blocked:
        msg += f": {d.ctx.observations.blocked}"
    elif why and target.available < target.desired:
        msg += f": {why}"
    _stuck(d, msg, Reason.DEADLINE)


def _stuck(d: Draft, msg: str, reason: Reason) -> None:
    """The target cannot get there by itself (a passed deadline, a crash loop): Degraded,
    healing by itself once the revision makes progress again, or with
    ``progressDeadlineAbort`` (and a stable revision to go back to) aborted: all traffic
    back on stable. This is the one place for what a stuck rollout does, so both causes
    always behave alike."""
    if d.spec.progress_deadline_abort and d.stable is not None and d.target != d.stable:
        d.event(reason, msg, d.target)
        shared.abort(d, msg)
        return
    d.move_to(Phase.DEGRADED, msg)
    d.update(deadline_exceeded=True)
    d.event(reason, msg, d.target)


# A replica of the target that crashed this many times in a row without becoming Ready
# (about 3.5 s with the default backoff) is crash-looping: waiting for the deadline
# (600 s by default) would tell the user nothing more.
CRASH_LOOP_FAILURES = 3


def _detect_crash_loop(d: Draft) -> None:
    """Progressing towards a crash-looping target, or Healthy on a stable revision that
    started crash-looping (a dependency gone): Degraded now, not Healthy with no replica
    up or Progressing until the deadline."""
    st = d.status
    target = d.ctx.observations.of(d.target)
    if st.phase not in (Phase.PROGRESSING, Phase.HEALTHY):
        return
    if target.failures < CRASH_LOOP_FAILURES:
        return
    msg = (
        f"revision {d.target} is crash-looping: a replica crashed {target.failures} times "
        f"in a row, last: {target.last_failure or 'no message'}"
    )
    _stuck(d, msg, Reason.DEGRADED)
