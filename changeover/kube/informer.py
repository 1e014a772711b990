"""A list+watch cache of one resource in one namespace (client-go's informer, minimal):
what a reader that would ask the API server every second asks of memory instead.

    inf = Informer(client, REPLICASETS, namespace="prod", label_selector="app")
    inf.start()
    if inf.synced: objects = inf.items()     # else: read the API server directly
    await inf.stop()

It lists once, then watches from the list's resourceVersion, applying each event; a watch
that the server ends is resumed from the last resourceVersion seen; ``410 Gone`` (that
version is too old) lists again. While it is not synced (before the first list, after an
error, e.g. a 403 when the user may not watch) ``synced`` is False and readers go to the
API server. ``changes`` counts the events applied (a reader's cheap "did anything
change").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from changeover import errors
from changeover.kube import client as kube

log = logging.getLogger(__name__)
JSON = dict[str, Any]
RETRY_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0)  # after failures in a row


class Informer:
    def __init__(
        self,
        client: kube.KubeClient,
        res: kube.Resource,
        *,
        namespace: str,
        label_selector: str = "",
        field_selector: str = "",
    ) -> None:
        self.client = client
        self.res = res
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.synced = False
        self.changes = 0
        self.lists = 0  # how many times it listed (a 410 lists again)
        self._objects: dict[str, JSON] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        self.synced = False
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def get(self, name: str) -> JSON | None:
        return self._objects.get(name)

    def items(self) -> list[JSON]:
        return list(self._objects.values())

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                version = await self._list()
                while True:  # a watch ends after its timeout: resume where it was
                    version = await self._watch(version)
                    failures = 0  # (not after the list: a user may list but not watch)
            except kube.Gone:
                self.synced = False  # too old a version: list again at once
            except errors.ChangeoverError as exc:
                self.synced = False
                wait = RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)]
                failures += 1
                log.info(
                    "watch of %s in %s failed (%s); again in %.0f s",
                    self.res.plural,
                    self.namespace,
                    exc,
                    wait,
                )
                await asyncio.sleep(wait)

    async def _list(self) -> str:
        params = {}
        if self.label_selector:
            params["labelSelector"] = self.label_selector
        if self.field_selector:
            params["fieldSelector"] = self.field_selector
        doc = await self.client.request("GET", self.res.path(self.namespace), params=params)
        items = doc.get("items", [])
        for obj in items:  # (a list leaves them out of its items; a watch's events have them)
            obj.setdefault("apiVersion", self.res.api_version)
            obj.setdefault("kind", self.res.kind)
        self._objects = {o["metadata"]["name"]: o for o in items}
        self.lists += 1
        self.changes += 1
        self.synced = True
        return str(doc.get("metadata", {}).get("resourceVersion", ""))

    async def _watch(self, version: str) -> str:
        async for kind, obj in self.client.watch(
            self.res,
            namespace=self.namespace,
            label_selector=self.label_selector or None,
            field_selector=self.field_selector or None,
            resource_version=version,
        ):
            version = str(obj.get("metadata", {}).get("resourceVersion") or version)
            if kind == "BOOKMARK":
                continue
            name = obj["metadata"]["name"]
            if kind == "DELETED":
                self._objects.pop(name, None)
            else:
                self._objects[name] = obj
            self.changes += 1
        return version
