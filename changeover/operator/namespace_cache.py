"""What the cluster dashboard reads of a namespace, kept by watches instead of read again
every second for every open page (``operator.service.KubeService(cache=...)``).

``WatchedNamespaces.of(namespace)`` gives that namespace's ``NamespaceCache``: five
informers (``kube.informer``): its Rollouts, their ReplicaSets, its Services, the
Events on Rollouts and its Flags; started when first asked for, for at most
``MAX_NAMESPACES`` namespaces at once (the least recently asked is stopped beyond that:
5 watches each, within the client's 32 watch connections). A reader uses an informer
only while it is synced, and otherwise reads the API server as before (also when RBAC
lets the user read but not watch).
"""

from __future__ import annotations

import asyncio

from changeover.kube import client as kube
from changeover.kube import names
from changeover.kube.informer import Informer

MAX_NAMESPACES = 4


class NamespaceCache:
    def __init__(self, client: kube.KubeClient, namespace: str) -> None:
        self.rollouts = Informer(client, kube.ROLLOUTS, namespace=namespace)
        self.replicasets = Informer(
            client, kube.REPLICASETS, namespace=namespace, label_selector=names.ROLLOUT_LABEL
        )
        self.services = Informer(client, kube.SERVICES, namespace=namespace)
        self.events = Informer(
            client, kube.EVENTS, namespace=namespace, field_selector="involvedObject.kind=Rollout"
        )
        self.flags = Informer(client, kube.FLAGS, namespace=namespace)
        self.informers = (self.rollouts, self.replicasets, self.services, self.events, self.flags)

    def start(self) -> None:
        for informer in self.informers:
            informer.start()

    async def stop(self) -> None:
        for informer in self.informers:
            await informer.stop()


class WatchedNamespaces:
    def __init__(self, client: kube.KubeClient, *, limit: int = MAX_NAMESPACES) -> None:
        self.client = client
        self.limit = limit
        self._caches: dict[str, NamespaceCache] = {}  # least recently asked first

    def of(self, namespace: str) -> NamespaceCache:
        """``namespace``'s cache, started if it was not (call it on the event loop)."""
        cache = self._caches.pop(namespace, None)
        if cache is None:
            while len(self._caches) >= self.limit:
                oldest = self._caches.pop(next(iter(self._caches)))
                for informer in oldest.informers:
                    _stop_soon(informer)
            cache = NamespaceCache(self.client, namespace)
            cache.start()
        self._caches[namespace] = cache
        return cache

    async def close(self) -> None:
        for cache in self._caches.values():
            await cache.stop()
        self._caches.clear()


def _stop_soon(informer: Informer) -> None:
    task = asyncio.ensure_future(informer.stop())
    _STOPPING.add(task)  # (the loop keeps only a weak reference to a task)
    task.add_done_callback(_STOPPING.discard)


_STOPPING: set[asyncio.Future[None]] = set()
