"""Kubernetes Events about a Rollout, with Argo Rollouts' reasons (``RolloutStepCompleted``,
``RolloutPaused``, ``RolloutAborted``, ``RolloutCompleted``...), as ``kubectl describe``
shows them.

Names sort in the order the operator recorded them (``<rollout>.<nanoseconds in hex>``),
so readers (the CLI, the tests) can order events of one second. Recording is best effort:
an event that cannot be written is logged, never fails a reconcile.
"""

from __future__ import annotations

import datetime
import logging
import os
import socket
import time
from typing import Any

from changeover import errors
from changeover.platforms.kubernetes import client as kube
from changeover.platforms.kubernetes import names

log = logging.getLogger(__name__)
JSON = dict[str, Any]
WARNING_REASONS = frozenset(
    {
        "RolloutAborted",
        "RolloutDegraded",
        "ProgressDeadlineExceeded",
        "HookFailed",
        "InvalidSpec",
        "ReconcileError",
    }
)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class EventRecorder:
    def __init__(self, client: kube.KubeClient, *, instance: str | None = None) -> None:
        self.client = client
        self.instance = instance or os.environ.get("POD_NAME") or socket.gethostname()
        self._last = 0

    def _stamp(self) -> str:
        # Strictly increasing, even for two events within one clock tick.
        now = max(time.time_ns(), self._last + 1)
        self._last = now
        return f"{now:016x}"

    async def record(self, rollout: JSON, reason: str, message: str) -> None:
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
        try:
            await self.client.create(kube.EVENTS, body, namespace=meta["namespace"])
        except errors.ChangeoverError as exc:
            log.warning("event %s for %s not recorded: %s", reason, meta["name"], exc)


async def list_events(client: kube.KubeClient, *, namespace: str, name: str) -> list[JSON]:
    """The events of Rollout ``name``, oldest first."""
    doc = await client.request(
        "GET",
        kube.EVENTS.path(namespace),
        params={"fieldSelector": f"involvedObject.name={name},involvedObject.kind=Rollout"},
    )
    items = [
        e for e in doc.get("items", []) if e.get("source", {}).get("component") == names.COMPONENT
    ]
    return sorted(items, key=lambda e: e["metadata"]["name"])
