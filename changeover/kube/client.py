"""A small asyncio client for the Kubernetes REST API, on httpx.

Why not the official ``kubernetes`` client, ``kubernetes_asyncio`` or kopf: the operator
needs a dozen verbs on a handful of resources, most of them custom resources that a typed
client only hands back as dicts anyway; it must be asyncio (one event loop runs the
operator, its watches and leader election), and the scale benchmark must count every API
request. httpx is already a dependency; this module is the whole transport (about 250
lines), and the API's own error messages come back unchanged in ``errors`` exceptions.

    client = await KubeClient.connect(kubeconfig=None)         # KUBECONFIG / in-cluster
    rs = await client.get(REPLICASETS, "web-7d9f", namespace="prod")
    async for kind, obj in client.watch(ROLLOUTS, namespace=None): ...

Errors: 404 → ``NotFound``; 409 → ``Conflict`` (a stale resourceVersion or an existing
name: re-read and try again); 403 → ``errors.Forbidden``; 400/422 → ``PermanentBackendError``
with the API's message; connection failures, 429 and 5xx → ``TemporaryBackendError``.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from changeover import errors
from changeover.kube import kubeconfig

JSON = dict[str, Any]
POOL_SIZE = 8  # connections per pool (see KubeClient.__init__)
WATCHES = 32  # watches at once (the operator runs five or six)
MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"


class Conflict(errors.TemporaryBackendError):
    """409: the object changed since it was read, or the name is taken."""


class Gone(errors.TemporaryBackendError):
    """410: a watch's resourceVersion is too old; list again."""


@dataclass(frozen=True)
class Resource:
    """One API resource: ``group_version`` ("v1", "apps/v1"), plural, kind, scope."""

    group_version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return self.group_version

    def path(self, namespace: str | None = None, name: str | None = None, sub: str = "") -> str:
        root = "/api/v1" if self.group_version == "v1" else f"/apis/{self.group_version}"
        if self.namespaced and namespace:
            root += f"/namespaces/{quote(namespace, safe='')}"
        root += f"/{self.plural}"
        if name:
            root += f"/{quote(name, safe='')}"
        if sub:
            root += f"/{sub}"
        return root


ROLLOUTS = Resource("changeover.dev/v1alpha1", "rollouts", "Rollout")
ANALYSIS_TEMPLATES = Resource("changeover.dev/v1alpha1", "analysistemplates", "AnalysisTemplate")
FLAGS = Resource("changeover.dev/v1alpha1", "flags", "Flag")
REPLICASETS = Resource("apps/v1", "replicasets", "ReplicaSet")
SERVICES = Resource("v1", "services", "Service")
PODS = Resource("v1", "pods", "Pod")
SECRETS = Resource("v1", "secrets", "Secret")
EVENTS = Resource("v1", "events", "Event")
NAMESPACES = Resource("v1", "namespaces", "Namespace", namespaced=False)
JOBS = Resource("batch/v1", "jobs", "Job")
LEASES = Resource("coordination.k8s.io/v1", "leases", "Lease")
CRDS = Resource(
    "apiextensions.k8s.io/v1", "customresourcedefinitions", "CustomResourceDefinition", False
)
INGRESSES = Resource("networking.k8s.io/v1", "ingresses", "Ingress")
VIRTUAL_SERVICES = Resource("networking.istio.io/v1beta1", "virtualservices", "VirtualService")
DESTINATION_RULES = Resource("networking.istio.io/v1beta1", "destinationrules", "DestinationRule")
HTTP_ROUTES = Resource("gateway.networking.k8s.io/v1beta1", "httproutes", "HTTPRoute")
TRAFFIC_SPLITS = Resource("split.smi-spec.io/v1alpha2", "trafficsplits", "TrafficSplit")
ARGO_ROLLOUTS = Resource("argoproj.io/v1alpha1", "rollouts", "Rollout")
ARGO_ANALYSIS_TEMPLATES = Resource("argoproj.io/v1alpha1", "analysistemplates", "AnalysisTemplate")
ARGO_CLUSTER_ANALYSIS_TEMPLATES = Resource(
    "argoproj.io/v1alpha1", "clusteranalysistemplates", "ClusterAnalysisTemplate", namespaced=False
)


