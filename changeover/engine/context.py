"""What the engine is given: the spec, the current status, observations and the time.

The controller builds a ``Context`` from the store, the platform and the router on every
tick; strategies read it and return a ``Plan``. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from changeover.engine.status import RolloutStatus
from changeover.spec import models


@dataclass(frozen=True, kw_only=True)
class RevisionObservation:
    """What the platform reports of one revision's replicas."""

    revision: int
    desired: int  # what the platform was last asked to keep running
    ready: int  # passing readiness now
    available: int  # ready for at least minReadySeconds
    restarts: int = 0
    # The most crashes in a row of any replica that is not Ready now (0: none crash-looping),
    # and the latest crash's message, for the Degraded message.
    failures: int = 0
    last_failure: str = ""
    # Why a replica is not Ready right now (a failing probe, a crash), "" if all are.
    not_ready: str = ""
    terminating: int = 0  # leaving: draining requests in flight, then stopping


HookStateName = Literal["running", "succeeded", "failed"]


@dataclass(frozen=True, kw_only=True)
class HookResult:
    hook_id: str
    state: HookStateName
    message: str = ""


AnalysisPhase = Literal["Pending", "Running", "Successful", "Failed", "Error", "Inconclusive"]


@dataclass(frozen=True, kw_only=True)
class AnalysisResult:
    """Where an analysis run is; ``message`` names the failing metric and its value."""

    run_id: str
    phase: AnalysisPhase
    message: str = ""


WebhookStateName = Literal["waiting", "passed", "failed"]


@dataclass(frozen=True, kw_only=True)
class WebhookResult:
    """A webhook gate: still waiting (``message`` says why), passed, or failed."""

    call_id: str
    state: WebhookStateName
    message: str = ""


@dataclass(frozen=True, kw_only=True)
class Observations:
    revisions: Mapping[int, RevisionObservation] = field(default_factory=dict)
    hooks: Mapping[str, HookResult] = field(default_factory=dict)
    analysis: Mapping[str, AnalysisResult] = field(default_factory=dict)
    webhooks: Mapping[str, WebhookResult] = field(default_factory=dict)
    # Why the rollout's traffic cannot be served at all (its router cannot bind its port),
    # "" when it can. While set the engine plans no action; the deadline still runs.
    blocked: str = ""

    def of(self, revision: int | None) -> RevisionObservation:
        """The observation of ``revision``, or an all-zero one if the platform has none."""
        if revision is not None and revision in self.revisions:
            return self.revisions[revision]
        return RevisionObservation(revision=revision or 0, desired=0, ready=0, available=0)


@dataclass(frozen=True, kw_only=True)
class Context:
    rollout: models.Rollout
    # The revision number the current spec.template maps to (the controller assigns numbers).
    revision: int
    status: RolloutStatus
    observations: Observations
    now: float  # seconds, from the injected clock

    @property
    def spec(self) -> models.RolloutSpec:
        return self.rollout.spec
