"""Helpers for Kubernetes tests: build Rollout manifests, read what the operator wrote,
and wait for it (``eventually``), the way Argo Rollouts' e2e suite does."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

from changeover.kube import client as kube
from changeover.kube import names
from changeover.platforms.kubernetes.events import list_events

JSON = dict[str, Any]
T = TypeVar("T")


def rollout(
    name: str,
    *,
    image: str = "app:v1",
    replicas: int = 4,
    strategy: JSON | None = None,
    traffic: JSON | None = None,
    **spec: Any,
) -> JSON:
    body: JSON = {
        "apiVersion": "changeover.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {"name": "app", "image": image, "ports": [{"containerPort": 8080}]}
                    ]
                },
            },
            "service": {"port": 80},
            "strategy": strategy or {"canary": {"steps": [{"setWeight": 25}, {"pause": {}}]}},
            **spec,
        },
    }
    if traffic is not None:
        body["spec"]["traffic"] = traffic
    return body


class Kube:
    def __init__(self, client: kube.KubeClient, namespace: str) -> None:
        self.client = client
        self.namespace = namespace

    async def create(self, res: kube.Resource, body: JSON) -> JSON:
        return await self.client.create(res, body, namespace=self.namespace)

    async def apply_rollout(self, body: JSON) -> JSON:
        return await self.client.apply_object(kube.ROLLOUTS, body, namespace=self.namespace)

    async def update(self, res: kube.Resource, name: str, change: Callable[[JSON], None]) -> JSON:
        """A user's edit (``kubectl edit``): read, change, write with the resourceVersion
        read; the operator writes status meanwhile, so a conflict is read again and retried
        (client-go's ``RetryOnConflict``)."""
        for _ in range(20):
            obj = copy.deepcopy(await self.client.get(res, name, namespace=self.namespace))
            change(obj)
            try:
                return await self.client.replace(res, obj, namespace=self.namespace)
            except kube.Conflict:
                await asyncio.sleep(0.05)
        raise AssertionError(f"{res.kind} {name} kept changing")

    async def set_image(self, name: str, image: str) -> JSON:
        def change(obj: JSON) -> None:
            obj["spec"]["template"]["spec"]["containers"][0]["image"] = image

        return await self.update(kube.ROLLOUTS, name, change)

    async def rollout(self, name: str) -> JSON:
        return await self.client.get(kube.ROLLOUTS, name, namespace=self.namespace)

    async def status(self, name: str) -> JSON:
        obj = await self.client.get_or_none(kube.ROLLOUTS, name, namespace=self.namespace)
        return (obj or {}).get("status") or {}

    async def replicasets(self, name: str) -> dict[int, JSON]:
        doc = await self.client.list(
            kube.REPLICASETS,
            namespace=self.namespace,
            label_selector=f"{names.ROLLOUT_LABEL}={name}",
        )
        out = {}
        for rs in doc["items"]:
            rev = names.revision_of(rs)
            if rev is not None:
                out[rev] = rs
        return out

    async def rs_counts(self, name: str) -> dict[int, tuple[int, int]]:
        """revision → (spec.replicas, readyReplicas)."""
        return {
            rev: (rs["spec"]["replicas"], (rs.get("status") or {}).get("readyReplicas") or 0)
            for rev, rs in (await self.replicasets(name)).items()
        }

    async def hash_of(self, name: str, revision: int) -> str:
        return str((await self.replicasets(name))[revision]["metadata"]["labels"][names.HASH_LABEL])

    async def selector(self, service: str) -> dict[str, str]:
        svc = await self.client.get(kube.SERVICES, service, namespace=self.namespace)
        return dict(svc["spec"].get("selector") or {})

    async def selects(self, service: str) -> str | None:
        """The pod-template hash a Service selects (None: every pod of the rollout)."""
        return (await self.selector(service)).get(names.HASH_LABEL)

    async def events(self, name: str) -> list[tuple[str, str]]:
        return [
            (e["reason"], e["message"])
            for e in await list_events(self.client, namespace=self.namespace, name=name)
        ]

    async def reasons(self, name: str) -> list[str]:
        return [r for r, _ in await self.events(name)]

    async def reasons_through(self, name: str, *wanted: str) -> list[str]:
        """The event reasons once ``wanted`` have all occurred in that order. The operator
        records events after the status write a test waits for, so they may lag it."""

        def in_order(reasons: list[str]) -> bool:
            it = iter(reasons)
            return all(w in it for w in wanted)  # ``in`` on an iterator consumes it

        return await eventually(
            lambda: self.reasons(name), in_order, what=f"events {' → '.join(wanted)}"
        )

    async def finish_job(self, name: str, condition: str = "Complete", reason: str = "") -> None:
        """What the Job controller writes when the Job's pod exits (the test bed's kubelet
        keeps pods running forever), retried while the Job controller writes its status."""
        for _ in range(20):
            job = await self.client.get(kube.JOBS, name, namespace=self.namespace)
            job.setdefault("status", {})["conditions"] = [
                {"type": condition, "status": "True", "reason": reason or "Test", "message": reason}
            ]
            try:
                await self.client.replace(kube.JOBS, job, namespace=self.namespace, sub="status")
                return
            except kube.Conflict:
                await asyncio.sleep(0.05)
        raise AssertionError(f"Job {name} kept changing")

    async def patch_status(self, name: str, change: Callable[[JSON], None]) -> None:
        """A user command the way the CLI does it: read, change status, write with the
        resourceVersion read (retried on conflict)."""
        for _ in range(20):
            obj = await self.rollout(name)
            obj.setdefault("status", {})
            change(obj["status"])
            try:
                await self.client.replace(
                    kube.ROLLOUTS, obj, namespace=self.namespace, sub="status"
                )
                return
            except kube.Conflict:
                await asyncio.sleep(0.05)
        raise AssertionError("status kept changing")


async def eventually(
    probe: Callable[[], Awaitable[T]],
    check: Callable[[T], bool] = bool,
    *,
    within: float = 45.0,
    what: str = "",
) -> T:
    """Poll ``probe`` until ``check`` holds; AssertionError with the last value if not."""
    deadline = time.monotonic() + within
    last: Any = None
    while True:
        last = await probe()
        if check(last):
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or 'condition'}; last: {last!r}")
        await asyncio.sleep(0.2)


async def phase_is(k: Kube, name: str, phase: str, **kw: Any) -> JSON:
    return await eventually(
        lambda: k.status(name), lambda s: s.get("phase") == phase, what=f"{name} {phase}", **kw
    )


async def healthy_on(k: Kube, name: str, revision: int, **kw: Any) -> JSON:
    """Healthy with ``revision`` stable (a bare Healthy may still be the previous one)."""
    return await eventually(
        lambda: k.status(name),
        lambda s: s.get("phase") == "Healthy" and s.get("stableRevision") == revision,
        what=f"{name} Healthy on revision {revision}",
        **kw,
    )


@contextlib.contextmanager
def json_server(answer: Callable[[str], JSON]) -> Iterator[str]:
    """An HTTP server on this machine's loopback answering each GET with ``answer(path)``
    as JSON (what a ``web`` metric provider reads); yields its base URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(answer(self.path)).encode()
            # The client may be gone (an operator stopped while it measured).
            with contextlib.suppress(OSError):
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
