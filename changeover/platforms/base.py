"""The Platform plug-in axis: where replicas of a revision run.

A platform keeps the replica counts it is asked for (``scale`` sets a desired count; a
supervisor converges on it in the background) and reports what actually runs (``observe``).
It never imports the engine or a router: the controller translates between them.

Implementations: ``platforms.local`` (supervised OS processes, the embedded default),
``platforms.kubernetes`` (ReplicaSets, driven by the operator) and ``testing.fake_platform`` (in
memory, for fast unit tests).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from changeover.endpoints import Endpoint
from changeover.spec import models


class ReplicaState(StrEnum):
    STARTING = "Starting"  # process started, readiness not yet passed
    READY = "Ready"  # passing readiness: may receive traffic
    NOT_READY = "NotReady"  # was ready, readiness now failing
    TERMINATING = "Terminating"  # out of the pool, draining, then stopped
    CRASHED = "Crashed"  # exited; will be restarted after a backoff


@dataclass(frozen=True, kw_only=True)
class Replica:
    id: str
    revision: int
    state: ReplicaState
    endpoint: Endpoint | None
    ready_since: float | None = None  # monotonic-ish wall clock (time.time()) when it became ready
    restarts: int = 0
    pid: int | None = None
    message: str = ""  # why it is not Ready (last exit, spawn error, probe failure); "" if fine
    # Crashes in a row since it was last steadily Ready (drives the backoff; a crash loop).
    failures: int = 0
    # The latest crash (cannot execute, exit code or signal, the output's last lines) and
    # when it happened; kept after the replica is Ready again, as Kubernetes' lastState.
    last_failure: str = ""
    last_failure_at: float | None = None
    probe_failures: int = 0  # readiness probes failed in a row (0 once one passes)


@dataclass(frozen=True, kw_only=True)
class RevisionState:
    revision: int
    desired: int
    replicas: tuple[Replica, ...] = ()
    message: str = ""  # the latest error of any replica (spawn failure, crash), "" if none

    @property
    def ready(self) -> tuple[Replica, ...]:
        return tuple(r for r in self.replicas if r.state is ReplicaState.READY)

    @property
    def restarts(self) -> int:
        """Restarts summed over the revision's current replicas."""
        return sum(r.restarts for r in self.replicas)


class HookState(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True, kw_only=True)
class HookStatus:
    hook_id: str
    state: HookState
    message: str = ""
    extra: dict[str, str] = field(default_factory=dict)


# Called with an endpoint that is about to be stopped and its grace in seconds: it must
# leave the router's pool at once, and the call returns when its in-flight requests and
# streams have finished or the grace has passed.
Drainer = Callable[[Endpoint, float], Awaitable[None]]


class Platform(Protocol):
    name: str
    capabilities: frozenset[str]

    async def start(self) -> None:
        """Begin supervising; re-adopt replicas recorded by an earlier run."""

    async def close(self, *, stop_replicas: bool = False) -> None:
        """Stop supervising. Replicas keep running unless ``stop_replicas``."""

    async def ensure_revision(
        self, *, rollout: str, revision: int, template: models.ProcessTemplate
    ) -> None:
        """Make ``revision`` known with this template (idempotent). Starts nothing."""

    async def scale(self, *, rollout: str, revision: int, replicas: int) -> None:
        """Set the desired replica count; returns at once, the supervisor converges."""

    async def delete_revision(self, *, rollout: str, revision: int) -> None:
        """Stop (draining) and forget every replica of ``revision``."""

    def observe(self, rollout: str) -> dict[int, RevisionState]:
        """Every known revision of ``rollout`` with its replicas, as of now."""

    async def start_hook(self, *, rollout: str, hook_id: str, hook: models.Hook) -> None:
        """Start ``hook`` once for ``hook_id``; a second call with the same id is a no-op."""

    def hook_status(self, *, rollout: str, hook_id: str) -> HookStatus | None:
        """The hook's state, or None if it was never started (by this process)."""

    async def delete_rollout(self, rollout: str) -> None:
        """Stop and forget everything of ``rollout``."""
