"""What the cluster dashboard reads of a namespace, kept by watches instead of read again
every second for every open page (``operator.service.KubeService(cache=...)``).

``WatchedNamespaces.of(namespace)`` gives that namespace's ``NamespaceCache``: five
informers (``platforms.kubernetes.informer``): its Rollouts, their ReplicaSets, its Services, the
Events on Rollouts and its Flags; started when first asked for, for at most
``MAX_NAMESPACES`` namespaces at once (5 watches each, within the client's 32 watch
connections); a namespace no page asked about for ``IDLE_SECONDS`` gives its place (and
stops its watches) when another needs it. A reader uses an informer only while it is
synced, and otherwise reads the API server as before (also when RBAC lets the user read
but not watch, or when pages are open on more namespaces than that).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from changeover.kube import client as kube
from changeover.kube import names
from changeover.platforms.kubernetes import informer
from changeover.platforms.kubernetes.informer import Informer

MAX_NAMESPACES = 4
IDLE_SECONDS = 30.0


class NamespaceCache:
    """The informers of ``namespace``, or (None) of every namespace at once."""

    def __init__(self, client: kube.KubeClient, namespace: str | None) -> None:
        self.namespace = namespace
        self.rollouts = Informer(client, kube.ROLLOUTS, namespace=namespace)
        self.replicasets = Informer(
            client,
            kube.REPLICASETS,
            namespace=namespace,
            label_selector=names.ROLLOUT_LABEL,
            index=_rollout_of,
        )
        self.services = Informer(client, kube.SERVICES, namespace=namespace)
        self.events = Informer(
            client, kube.EVENTS, namespace=namespace, field_selector="involvedObject.kind=Rollout"
        )
        self.flags = Informer(client, kube.FLAGS, namespace=namespace)
        self.informers = (self.rollouts, self.replicasets, self.services, self.events, self.flags)
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(i.run()) for i in self.informers]

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        await informer.stop(tasks)


class WatchedNamespaces:
    def __init__(
        self,
        client: kube.KubeClient,
        *,
        limit: int = MAX_NAMESPACES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.limit = limit
        self._clock = clock
        self._caches: dict[str, tuple[NamespaceCache, float]] = {}  # → last asked
        self._everywhere: NamespaceCache | None = None

    def of(self, namespace: str) -> NamespaceCache | None:
        """``namespace``'s cache, started if it was not (call it on the event loop); None
        while ``limit`` others are in use (asked within ``IDLE_SECONDS``): pages open on
        more namespaces than that read the API server rather than take turns restarting
        each other's watches."""
        now = self._clock()
        found = self._caches.get(namespace)
        if found is None:
            for name, (cache, asked) in list(self._caches.items()):
                if now - asked > IDLE_SECONDS:
                    del self._caches[name]
                    _stop_soon(cache)
            if len(self._caches) >= self.limit:
                return None
            found = (NamespaceCache(self.client, namespace), now)
            found[0].start()
        self._caches[namespace] = (found[0], now)
        return found[0]

    def everywhere(self) -> NamespaceCache:
        """One cache of every namespace (``--all-namespaces``: 5 watches in all, when the
        user may watch cluster-wide), started when first asked for."""
        if self._everywhere is None:
            self._everywhere = NamespaceCache(self.client, None)
            self._everywhere.start()
        return self._everywhere

    async def close(self) -> None:
        for cache, _ in self._caches.values():
            await cache.stop()
        self._caches.clear()
        if self._everywhere is not None:
            await self._everywhere.stop()


def _rollout_of(rs: dict[str, Any]) -> str | None:
    """The name of the rollout a ReplicaSet belongs to (``replicasets.indexed(name)``)."""
    label = rs["metadata"].get("labels", {}).get(names.ROLLOUT_LABEL)
    return str(label) if label is not None else None


def _stop_soon(cache: NamespaceCache) -> None:
    task = asyncio.ensure_future(cache.stop())
    _STOPPING.add(task)  # (the loop keeps only a weak reference to a task)
    task.add_done_callback(_STOPPING.discard)


_STOPPING: set[asyncio.Future[None]] = set()
