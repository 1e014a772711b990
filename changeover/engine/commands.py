"""What a human asks of a rollout: promote, abort, retry, pause, resume. Pure functions.

The HTTP API / CLI (through the controller) call these on the stored status and persist the
result; each records a *request* in the status and the next ``engine.plan`` carries it out
(changes phase through the table, emits the event, issues the actions). Each raises
``errors.StateError`` with a clear message when the operation does not fit the rollout.

Undo is not here: it re-applies an earlier template, which the engine sees as a new target.

    >>> from changeover.engine.status import RolloutStatus
    >>> s = RolloutStatus(phase="Paused", strategy="canary", stable_revision=1,
    ...                   target_revision=2, canary_revision=2)
    >>> promote(s).promote, promote(s, full=True).promote
    ('step', 'full')
"""

from __future__ import annotations

from changeover import errors
from changeover.engine.phases import Phase
from changeover.engine.status import PauseState, RolloutStatus

_NO_STEPS = ("recreate", "rollingUpdate")


def _in_flight(status: RolloutStatus) -> bool:
    return status.stable_revision is not None and status.target_revision != status.stable_revision


def promote(status: RolloutStatus, full: bool = False) -> RolloutStatus:
    """Skip the current step or pause (``full``: every remaining step) and unpause."""
    if status.phase == Phase.HEALTHY or not _in_flight(status):
        raise errors.StateError(
            f"nothing to promote: revision {status.stable_revision} is already stable"
        )
    if status.phase == Phase.ABORTED:
        raise errors.StateError("the rollout is Aborted: use retry to roll out again")
    if status.strategy in _NO_STEPS:
        raise errors.StateError(
            f"a {status.strategy} rollout has no steps or pauses to promote"
            + ("; use resume to unpause it" if status.user_paused else "")
        )
    request = "full" if full or status.promote == "full" else "step"
    return status.model_copy(update={"promote": request, "user_paused": False})


def abort(status: RolloutStatus, now: float) -> RolloutStatus:
    """Send all traffic back to the stable revision and stop there (until retry)."""
    if status.phase == Phase.ABORTED:
        raise errors.StateError("the rollout is already Aborted")
    if status.phase == Phase.HEALTHY or not _in_flight(status):
        raise errors.StateError("nothing to abort: no revision is being rolled out")
    return status.model_copy(update={"abort": True, "aborted_at": now, "promote": None})


def retry(status: RolloutStatus) -> RolloutStatus:
    """Start an Aborted or Degraded rollout over from its first step."""
    if status.phase not in (Phase.ABORTED, Phase.DEGRADED):
        raise errors.StateError(
            f"retry needs an Aborted or Degraded rollout; this one is {status.phase}"
        )
    return status.model_copy(update={"retry": True, "abort": False})


def pause(status: RolloutStatus, now: float) -> RolloutStatus:
    """Hold the rollout where it is (no step, scale or weight changes) until resume."""
    if status.user_paused:
        raise errors.StateError("the rollout is already paused by a user")
    if status.phase in (Phase.ABORTED, Phase.DEGRADED):
        raise errors.StateError(
            f"the rollout is {status.phase}: nothing is progressing; use retry or abort"
        )
    update: dict[str, object] = {"user_paused": True}
    if status.pause is None:
        update["pause"] = PauseState(reason="user", started_at=now)
    return status.model_copy(update=update)


def resume(status: RolloutStatus) -> RolloutStatus:
    """Undo ``pause``. A pause step or a blue-green promotion gate needs promote instead."""
    if not status.user_paused:
        if status.pause is not None:
            raise errors.StateError(
                f"the rollout is paused ({status.pause.reason}), not by a user: use promote"
            )
        raise errors.StateError("the rollout is not paused")
    return status.model_copy(update={"user_paused": False})
