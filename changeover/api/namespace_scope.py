"""Namespaces for the API of the cluster dashboard: every route that names a rollout there
carries its namespace (``/api/v1/namespaces/{namespace}/rollouts/{name}``), checked as the
DNS-1123 label Kubernetes requires before anything is read with it.

The local platform has no namespaces: its API is built without a ``Namespaces`` and keeps
its routes (``/api/v1/rollouts/{name}``). On a cluster, ``Scopes.of(params)`` gives the
named namespace's service and its event streams, kept for the ``MAX_SCOPES`` namespaces
used last (each keeps its own read-sharing memo).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Protocol

from changeover import errors
from changeover.api import event_streams
from changeover.rollout_service import RolloutService

MAX_SCOPES = 64
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


class Namespaces(Protocol):
    """A cluster's namespaces, each with its own ``RolloutService``."""

    @property
    def start(self) -> str:
        """The namespace the dashboard was started in (kubeconfig's or ``-n``)."""

    def service(self, namespace: str) -> RolloutService:
        """The service acting in ``namespace`` (a valid DNS-1123 label)."""

    async def names(self) -> tuple[list[str], bool]:
        """The namespaces the user may see, sorted, and whether they could be listed
        (when listing is forbidden: ``[start]`` and False)."""

    @property
    def everywhere(self) -> bool:
        """Whether every namespace's rollouts are listed too (``--all-namespaces``)."""

    async def all_rollouts(self) -> list[dict[str, Any]]:
        """Every namespace's rollouts' status documents, each with its ``namespace``."""


LABEL_RULE = (
    "a namespace name (a DNS-1123 label: at most 63 characters of a-z, 0-9 and '-', "
    "starting and ending with a letter or digit)"
)


def is_label(namespace: str) -> bool:
    return len(namespace) <= 63 and _LABEL.fullmatch(namespace) is not None


def checked(namespace: str) -> str:
    """``namespace`` if it is a DNS-1123 label (what Kubernetes accepts), else a
    ``SpecError`` (400) naming what was expected."""
    if is_label(namespace):
        return namespace
    shown = namespace[:70] + ("…" if len(namespace) > 70 else "")
    raise errors.SpecError.single(
        file="<url>", path="namespace", message=f"expected {LABEL_RULE}, got {shown!r}"
    )


def streams_for(service: RolloutService, *, tick: float) -> event_streams.Streams:
    """The event streams of ``service``, with its flags' list when it keeps flags."""
    streams = event_streams.Streams(service, tick=tick)
    flags = getattr(service, "flags", None)
    if flags is not None:  # either platform's flags, listed on the live page
        streams.add_list("flags", flags.list_flags)
    return streams


class Scopes:
    """The service and streams a request's path names: the local one without a
    ``{namespace}``, or that namespace's on a cluster."""

    def __init__(
        self, service: RolloutService, namespaces: Namespaces | None, *, tick: float
    ) -> None:
        self.service = service
        self.namespaces = namespaces
        self.tick = tick
        self.streams = streams_for(service, tick=tick)
        # /api/v1/stream on a cluster: the namespaces (each namespace streams its lists)
        self.namespace_stream = event_streams.Streams(service, tick=tick, rollouts=False)
        if namespaces is not None:
            self.namespace_stream.add_document("namespaces", self.listing)
            if namespaces.everywhere:  # the page's "all namespaces" list
                self.namespace_stream.add_list("rollouts", namespaces.all_rollouts)
        self._known: dict[str, tuple[RolloutService, event_streams.Streams]] = {}

    def of(self, params: Mapping[str, str]) -> tuple[RolloutService, event_streams.Streams]:
        given = params.get("namespace")
        if given is None or self.namespaces is None:
            return self.service, self.streams
        namespace = checked(given)
        found = self._known.pop(namespace, None)  # re-inserted: the dict is oldest first
        if found is None:
            if len(self._known) >= MAX_SCOPES:
                del self._known[next(iter(self._known))]
            service = self.namespaces.service(namespace)
            found = (service, streams_for(service, tick=self.tick))
        self._known[namespace] = found
        return found

    async def listing(self) -> dict[str, Any]:
        """The ``GET /api/v1/namespaces`` document."""
        assert self.namespaces is not None
        names, listed = await self.namespaces.names()
        return {
            "namespaces": names,
            "start": self.namespaces.start,
            "listed": listed,
            "all": self.namespaces.everywhere,
        }
