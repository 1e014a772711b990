"""OFREP on Kubernetes: ``Flag`` custom resources, evaluated by the operator's endpoint.

    endpoint = FlagEndpoint(client, namespace="shop", token=token)
    server = await endpoint.start("0.0.0.0", 8016)   # POST /ofrep/v1/evaluate/flags[/{key}]
    ...
    await endpoint.close()

An informer keeps the Flags of ``namespace`` (every namespace when None); each change
recompiles that flag with the same model and evaluator as ``changeover serve`` (a Flag the
model refuses is left out and logged, and the rest keep answering). Every replica of the
operator serves it, leader or not: evaluation only reads. Answers need ``token`` (the
``CHANGEOVER_FLAGS_TOKEN`` of the operator's environment, from a Secret), never the
Kubernetes credentials. When two namespaces hold one key, the first namespace by name wins.

A Flag is served with its status laid over its spec (``flags.progress.served``): the
weight its rollout has walked to (``operator.flag_rollouts``, 0 before the first step)
and the off switch of an abort or a failed analysis. Status written for an earlier
generation is not laid over a changed spec: that rollout starts again from its first step.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import pydantic

from changeover import errors
from changeover.flags import evaluate, ofrep, progress
from changeover.http_server import dispatch, http
from changeover.kube import client as kube
from changeover.platforms.kubernetes import informer
from changeover.spec import flag as spec_flag

log = logging.getLogger(__name__)
JSON = dict[str, Any]


def current_status(obj: JSON) -> JSON:
    """The Flag's status if it was written for its current spec, else none."""
    status = obj.get("status") or {}
    generation = (obj.get("metadata") or {}).get("generation")
    return status if status.get("observedGeneration") == generation else {}


class FlagEndpoint:
    def __init__(self, client: kube.KubeClient, *, namespace: str | None, token: str) -> None:
        if not token:
            raise errors.PermanentBackendError("the OFREP endpoint needs a token")
        self._token = token
        self._compiled: dict[informer.Key, tuple[str, evaluate.CompiledFlag]] = {}
        self._by_key: dict[str, evaluate.CompiledFlag] = {}
        self.flags = informer.Informer(
            client,
            kube.FLAGS,
            namespace=namespace,
            on_change=self._changed,
            on_delete=self._deleted,
        )
        self._watch: asyncio.Task[None] | None = None
        self._server: asyncio.Server | None = None
        self._connections: set[http.HttpProtocol] = set()
        self.port = 0

    def _changed(self, obj: JSON) -> None:
        key = informer.key_of(obj)
        try:
            flag = spec_flag.Flag.model_validate(
                {
                    "apiVersion": obj.get("apiVersion"),
                    "kind": "Flag",
                    "metadata": {"name": key[1], "namespace": key[0] or "default"},
                    "spec": obj.get("spec"),
                }
            )
            served = spec_flag.FlagSpec.model_validate(
                progress.served(flag.spec.to_json_dict(), current_status(obj))
            )
        except pydantic.ValidationError as exc:
            log.warning("Flag %s/%s is not served: %s", key[0], key[1], exc.errors()[0]["msg"])
            self._compiled.pop(key, None)
        else:
            self._compiled[key] = (flag.key, evaluate.compile_flag(served))
        self._reindex()

    def _deleted(self, obj: JSON) -> None:
        self._compiled.pop(informer.key_of(obj), None)
        self._reindex()

    def _reindex(self) -> None:
        by_key: dict[str, evaluate.CompiledFlag] = {}
        for _, (key, compiled) in sorted(self._compiled.items()):
            by_key.setdefault(key, compiled)
        self._by_key = by_key  # one assignment: a request sees the old map or the new one

    async def _one(self, request: http.Request, params: dict[str, str]) -> http.Response:
        status, doc = ofrep.evaluate_flag(self._by_key, params["key"], request.body)
        return http.Response.json(status, doc)

    async def _all(self, request: http.Request, params: dict[str, str]) -> http.Response:
        status, body, headers = ofrep.evaluate_flags(
            self._by_key, request.body, request.headers.get("if-none-match")
        )
        return http.Response(status=status, body=body, headers=headers)

    async def start(self, host: str, port: int) -> int:
        """Watch the Flags and listen on ``host:port``; the port listened on."""
        self._watch = asyncio.create_task(self.flags.run(), name="changeover-flags-informer")
        r = dispatch.Router(token=self._token, open_reads=False, check_host=False)
        r.add("POST", ofrep.PATH + "/{key}", self._one, token=self._token)
        r.add("POST", ofrep.PATH, self._all, token=self._token)
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(
                lambda: http.HttpProtocol(r.dispatch, self._connections), host, port
            )
        except OSError as exc:
            raise errors.PermanentBackendError(
                f"cannot listen on {host}:{port} for OFREP: {exc.strerror or exc}"
            ) from exc
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for conn in list(self._connections):
                conn.close()
            await self._server.wait_closed()
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._watch
