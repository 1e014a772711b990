"""An operator on an event loop of its own, in a thread: for tests whose own thread runs
something else (the CLI's loop, Playwright's sync API). ``call`` runs a coroutine there."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import k8s_testbed as testbed
from conftest import operator_kubeconfig

from changeover.kube import client as kube
from changeover.operator.runtime import Operator

T = TypeVar("T")


class Background:
    """An operator on its own event loop in a thread (the CLI runs its own loop)."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> Background:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(60)
        return self

    async def _start(self) -> None:
        self.client = await kube.KubeClient.connect(kubeconfig_path=testbed.kubeconfig())
        await self.client.create(
            kube.NAMESPACES,
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.namespace}},
        )
        self.op_client = await kube.KubeClient.connect(kubeconfig_path=operator_kubeconfig())
        self.op = Operator(self.op_client, namespace=self.namespace, leader_election=False)
        self.task = asyncio.create_task(self.op.run())
        await asyncio.wait_for(self.op.ready.wait(), 30)

    async def _stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.op_client.close()
        await self.client.delete(kube.NAMESPACES, self.namespace)
        await self.client.close()

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        """Run ``coro`` on the operator's loop (with ``self.client``, the admin's) and
        return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)
