"""A watch-backed cache of one resource kind (client-go's informer, in miniature).

``Informer.run()`` lists, then watches from the list's resourceVersion, re-listing when the
watch expires (410) or breaks; every change calls ``on_change(obj)`` so the operator can
queue the owning rollout. Readers use ``get``/``items`` (no API request). Writers call
``remember(obj)`` with what the API answered, so the next reconcile already sees its own
write instead of repeating it while the watch event is in flight.

``synced`` is set once, at the first list (the operator waits for it); ``in_sync`` says
whether the cache is being kept now: False after a failure (a 403 when the user may list
but not watch, an API server away) until the next list, and once ``run()`` is cancelled.
The cluster dashboard (``operator.namespace_cache``) reads a cache only while it is in
sync, and the API server otherwise.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from changeover import aio, errors
from changeover.kube import client as kube

log = logging.getLogger(__name__)
JSON = dict[str, Any]
Key = tuple[str, str]  # (namespace, name)


def key_of(obj: JSON) -> Key:
    meta = obj.get("metadata", {})
    return (str(meta.get("namespace", "")), str(meta.get("name", "")))


def _rv(obj: JSON) -> int:
    try:
        return int(obj.get("metadata", {}).get("resourceVersion", "0"))
    except ValueError:
        return 0


class Informer:
    def __init__(
        self,
        client: kube.KubeClient,
        resource: kube.Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        on_change: Callable[[JSON], None] | None = None,
        on_delete: Callable[[JSON], None] | None = None,
        index: Callable[[JSON], str | None] | None = None,
    ) -> None:
        self.client = client
        self.resource = resource
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self._on_change = on_change
        self._on_delete = on_delete
        self._items: dict[Key, JSON] = {}
        # An optional secondary index (e.g. ReplicaSets by owning rollout), so a reader of
        # one rollout's objects does not scan every object of every rollout.
        self._index_of = index
        self._index: dict[str, dict[Key, JSON]] = {}
        self.synced = asyncio.Event()
        self.in_sync = False
        self._delivered = False  # the current watch gave an event (it was allowed)

    def get(self, namespace: str, name: str) -> JSON | None:
        return self._items.get((namespace, name))

    def items(self) -> list[JSON]:
        return list(self._items.values())

    def indexed(self, value: str) -> list[JSON]:
        """The objects whose index function gave ``value``."""
        return list(self._index.get(value, {}).values())

    def _put(self, key: Key, obj: JSON) -> None:
        self._drop(key)
        self._items[key] = obj
        if self._index_of is not None:
            value = self._index_of(obj)
            if value is not None:
                self._index.setdefault(value, {})[key] = obj

    def _drop(self, key: Key) -> None:
        old = self._items.pop(key, None)
        if old is not None and self._index_of is not None:
            value = self._index_of(old)
            if value is not None:
                bucket = self._index.get(value, {})
                bucket.pop(key, None)
                if not bucket:
                    self._index.pop(value, None)

    def remember(self, obj: JSON) -> None:
        """Store an object the API just returned, unless the cache already has newer."""
        key = key_of(obj)
        old = self._items.get(key)
        if old is None or _rv(obj) >= _rv(old):
            self._put(key, obj)

    def forget(self, namespace: str, name: str) -> None:
        self._drop((namespace, name))

    async def run(self) -> None:
        backoff = 0.5
        try:
            while True:
                try:
                    version = await self._list()
                    while True:
                        version = await self._watch(version)
                        backoff = 0.5
                except kube.Gone:
                    self.in_sync = False
                    continue
                except errors.ChangeoverError as exc:
                    self.in_sync = False
                    # Reset only once a watch was allowed: a user who may list but not
                    # watch (403) must not list again twice a second.
                    backoff = 0.5 if self._delivered else backoff
                    forbidden = isinstance(exc, errors.Forbidden)
                    log.log(
                        logging.INFO if forbidden else logging.WARNING,
                        "watch of %s failed: %s",
                        self.resource.plural,
                        exc,
                    )
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 60.0 if forbidden else 10.0)
        finally:
            self.in_sync = False

    async def _list(self) -> str:
        doc = await self.client.list(
            self.resource,
            namespace=self.namespace,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
        )
        self._delivered = False
        for obj in doc.get("items", []):  # (a list leaves them out of its items)
            obj.setdefault("apiVersion", self.resource.api_version)
            obj.setdefault("kind", self.resource.kind)
        fresh = {key_of(obj): obj for obj in doc.get("items", [])}
        gone = [obj for key, obj in self._items.items() if key not in fresh]
        for key in list(self._items):
            self._drop(key)
        for key, obj in fresh.items():
            self._put(key, obj)
        self.synced.set()
        self.in_sync = True
        for obj in gone:
            self._deleted(obj)
        for obj in fresh.values():
            self._changed(obj)
        return str(doc.get("metadata", {}).get("resourceVersion", ""))

    async def _watch(self, version: str) -> str:
        async for kind, obj in self.client.watch(
            self.resource,
            namespace=self.namespace,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
            resource_version=version,
        ):
            self._delivered = True
            version = str(obj.get("metadata", {}).get("resourceVersion", version))
            if kind == "BOOKMARK":
                continue
            obj.setdefault("apiVersion", self.resource.api_version)
            obj.setdefault("kind", self.resource.kind)
            if kind == "DELETED":
                self._drop(key_of(obj))
                self._deleted(obj)
            else:
                self.remember(obj)
                self._changed(obj)
        return version

    def _changed(self, obj: JSON) -> None:
        if self._on_change is not None:
            self._on_change(obj)

    def _deleted(self, obj: JSON) -> None:
        if self._on_delete is not None:
            self._on_delete(obj)
        elif self._on_change is not None:
            self._on_change(obj)


async def stop(tasks: list[asyncio.Task[None]]) -> None:
    await aio.cancel_and_wait_all(tasks)
