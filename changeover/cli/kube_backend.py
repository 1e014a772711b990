"""``KubeBackend``: the rollout commands' ``Backend`` on a Kubernetes cluster.

It carries the commands out on Rollout resources through ``operator.service``, on one event
loop kept for the command's duration (one connection, not one per call). Exit codes stay
those of the local platform: the same ``errors`` tree comes back.
"""

from __future__ import annotations

import asyncio
from typing import Any, Self, TypeVar

from changeover import errors
from changeover.kube import client as kube
from changeover.operator.service import KubeService

JSON = dict[str, Any]
T = TypeVar("T")


class KubeBackend:
    """A ``cli.backend.Backend``: connects to the cluster when built; ``close`` (or the
    ``with`` block's end) closes the connection."""

    def __init__(
        self, kubeconfig: str | None, namespace: str | None, *, context: str | None = None
    ) -> None:
        self._runner = asyncio.Runner()
        self._kube = self._runner.run(
            kube.KubeClient.connect(kubeconfig_path=kubeconfig, context=context)
        )
        self._svc = KubeService(self._kube, namespace=namespace)
        self.url = self._kube.conn.server

    def _do(self, coro: Any) -> Any:
        return self._runner.run(coro)

    def close(self) -> None:
        try:
            self._runner.run(self._kube.close())
        finally:
            self._runner.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def list_rollouts(self) -> list[JSON]:
        result: list[JSON] = self._do(self._svc.list_rollouts())
        return result

    def list_flags(self) -> list[JSON]:
        raise errors.PermanentBackendError(
            "flags are served by the local server: `changeover get flags` without "
            "--platform kubernetes"
        )

    def status(self, name: str) -> JSON:
        result: JSON = self._do(self._svc.status(name))
        return result

    def events(self, name: str, *, limit: int = 50) -> list[JSON]:
        result: list[JSON] = self._do(self._svc.events(name, limit=limit))
        return result

    def history(self, name: str) -> list[JSON]:
        result: list[JSON] = self._do(self._svc.history(name))
        return result

    def apply(self, documents: list[JSON], *, source: str) -> list[JSON]:
        result: list[JSON] = self._do(self._svc.apply(documents, source=source))
        return result

    def command(self, name: str, verb: str, body: JSON | None = None) -> JSON:
        body = body or {}
        svc = self._svc
        calls = {
            "promote": lambda: svc.promote(name, full=bool(body.get("full"))),
            "abort": lambda: svc.abort(name),
            "retry": lambda: svc.retry(name),
            "pause": lambda: svc.pause(name),
            "resume": lambda: svc.resume(name),
            "undo": lambda: svc.undo(name, to_revision=body.get("toRevision")),
        }
        result: JSON = self._do(calls[verb]())
        return result

    def delete(self, name: str) -> None:
        self._do(self._svc.delete(name))
