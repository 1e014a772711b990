"""The rollout status the engine owns: persisted by the controller, rendered by the CLI.

Only the engine produces a new status (``Plan.status``); the controller stores it before
and after acting on a plan and never edits it, except through ``engine.commands`` (promote,
abort, pause...), which are pure functions too.

``traffic`` is the traffic state the engine last asked for. After a crash the controller
re-applies it to a fresh router before the first plan, so the router and the status agree.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from changeover.engine.phases import Phase
from changeover.spec import models


class _Status(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)


class HeaderRouteState(_Status):
    revision: int
    match: list[models.RouteMatch]


class StickyState(_Status):
    revision: int
    user_key: models.UserKey | None
    weight: int


class MirrorState(_Status):
    revision: int
    percentage: int
    match: list[models.RouteMatch] = Field(default_factory=list)
    compare: models.MirrorCompare | None = None


class TrafficState(_Status):
    """What the router was last told. ``weights``: revision (as a string key, since JSON
    keys are strings) → percent."""

    weights: dict[str, int] = Field(default_factory=dict)
    header_routes: dict[str, HeaderRouteState] = Field(default_factory=dict)
    sticky: StickyState | None = None
    mirrors: dict[str, MirrorState] = Field(default_factory=dict)
    preview_revision: int | None = None
    maintenance: bool = False


class PauseState(_Status):
    reason: Literal["step", "user", "inconclusive", "promotion"]
    started_at: float
    # For a timed pause (``pause: {duration: 30s}``, ``autoPromotionSeconds``): when it ends.
    until: float | None = None


class CheckState(_Status):
    """Where ``spec.checks`` stand for one attempt (``engine.checks``): ``number`` names
    the next check's runs and calls, ``failed`` counts failed checks (Flagger's
    failedChecks), ``passed`` the passing checks at step ``step``, ``started_at`` when
    the current check began."""

    attempt: int = 0
    number: int = 0
    failed: int = 0
    passed: int = 0
    step: int | None = None
    started_at: float | None = None
    pre_rollout_tries: int = 0
    # After a failed pre-rollout call: when the next one may go out (one interval later).
    retry_at: float | None = None


class RolloutStatus(_Status):
    phase: Phase = Phase.PROGRESSING
    message: str = ""
    strategy: str = ""
    # The revision the spec's template maps to: what the rollout is moving towards.
    target_revision: int | None = None
    stable_revision: int | None = None
    # The revision being rolled out; None when one revision serves everything.
    canary_revision: int | None = None
    current_step_index: int | None = None
    step_started_at: float | None = None
    # When the rollout last made progress (for progressDeadlineSeconds).
    progress_at: float | None = None
    pause: PauseState | None = None
    # Requests from a human, consumed by the engine (see engine.commands).
    abort: bool = False
    promote: Literal["step", "full"] | None = None
    user_paused: bool = False
    aborted_at: float | None = None
    traffic: TrafficState = Field(default_factory=TrafficState)
    # A request from ``engine.commands.retry``, consumed by the engine.
    retry: bool = False
    # Counts new targets and retries; part of every hook id, so a retried (or re-applied)
    # revision runs its hooks again instead of reading an earlier attempt's result.
    attempt: int = 0
    # hook id → "running" | "succeeded" | "failed" (see RunHook). "running" means the engine
    # asked for it, so the HookStarted event is emitted once.
    hooks: dict[str, str] = Field(default_factory=dict)
    # A fingerprint of what counts as progress (step, pause, replica counts); when it changes
    # ``progress_at`` moves to now. Opaque: compare, never parse.
    progress_key: str = ""
    # Degraded because progressDeadlineSeconds passed (heals by itself on progress), as
    # opposed to Degraded by a failed hook (waits for retry).
    deadline_exceeded: bool = False
    # revision (as string) → clock time after which it may be scaled to zero (blue-green
    # scaleDownDelaySeconds, canary abortScaleDownDelaySeconds).
    scale_down_at: dict[str, float] = Field(default_factory=dict)
    # Analysis run id → its last known phase ("Running" until the run completes). A run
    # no strategy asks about any more is stopped and forgotten (``engine.runs``).
    analysis_runs: dict[str, str] = Field(default_factory=dict)
    # Bumped when a human promotes past an Inconclusive run, so the analysis runs afresh.
    analysis_round: int = 0
    # Webhook gate id → "waiting" | "passed" | "failed" (as ``analysis_runs``).
    webhooks: dict[str, str] = Field(default_factory=dict)
    # spec.checks: failed checks and the check in progress (``engine.checks``).
    checks: CheckState = Field(default_factory=CheckState)
    # Fire-and-forget webhook ids already sent (post-rollout), newest last, bounded.
    webhooks_sent: list[str] = Field(default_factory=list)
    # Revisions that were Healthy (stable), most recent last, each once, bounded: where
    # ``undo`` goes back to.
    healthy_revisions: list[int] = Field(default_factory=list)
    # Going back to a revision within ``rollbackWindow``: no steps, no analysis.
    fast_track: bool = False

    def to_json_dict(self) -> dict[str, object]:
        return self.model_dump(mode="json", by_alias=True)
