"""The operations users perform, as one Protocol: what the HTTP API and the CLI call.

``local_controller.local_service.LocalService`` implements it for the embedded platform and
``operator.service.KubeService`` for Kubernetes. Every method raises only from
``changeover.errors``: ``SpecError`` (bad input, nothing stored), ``NotFound``,
``StateError`` (e.g. promote when nothing is rolling out).

Reads may answer at once (the local platform keeps its state in memory) or as an awaitable
(Kubernetes reads the API server): ``Answer[T]``. The HTTP API ``settle``s every read, so
one API and one dashboard serve both platforms.

Status documents are the JSON contract of ``status -o json`` (docs/reference/cli.md)::

    {"name": "chat", "phase": "Paused", "message": "paused at step 2 of 4",
     "strategy": "canary", "revision": 2, "stableRevision": 1, "canaryRevision": 2,
     "currentStepIndex": 1, "totalSteps": 4, "weights": {"1": 80, "2": 20},
     "replicas": {"1": 3, "2": 1}, "analysis": {}, "endpoint": "http://127.0.0.1:8080",
     "previewEndpoint": null, "pause": {...} | null, "updatedAt": 1763900000.0}
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable
from typing import Any, Protocol, TypeAlias, TypeVar

JSON = dict[str, Any]
T = TypeVar("T")
Answer: TypeAlias = T | Awaitable[T]


async def settle(answer: Answer[T]) -> T:
    """A read's value, awaited if the service answers asynchronously."""
    if inspect.isawaitable(answer):
        return await answer
    return answer


class RolloutService(Protocol):
    async def apply(self, documents: list[JSON], *, source: str) -> list[JSON]:
        """Validate every document first (all errors at once, naming ``source``), then store.
        Returns one ``{"name", "revision", "action": "created"|"updated"|"unchanged"}`` each."""

    def list_rollouts(self) -> Answer[list[JSON]]:
        """The status document of every rollout, sorted by name."""

    def status(self, name: str) -> Answer[JSON]:
        """The status document of ``name``."""

    def events(self, name: str, *, limit: int = 50) -> Answer[list[JSON]]:
        """Newest last: ``{"time", "reason", "message", "revision"}``."""

    def history(self, name: str) -> Answer[list[JSON]]:
        """Kept revisions, oldest first: ``{"revision", "createdAt", "command", "stable",
        "current"}``."""

    def analysis(self, name: str) -> Answer[list[JSON]]:
        """Every kept analysis run, oldest first, with each metric's conditions, threshold
        and measurements (``AnalysisRun.detail``)."""

    def spec(self, name: str) -> Answer[JSON]:
        """The stored spec document (camelCase), as last applied."""

    async def promote(self, name: str, *, full: bool = False) -> JSON: ...

    async def abort(self, name: str) -> JSON: ...

    async def retry(self, name: str) -> JSON: ...

    async def pause(self, name: str) -> JSON: ...

    async def resume(self, name: str) -> JSON: ...

    async def undo(self, name: str, *, to_revision: int | None = None) -> JSON:
        """Roll forward to an earlier revision's template (the previous one by default)."""

    async def delete(self, name: str) -> None:
        """Stop every replica of ``name`` and forget it."""

    def traffic(self, name: str) -> JSON:
        """The router's cumulative numbers for ``name``: ``{"revisions": {"2": {"requests":
        {"2xx": n, ...}, "latency": histogram, "ttfb": histogram, ...}}}`` ({} if none;
        ``{"note": "..."}`` from a service that cannot see the requests)."""

    def metrics_text(self) -> str:
        """Prometheus text exposition of the router's per-revision metrics."""