class KubeClient:
    def __init__(
        self, conn: kubeconfig.Connection, *, timeout: float = 30.0, connections: int = 64
    ) -> None:
        self.conn = conn
        self.namespace = conn.namespace
        self.requests: Counter[str] = Counter()  # "PATCH replicasets" → count (bench)
        self.seconds: defaultdict[str, float] = defaultdict(float)  # the same → reply seconds

        def pool(size: int) -> httpx.AsyncClient:
            return httpx.AsyncClient(
                base_url=conn.server,
                verify=conn.ssl_context,
                headers={"Accept": "application/json", **conn.headers},
                timeout=httpx.Timeout(timeout, connect=5.0),
                # Every connection kept: with 20 kept for 32 workers, the rest were closed
                # after each reply and the next request paid a new TLS handshake (a fifth
                # of the operator's CPU at 1,000 rollouts, and the API server's too).
                limits=httpx.Limits(
                    max_connections=size, max_keepalive_connections=size, keepalive_expiry=60.0
                ),
                trust_env=False,
            )

        # Requests go to several small pools rather than one big one: httpcore looks at
        # every connection of a pool (a select() on each idle one) for every request and
        # reply, which with 80 connections in one pool was two thirds of the operator's
        # CPU. Watches, which hold a connection for minutes, have a pool of their own.
        count = max(1, -(-connections // POOL_SIZE))
        self._pools = [pool(-(-connections // count)) for _ in range(count)]
        self._busy = [0] * count
        self._watch_http = pool(WATCHES)

    @classmethod
    async def connect(
        cls,
        *,
        kubeconfig_path: str | os.PathLike[str] | None = None,
        context: str | None = None,
        connections: int = 64,
    ) -> KubeClient:
        """``connections``: at most that many requests at once, each on a connection kept
        open (watches have connections of their own); the operator gives its workers plus
        its event writers and a few."""
        conn = await asyncio.to_thread(kubeconfig.load, kubeconfig_path, context=context)
        return cls(conn, connections=connections)

    async def close(self) -> None:
        for http in (*self._pools, self._watch_http):
            await http.aclose()

    async def __aenter__(self) -> KubeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- transport ---------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> JSON:
        what = f"{method} {_resource_of(path)}"
        self.requests[what] += 1
        started = time.perf_counter()
        content = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": content_type} if content is not None else None
        # The least busy pool (a handful to compare).
        index = min(range(len(self._pools)), key=self._busy.__getitem__)
        self._busy[index] += 1
        try:
            for attempt in (1, 2):
                try:
                    response = await self._pools[index].request(
                        method, path, content=content, params=params, headers=headers
                    )
                except httpx.HTTPError as exc:
                    raise errors.TemporaryBackendError(
                        f"Kubernetes API {self.conn.server} unreachable: "
                        f"{type(exc).__name__}: {exc}"
                    ) from exc
                if response.status_code == 401 and attempt == 1 and self.conn.refresh():
                    for http in (*self._pools, self._watch_http):
                        http.headers.update(self.conn.headers)
                    continue
                break
        finally:
            self._busy[index] -= 1
        self.seconds[what] += time.perf_counter() - started
        if response.status_code < 300:
            data: JSON = response.json() if response.content else {}
            return data
        raise _error(method, path, response.status_code, response.text)

    # --- verbs -------------------------------------------------------------------------

    async def get(self, res: Resource, name: str, *, namespace: str | None = None) -> JSON:
        return await self.request("GET", res.path(namespace, name))

    async def get_or_none(
        self, res: Resource, name: str, *, namespace: str | None = None
    ) -> JSON | None:
        try:
            return await self.get(res, name, namespace=namespace)
        except errors.NotFound:
            return None

    async def list(
        self,
        res: Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> JSON:
        params = {"labelSelector": label_selector} if label_selector else {}
        if field_selector:
            params["fieldSelector"] = field_selector
        return await self.request("GET", res.path(namespace), params=params or None)

    async def create(self, res: Resource, body: JSON, *, namespace: str | None = None) -> JSON:
        return await self.request("POST", res.path(namespace), body=body)

    async def replace(
        self, res: Resource, body: JSON, *, namespace: str | None = None, sub: str = ""
    ) -> JSON:
        name = body["metadata"]["name"]
        return await self.request("PUT", res.path(namespace, name, sub), body=body)

    async def replace_status(self, res: Resource, obj: JSON, status: JSON) -> JSON:
        """Write ``status`` as ``obj``'s status subresource, with the resourceVersion ``obj``
        was read at (``Conflict`` if it changed since); the object written, its apiVersion
        and kind filled in (as a watch would give it)."""
        meta = obj["metadata"]
        update = {
            "apiVersion": res.api_version,
            "kind": res.kind,
            "metadata": {
                "name": meta["name"],
                "namespace": meta["namespace"],
                "resourceVersion": meta["resourceVersion"],
            },
            "spec": obj.get("spec") or {},
            "status": status,
        }
        written = await self.replace(res, update, namespace=meta["namespace"], sub="status")
        written.setdefault("apiVersion", res.api_version)
        written.setdefault("kind", res.kind)
        return written

    async def patch(
        self,
        res: Resource,
        name: str,
        body: JSON,
        *,
        namespace: str | None = None,
        sub: str = "",
        content_type: str = MERGE,
    ) -> JSON:
        path = res.path(namespace, name, sub)
        return await self.request("PATCH", path, body=body, content_type=content_type)

    async def delete(
        self, res: Resource, name: str, *, namespace: str | None = None, propagation: str = ""
    ) -> None:
        body = {"propagationPolicy": propagation} if propagation else None
        try:
            await self.request("DELETE", res.path(namespace, name), body=body)
        except errors.NotFound:
            return

    async def apply_object(
        self, res: Resource, body: JSON, *, namespace: str | None = None
    ) -> JSON:
        """Create ``body``, or replace the existing object (keeping its resourceVersion)."""
        name = body["metadata"]["name"]
        existing = await self.get_or_none(res, name, namespace=namespace)
        if existing is None:
            return await self.create(res, body, namespace=namespace)
        merged = {**body, "metadata": {**body["metadata"]}}
        merged["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
        return await self.replace(res, merged, namespace=namespace)

    # --- watch -------------------------------------------------------------------------

    async def watch(
        self,
        res: Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        resource_version: str = "",
        timeout_seconds: int = 300,
    ) -> AsyncIterator[tuple[str, JSON]]:
        """Events from one watch request: ("ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK",
        object). Ends when the server closes the stream; raises ``Gone`` on 410."""
        params = {
            "watch": "1",
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
        }
        if resource_version:
            params["resourceVersion"] = resource_version
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        self.requests[f"WATCH {res.plural}"] += 1
        timeout = httpx.Timeout(timeout_seconds + 30.0, connect=5.0)
        try:
            async with self._watch_http.stream(
                "GET", res.path(namespace), params=params, timeout=timeout
            ) as response:
                if response.status_code >= 300:
                    text = (await response.aread()).decode(errors="replace")
                    raise _error("WATCH", res.path(namespace), response.status_code, text)
                async for line in response.aiter_lines():
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    kind, obj = event.get("type", ""), event.get("object", {})
                    if kind == "ERROR":
                        code = obj.get("code", 500)
                        raise _error("WATCH", res.path(namespace), code, json.dumps(obj))
                    yield kind, obj
        except httpx.HTTPError as exc:
            raise errors.TemporaryBackendError(f"watch of {res.plural} broke: {exc}") from exc


def _resource_of(path: str) -> str:
    """'/apis/apps/v1/namespaces/x/replicasets/y/status' → 'replicasets/status'."""
    parts = path.split("?")[0].strip("/").split("/")
    if "namespaces" in parts:
        i = parts.index("namespaces")
        parts = parts[i + 2 :] if len(parts) > i + 2 else ["namespaces"]
    else:
        parts = parts[2:] if parts[0] == "api" else parts[3:]
    if len(parts) >= 3:
        return f"{parts[0]}/{parts[2]}"
    return parts[0] if parts else path


def _error(method: str, path: str, code: int, text: str) -> errors.ChangeoverError:
    try:
        message = str(json.loads(text).get("message") or text)
    except ValueError:
        message = text.strip() or f"HTTP {code}"
    what = f"{method} {path}: {message}"
    if code == 404:
        return errors.NotFound(what)
    if code == 409:
        return Conflict(what)
    if code == 410:
        return Gone(what)
    if code == 429 or code >= 500:
        return errors.TemporaryBackendError(what)
    if code == 403:
        return errors.Forbidden(what)
    return errors.PermanentBackendError(what)
