"""``KubeBackend``: the rollout commands' ``Backend`` on a Kubernetes cluster.

It carries the commands out on Rollout resources through ``operator.service`` (and on
Flag resources, named ``flag/NAME``, through ``operator.flag_commands``), on one event
loop kept for the command's duration (one connection, not one per call). Exit codes stay
those of the local platform: the same ``errors`` tree comes back.
"""

from __future__ import annotations

import asyncio
from typing import Any, Self, TypeVar

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
        result: list[JSON] = self._do(self._svc.flags.list_flags())
        return result

    def status(self, name: str) -> JSON:
        flag = _flag(name)
        call = self._svc.flags.status(flag) if flag else self._svc.status(name)
        result: JSON = self._do(call)
        return result

    def events(self, name: str, *, limit: int = 50) -> list[JSON]:
        flag = _flag(name)
        svc = self._svc
        call = svc.flags.events(flag, limit=limit) if flag else svc.events(name, limit=limit)
        result: list[JSON] = self._do(call)
        return result

    def history(self, name: str) -> list[JSON]:
        flag = _flag(name)
        call = self._svc.flags.history(flag) if flag else self._svc.history(name)
        result: list[JSON] = self._do(call)
        return result

    def apply(self, documents: list[JSON], *, source: str) -> list[JSON]:
        result: list[JSON] = self._do(self._svc.apply(documents, source=source))
        return result

    def command(self, name: str, verb: str, body: JSON | None = None) -> JSON:
        body = body or {}
        flag = _flag(name)
        if flag:
            return self._flag_command(flag, verb, body)
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

    def _flag_command(self, name: str, verb: str, body: JSON) -> JSON:
        flags = self._svc.flags
        calls = {
            "promote": lambda: flags.promote(name, full=bool(body.get("full"))),
            "abort": lambda: flags.abort(name),
            "retry": lambda: flags.retry(name),
            "pause": lambda: flags.pause(name),
            "resume": lambda: flags.resume(name),
            "undo": lambda: flags.undo(name, to_revision=body.get("toRevision")),
        }
        result: JSON = self._do(calls[verb]())
        return result

    def delete(self, name: str) -> None:
        flag = _flag(name)
        self._do(self._svc.flags.delete(flag) if flag else self._svc.delete(name))


def _flag(name: str) -> str:
    """``flag/NAME`` names a Flag resource (as on the local server); "" for a rollout."""
    kind, slash, rest = name.partition("/")
    return rest if slash and kind == "flag" else ""
