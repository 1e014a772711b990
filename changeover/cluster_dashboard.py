"""The dashboard of a cluster's rollouts, on the user's own machine: ``changeover dashboard
--platform kubernetes`` and ``kubectl changeover dashboard`` (as Argo Rollouts'
``kubectl argo rollouts dashboard``).

It serves the local dashboard's page and the same API routes (``api.server``) on
127.0.0.1 only, each under the namespace it acts in (``/api/v1/namespaces/{namespace}/
rollouts/{name}``; the page has a selector of the namespaces the user may list, starting
in the kubeconfig's or ``-n``'s), backed by one ``operator.service.KubeService`` per
namespace: every read and every action goes to the API server with the user's kubeconfig
credentials, so the cluster's RBAC decides what the user may see and do. What the live
pages show of a namespace is kept by watches (``operator.namespace_cache``, a few
namespaces at once) and compared once per ``TICK_SECONDS`` in memory; without the right
to watch, they read the API server once per tick (``api.event_streams`` shares each read
among the open pages).

Actions need the token ``run`` is given (the CLI generates one per start and prints it):
the page's sign-in turns it into an HttpOnly, SameSite=Strict session cookie with a CSRF
header, and requests from another origin are refused, as on ``changeover serve``
(docs: explanation/security).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from changeover import aio, errors
from changeover.api import server as api_server
from changeover.kube import client as kube
from changeover.operator.namespace_cache import WatchedNamespaces
from changeover.operator.service import KubeService

JSON = dict[str, Any]
HOST = "127.0.0.1"
TICK_SECONDS = 1.0  # each tick reads the API server: gentler than the local 0.5 s


class ClusterNamespaces:
    """The namespaces of the cluster dashboard (``api.namespace_scope.Namespaces``): one
    ``KubeService`` each over the one client, so every read and action carries the user's
    credentials and the cluster's RBAC decides, namespace by namespace."""

    def __init__(self, client: kube.KubeClient, start: str, *, everywhere: bool = False) -> None:
        """``everywhere`` (``--all-namespaces``): the list of every namespace's rollouts is
        offered too, and one cluster-wide cache serves every namespace."""
        self.client = client
        self._start = start
        self.everywhere = everywhere
        self.watched = WatchedNamespaces(client)

    @property
    def start(self) -> str:
        return self._start

    def service(self, namespace: str) -> KubeService:
        if self.everywhere:
            return KubeService(self.client, namespace=namespace, cache=self.watched.everywhere)
        return KubeService(
            self.client, namespace=namespace, cache=lambda: self.watched.of(namespace)
        )

    async def all_rollouts(self) -> list[JSON]:
        """Every namespace's rollouts' status documents, with their ``namespace``, sorted
        by namespace and name (``PermanentBackendError``/``Forbidden`` if the user may not
        list Rollouts cluster-wide)."""
        informer = self.watched.everywhere().rollouts
        if informer.in_sync:
            items = informer.items()
        else:
            items = (await self.client.list(kube.ROLLOUTS))["items"]
        items.sort(key=lambda o: (o["metadata"]["namespace"], o["metadata"]["name"]))
        spaces = [str(o["metadata"]["namespace"]) for o in items]
        docs = await asyncio.gather(
            *(self.service(ns).document(o) for ns, o in zip(spaces, items, strict=True))
        )
        return [{**doc, "namespace": ns} for doc, ns in zip(docs, spaces, strict=True)]

    async def names(self) -> tuple[list[str], bool]:
        try:
            doc = await self.client.list(kube.NAMESPACES)
        except errors.Forbidden:
            return [self._start], False  # RBAC: a user of one namespace keeps that one
        names = {str(o["metadata"]["name"]) for o in doc.get("items", [])}
        return sorted(names | {self._start}), True


@dataclass(frozen=True)
class Started:
    """What ``on_ready`` is told: where the dashboard is and what it shows."""

    url: str
    cluster: str
    namespace: str  # "namespace NS", or "all namespaces"


async def serve(
    *,
    kubeconfig: str | None,
    context: str | None,
    namespace: str | None,
    port: int,
    token: str,
    on_ready: Callable[[Started], None],
    all_namespaces: bool = False,
) -> None:
    """Serve until SIGINT/SIGTERM (the CLI runs it with ``aio.run_fast``). Raises a
    ``ChangeoverError`` naming the problem when the kubeconfig, the cluster (or the user's
    right to list its Rollouts) or the port fails."""
    client = await kube.KubeClient.connect(kubeconfig_path=kubeconfig, context=context)
    namespaces = ClusterNamespaces(client, namespace or client.namespace, everywhere=all_namespaces)
    try:
        service = namespaces.service(namespaces.start)
        where = "all namespaces" if all_namespaces else f"namespace {service.namespace}"
        try:  # fail at start, not in the page
            await (namespaces.all_rollouts() if all_namespaces else service.list_rollouts())
        except errors.ChangeoverError as exc:
            raise errors.PermanentBackendError(
                f"cannot list Rollouts in {where} on {client.conn.server}: {exc}"
            ) from exc
        stop = aio.stop_on_signals()
        api = await api_server.start_api(
            service,
            host=HOST,
            port=port,
            token=token,
            tick_seconds=TICK_SECONDS,
            namespaces=namespaces,
        )
        try:
            on_ready(Started(url=api.url, cluster=client.conn.server, namespace=where))
            await stop.wait()
        finally:
            await api.close()
    finally:
        await namespaces.watched.close()
        await client.close()
