"""``RecordingRouter``: a ``TrafficRouter`` that only remembers, for fast controller tests.

Every call is appended to ``calls`` as ``(method, args)`` and applied to plain state
(``weights``, ``header_routes``, ``sticky``, ``mirrors``, ``preview``, ``maintenance``,
``backends``, ``drained``), so a test reads like a transcript:

    >>> import asyncio
    >>> router = RecordingRouter("web")
    >>> asyncio.run(router.set_weight({1: 90, 2: 10}))
    >>> router.calls, router.weights
    ([('set_weight', ({1: 90, 2: 10},))], {1: 90, 2: 10})
    >>> asyncio.run(router.verify_weight({1: 90, 2: 10}))
    True

``fail(method, exc)`` makes the next call of ``method`` raise ``exc`` (after recording it),
to test how the controller handles a router that errors. ``capabilities`` can be narrowed
to test validation against a less capable router.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from changeover.endpoints import Endpoint
from changeover.spec import models
from changeover.traffic import base

CAPABILITIES = frozenset(base.Capability)


class RecordingRouter:
    name = "recording"

    def __init__(
        self,
        rollout: str = "",
        *,
        capabilities: frozenset[base.Capability] = CAPABILITIES,
        **_ignored: Any,  # the registry passes host/port/metrics like for the builtin router
    ) -> None:
        self.rollout = rollout
        self.capabilities = capabilities
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.weights: dict[int, int] = {}
        self.header_routes: dict[str, tuple[int, tuple[models.RouteMatch, ...]]] = {}
        self.sticky: tuple[int, models.UserKey, int] | None = None
        self.mirrors: dict[str, tuple[int, int, tuple[models.RouteMatch, ...]]] = {}
        self.preview: int | None = None
        self.maintenance: int | None = None  # Retry-After seconds while enabled
        self.backends: dict[int, list[Endpoint]] = {}
        self.drained: list[Endpoint] = []
        self.closed = False
        self._failures: dict[str, BaseException] = {}

    def fail(self, method: str, exc: BaseException) -> None:
        self._failures[method] = exc

    def methods(self) -> list[str]:
        """Just the method names called, in order."""
        return [name for name, _ in self.calls]

    def _record(self, method: str, *args: Any) -> None:
        self.calls.append((method, args))
        exc = self._failures.pop(method, None)
        if exc is not None:
            raise exc

    async def set_weight(self, weights: Mapping[int, int]) -> None:
        self._record("set_weight", dict(weights))
        self.weights = {r: w for r, w in weights.items() if w > 0}

    async def set_header_route(
        self, name: str, revision: int | None, match: Sequence[models.RouteMatch]
    ) -> None:
        self._record("set_header_route", name, revision, tuple(match))
        if revision is None or not match:
            self.header_routes.pop(name, None)
        else:
            self.header_routes[name] = (revision, tuple(match))

    async def set_sticky_split(
        self, revision: int | None, user_key: models.UserKey | None, weight: int
    ) -> None:
        self._record("set_sticky_split", revision, user_key, weight)
        self.sticky = None if revision is None or user_key is None else (revision, user_key, weight)

    async def set_mirror_route(
        self,
        name: str,
        revision: int | None,
        percentage: int,
        match: Sequence[models.RouteMatch],
        compare: models.MirrorCompare | None = None,
    ) -> None:
        if compare is None:
            self._record("set_mirror_route", name, revision, percentage, tuple(match))
        else:
            self._record("set_mirror_route", name, revision, percentage, tuple(match), compare)
        if revision is None or percentage <= 0:
            self.mirrors.pop(name, None)
        else:
            self.mirrors[name] = (revision, percentage, tuple(match))

    async def set_preview(self, revision: int | None) -> None:
        self._record("set_preview", revision)
        self.preview = revision

    async def set_maintenance(self, enabled: bool, retry_after_seconds: int) -> None:
        self._record("set_maintenance", enabled, retry_after_seconds)
        self.maintenance = retry_after_seconds if enabled else None

    async def remove_managed_routes(self) -> None:
        self._record("remove_managed_routes")
        self.header_routes.clear()
        self.mirrors.clear()
        self.sticky = None

    async def verify_weight(self, weights: Mapping[int, int]) -> bool:
        self._record("verify_weight", dict(weights))
        return self.weights == {r: w for r, w in weights.items() if w > 0}

    async def set_backends(self, revision: int, endpoints: Sequence[Endpoint]) -> None:
        self._record("set_backends", revision, list(endpoints))
        if endpoints:
            self.backends[revision] = list(endpoints)
        else:
            self.backends.pop(revision, None)

    async def drain(self, endpoint: Endpoint, grace_seconds: float) -> int:
        self._record("drain", endpoint, grace_seconds)
        self.drained.append(endpoint)
        for revision, eps in list(self.backends.items()):
            kept = [e for e in eps if e != endpoint]
            if kept:
                self.backends[revision] = kept
            else:
                del self.backends[revision]
        return 0

    async def close(self) -> None:
        self._record("close")
        self.closed = True


# Only a test that imports this module can name the router; users never see it.
base.register("recording", CAPABILITIES, RecordingRouter)
