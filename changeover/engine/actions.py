"""What the engine asks the world to do: small frozen dataclasses, executed by controller/.

A plan's actions state *desired* state ("revision 3 should have 2 replicas", "weights
should be {2: 90, 3: 10}"), so executing one twice is harmless: that is what makes a crash
between two actions safe to resume. The engine emits an action only when the desired state
differs from what the status (traffic) or the observations (replicas, hooks) say.

Revisions are named by number (1, 2, 3...), as in Argo Rollouts' revision annotation.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from changeover.engine.status import RolloutStatus
from changeover.spec import analysis as spec_analysis
from changeover.spec import models


@dataclass(frozen=True, kw_only=True)
class ScaleRevision:
    """Keep ``replicas`` replicas of ``revision`` running (0 stops them, draining first)."""

    revision: int
    replicas: int


@dataclass(frozen=True, kw_only=True)
class DeleteRevision:
    """Forget a revision's replicas entirely (history keeps its template for undo)."""

    revision: int


@dataclass(frozen=True, kw_only=True)
class SetWeight:
    """Split traffic: revision → percent, summing to 100. Atomic: after it is applied no
    new request follows the old split."""

    weights: tuple[tuple[int, int], ...]

    @staticmethod
    def of(weights: dict[int, int]) -> SetWeight:
        return SetWeight(weights=tuple(sorted(weights.items())))

    def as_dict(self) -> dict[int, int]:
        return dict(self.weights)


@dataclass(frozen=True, kw_only=True)
class SetHeaderRoute:
    """Requests matching any of ``match`` go to ``revision``. ``revision=None`` or an empty
    ``match`` removes the route named ``name``."""

    name: str
    revision: int | None
    match: tuple[models.RouteMatch, ...] = ()


@dataclass(frozen=True, kw_only=True)
class SetStickySplit:
    """``weight`` percent of users, by a stable hash of ``user_key``, go to ``revision``.
    ``revision=None`` removes the split."""

    revision: int | None
    user_key: models.UserKey | None = None
    weight: int = 0


@dataclass(frozen=True, kw_only=True)
class SetMirror:
    """Copy ``percentage`` of requests (matching ``match``, if given) to ``revision``;
    responses are discarded. ``revision=None`` removes the mirror named ``name``."""

    name: str
    revision: int | None
    percentage: int = 0
    match: tuple[models.RouteMatch, ...] = ()
    compare: models.MirrorCompare | None = None  # compare the shadow's answers (builtin)


@dataclass(frozen=True, kw_only=True)
class SetPreview:
    """Serve ``revision`` on the preview endpoint (blue-green); None stops serving it."""

    revision: int | None


@dataclass(frozen=True, kw_only=True)
class SetMaintenance:
    """While on, the router answers 503 + Retry-After with a maintenance page (recreate's
    planned downtime) instead of refusing connections."""

    enabled: bool
    retry_after_seconds: int = 5


@dataclass(frozen=True, kw_only=True)
class RunHook:
    """Run ``hook`` once for ``hook_id`` (unique per rollout, revision and hook point); its
    result comes back in ``Observations.hooks``. Running the same id again is a no-op."""

    hook_id: str
    hook: models.Hook
    revision: int


@dataclass(frozen=True, kw_only=True)
class RemoveManagedRoutes:
    """Drop every header route, sticky split and mirror (end of a canary, A/B or shadow)."""


@dataclass(frozen=True, kw_only=True)
class StartAnalysis:
    """Start analysis run ``run_id`` (unique per rollout, revision, attempt and point) of
    ``analysis`` against ``revision`` (the new one) and ``stable_revision`` (the baseline).
    Its phase comes back in ``Observations.analysis``. Starting an id that exists is a
    no-op, so re-asking after a crash is harmless."""

    run_id: str
    kind: str  # "step", "background", "prePromotion", "postPromotion", "experiment", "check"
    analysis: spec_analysis.RolloutAnalysis
    revision: int
    stable_revision: int | None
    # A check of ``spec.checks``: every metric measured once, this many seconds after the
    # start, whatever its own interval, count and limits say.
    measure_once_after: float | None = None


@dataclass(frozen=True, kw_only=True)
class StopAnalysis:
    """Stop run ``run_id``: in-flight measurements are cancelled; a run that had not
    failed ends Successful (Argo Rollouts' terminated run)."""

    run_id: str


@dataclass(frozen=True, kw_only=True)
class CallWebhook:
    """Call ``webhook`` as its type says (``spec.analysis.Webhook``): once, with retries,
    or every ``interval`` until it passes or is stopped. The payload carries ``phase`` and
    ``revision``. Its state comes back in ``Observations.webhooks`` (except post-rollout,
    whose result is only reported). Calling an id that is in progress is a no-op."""

    call_id: str
    webhook: spec_analysis.Webhook
    phase: str
    revision: int
    # Called once (with its retries) whatever its type: a ``rollout`` webhook in a check.
    once: bool = False


@dataclass(frozen=True, kw_only=True)
class StopWebhook:
    """Stop polling ``call_id`` (a gate or periodic hook no longer needed)."""

    call_id: str


Action = (
    ScaleRevision
    | DeleteRevision
    | SetWeight
    | SetHeaderRoute
    | SetStickySplit
    | SetMirror
    | SetPreview
    | SetMaintenance
    | RunHook
    | RemoveManagedRoutes
    | StartAnalysis
    | StopAnalysis
    | CallWebhook
    | StopWebhook
)


class Reason(StrEnum):
    """Event reasons, named as Argo Rollouts names them where the event is the same."""

    UPDATED = "RolloutUpdated"
    STEP_COMPLETED = "RolloutStepCompleted"
    PAUSED = "RolloutPaused"
    RESUMED = "RolloutResumed"
    PROMOTED = "RolloutPromoted"
    COMPLETED = "RolloutCompleted"
    ABORTED = "RolloutAborted"
    RETRIED = "RolloutRetried"
    DEGRADED = "RolloutDegraded"
    SCALED = "ScalingReplicaSet"
    WEIGHT = "TrafficWeightUpdated"
    ROUTES = "TrafficRoutesUpdated"
    SWITCHED = "SwitchActiveService"
    HOOK_STARTED = "HookStarted"
    HOOK_SUCCEEDED = "HookSucceeded"
    HOOK_FAILED = "HookFailed"
    DOWNTIME = "PlannedDowntime"
    DEADLINE = "ProgressDeadlineExceeded"
    ANALYSIS_RUNNING = "AnalysisRunRunning"
    ANALYSIS_SUCCESSFUL = "AnalysisRunSuccessful"
    ANALYSIS_FAILED = "AnalysisRunFailed"
    ANALYSIS_ERROR = "AnalysisRunError"
    ANALYSIS_INCONCLUSIVE = "AnalysisRunInconclusive"
    WEBHOOK_PASSED = "WebhookPassed"
    WEBHOOK_FAILED = "WebhookFailed"
    CHECK_PASSED = "CheckPassed"
    CHECK_FAILED = "CheckFailed"


@dataclass(frozen=True, kw_only=True)
class Event:
    reason: Reason
    message: str
    revision: int | None = None


@dataclass(frozen=True, kw_only=True)
class Plan:
    """The engine's answer: what to do, what happened, and the status to persist."""

    status: RolloutStatus
    actions: tuple[Action, ...] = ()
    events: tuple[Event, ...] = ()
