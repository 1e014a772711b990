"""Kubernetes Events about a Rollout, with Argo Rollouts' reasons (``RolloutStepCompleted``,
``RolloutPaused``, ``RolloutAborted``, ``RolloutCompleted``...), as ``kubectl describe``
shows them.

Names sort in the order the operator recorded them (``<rollout>.<nanoseconds in hex>``),
so readers (the CLI, the tests) can order events of one second. Recording is best effort:
an event that cannot be written is logged, never fails a reconcile.

``record`` only queues: a few writer tasks (``run``) post the events, each rollout's on one
writer so they stay in order, and a reconcile never waits on them (at 1,000 rollouts the
five or so events of a step would otherwise hold a worker for most of its time).
``flush`` waits for what is queued (a clean shutdown).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import socket
import time
import zlib
from typing import Any

from changeover import errors
from changeover.kube import client as kube
from changeover.kube import names

log = logging.getLogger(__name__)
JSON = dict[str, Any]
WARNING_REASONS = frozenset(
    {
        "RolloutAborted",
        "RolloutDegraded",
        "ProgressDeadlineExceeded",
        "HookFailed",
        "CheckFailed",
        "InvalidSpec",
        "ReconcileError",
    }
)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class EventRecorder:
    def __init__(
        self, client: kube.KubeClient, *, instance: str | None = None, writers: int = 4
    ) -> None:
        self.client = client
        self.instance = instance or os.environ.get("POD_NAME") or socket.gethostname()
        self._last = 0
        self._queues: list[asyncio.Queue[JSON]] = [asyncio.Queue() for _ in range(writers)]
        self._running = False

    async def run(self) -> None:
        """Post queued events until cancelled."""
        self._running = True
        try:
            await asyncio.gather(*(self._writer(q) for q in self._queues))
        finally:
            self._running = False

    async def _writer(self, queue: asyncio.Queue[JSON]) -> None:
        while True:
            body = await queue.get()
            try:
                await self._post(body)
            finally:
                queue.task_done()

    async def flush(self, seconds: float = 5.0) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                for queue in self._queues:
                    await queue.join()

    def _stamp(self) -> str:
        # Strictly increasing, even for two events within one clock tick.
        now = max(time.time_ns(), self._last + 1)
        self._last = now
        return f"{now:016x}"

    async def record(
        self, rollout: JSON, reason: str, message: str, *, warning: bool | None = None
    ) -> None:
        """Queue the event (post it now when no writer runs). Its type is Warning for the
        reasons in ``WARNING_REASONS``, unless ``warning`` says otherwise."""
        body = self._body(rollout, reason, message)
        if warning is not None:
            body["type"] = "Warning" if warning else "Normal"
        if not self._running:
            await self._post(body)
            return
        key = f"{rollout['metadata']['namespace']}/{rollout['metadata']['name']}"
        self._queues[zlib.crc32(key.encode()) % len(self._queues)].put_nowait(body)

    def _body(self, rollout: JSON, reason: str, message: str) -> JSON:
        meta = rollout["metadata"]
        ts = _now()
        body: JSON = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{self._stamp()}", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": rollout.get("apiVersion", names.API_VERSION),
                "kind": rollout.get("kind", "Rollout"),
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid", ""),
            },
            "reason": reason,
            "message": message[:1024],
            "type": "Warning" if reason in WARNING_REASONS else "Normal",
            "source": {"component": names.COMPONENT},
            "reportingComponent": names.COMPONENT,
            "reportingInstance": self.instance,
            "firstTimestamp": ts,
            "lastTimestamp": ts,
            "count": 1,
        }
        return body

    async def _post(self, body: JSON) -> None:
        namespace = body["metadata"]["namespace"]
        try:
            await self.client.create(kube.EVENTS, body, namespace=namespace)
        except errors.ChangeoverError as exc:
            log.warning(
                "event %s for %s not recorded: %s",
                body["reason"],
                body["involvedObject"]["name"],
                exc,
            )


async def list_events(
    client: kube.KubeClient, *, namespace: str, name: str, kind: str = "Rollout"
) -> list[JSON]:
    """The events of ``kind`` ``name`` (a Rollout by default), oldest first."""
    doc = await client.request(
        "GET",
        kube.EVENTS.path(namespace),
        params={"fieldSelector": f"involvedObject.name={name},involvedObject.kind={kind}"},
    )
    return events_of(doc.get("items", []), name=name, kind=kind)


def events_of(items: list[JSON], *, name: str, kind: str = "Rollout") -> list[JSON]:
    """Of ``items`` (Events), the operator's about ``kind`` ``name``, oldest first."""
    found = [
        e
        for e in items
        if e.get("source", {}).get("component") == names.COMPONENT
        and e.get("involvedObject", {}).get("name") == name
        and e.get("involvedObject", {}).get("kind") == kind
    ]
    return sorted(found, key=lambda e: e["metadata"]["name"])
