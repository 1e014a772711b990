"""A fake kubelet for the scale benchmark, so pods become Ready at the pace of the control
plane rather than of one polling loop.

The testbed's ``fake-kubelet.py`` lists every pod of the cluster each second and patches
the new ones one after another, between node heartbeats: with 1,000 pods created at once
a round takes longer than the node grace period, the node controller marks the nodes
NotReady and their pods NotReady for good, and the benchmark then measures that loop.
This one registers its own nodes (labelled ``NODE_LABEL=<namespace>``; the benchmark's
pods select them, so the testbed's own nodes and kubelet are not involved), renews their
Leases from a task of its own, watches the benchmark namespace's pods and marks each one
bound to its nodes Running and Ready as soon as it is scheduled, a few at a time.

    kubelet = FakeKubelet(client, "bench-300-ab12", count=6)
    task = asyncio.create_task(kubelet.run()); ...; task.cancel(); await kubelet.remove()

Like the testbed's, it ignores probes and no container runs: only the API sees these pods.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
from typing import Any

from changeover import errors
from changeover.kube import client as kube
from changeover.platforms.kubernetes import informer

JSON = dict[str, Any]
NODE_LABEL = "changeover.dev/bench-node"
NODES = kube.Resource("v1", "nodes", "Node", namespaced=False)
LEASE_NS = "kube-node-lease"


def _now(micro: bool = False) -> str:
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ"
    return datetime.datetime.now(datetime.UTC).strftime(fmt)


class FakeKubelet:
    def __init__(
        self, client: kube.KubeClient, namespace: str, *, count: int, parallel: int = 8
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.nodes = {f"{namespace}-node-{i}": i for i in range(1, count + 1)}
        self._sem = asyncio.Semaphore(parallel)
        self._handled: set[tuple[str, bool]] = set()  # (pod uid, deleting) done or under way
        self._tasks: set[asyncio.Task[None]] = set()
        self.pods = informer.Informer(
            client, kube.PODS, namespace=namespace, on_change=self._pod_changed
        )

    async def run(self) -> None:
        """Register the nodes, then keep them alive and their pods Ready until cancelled."""
        for name, i in self.nodes.items():
            await self._register(name, i)
        await asyncio.gather(self._heartbeats(), self.pods.run())

    async def remove(self) -> None:
        """Delete the nodes and their Leases (later pods must not be scheduled there)."""
        for task in list(self._tasks):
            task.cancel()
        lease = kube.Resource("coordination.k8s.io/v1", "leases", "Lease")
        for name in self.nodes:
            await self.client.delete(NODES, name)
            await self.client.delete(lease, name, namespace=LEASE_NS)

    # --- nodes -----------------------------------------------------------------------

    async def _register(self, name: str, i: int) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": {
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    NODE_LABEL: self.namespace,
                },
            },
            "spec": {"podCIDR": f"10.{200 + i // 250}.{i % 250}.0/24"},
        }
        with contextlib.suppress(kube.Conflict):
            await self.client.create(NODES, body)
        await self._beat(name, i)

    async def _beat(self, name: str, i: int) -> None:
        ts = _now()
        conditions = [
            {
                "type": kind,
                "status": value,
                "reason": reason,
                "message": reason,
                "lastHeartbeatTime": ts,
                "lastTransitionTime": ts,
            }
            for kind, value, reason in (
                ("MemoryPressure", "False", "KubeletHasSufficientMemory"),
                ("DiskPressure", "False", "KubeletHasNoDiskPressure"),
                ("PIDPressure", "False", "KubeletHasSufficientPID"),
                ("Ready", "True", "KubeletReady"),
            )
        ]
        resources = {"cpu": "32", "memory": "256Gi", "pods": "110"}
        status = {
            "capacity": resources,
            "allocatable": resources,
            "conditions": conditions,
            "addresses": [{"type": "Hostname", "address": name}],
            "nodeInfo": {"kubeletVersion": "v1.20.2-fake", "kubeProxyVersion": "v1.20.2-fake"},
        }
        await self.client.patch(
            NODES, name, {"status": status}, sub="status", content_type=kube.STRATEGIC
        )
        lease = kube.Resource("coordination.k8s.io/v1", "leases", "Lease")
        spec = {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": _now(True)}
        try:
            await self.client.patch(lease, name, {"spec": spec}, namespace=LEASE_NS)
        except errors.NotFound:
            body: JSON = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease"}
            body |= {"metadata": {"name": name, "namespace": LEASE_NS}, "spec": spec}
            await self.client.create(lease, body, namespace=LEASE_NS)

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(10)
            for name, i in self.nodes.items():
                try:
                    await self._beat(name, i)
                except errors.ChangeoverError as exc:
                    print(f"[bench kubelet] heartbeat of {name}: {exc}", flush=True)

    # --- pods ------------------------------------------------------------------------

    def _pod_changed(self, pod: JSON) -> None:
        meta, spec = pod["metadata"], pod.get("spec") or {}
        deleting = bool(meta.get("deletionTimestamp"))
        job = (meta.get("uid", ""), deleting)
        if spec.get("nodeName") not in self.nodes or job in self._handled:
            return
        if not deleting and (pod.get("status") or {}).get("phase") == "Running":
            return
        self._handled.add(job)
        task = asyncio.create_task(self._settle(pod))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _settle(self, pod: JSON) -> None:
        meta = pod["metadata"]
        deleting = bool(meta.get("deletionTimestamp"))
        async with self._sem:
            try:
                if deleting:
                    await self._delete(meta["name"])
                else:
                    await self._ready(pod)
            except errors.ChangeoverError:
                # The next event for the pod tries again.
                self._handled.discard((meta.get("uid", ""), deleting))

    async def _delete(self, name: str) -> None:
        await self.client.request(
            "DELETE",
            kube.PODS.path(self.namespace, name),
            body={"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0},
        )

    async def _ready(self, pod: JSON) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        i = self.nodes[spec["nodeName"]]
        ts = _now()
        ip = f"10.{200 + i // 250}.{i % 250}.{hash(meta['uid']) % 250 + 2}"
        containers = [
            {
                "name": c["name"],
                "image": c["image"],
                "imageID": "fake://" + c["image"],
                "containerID": f"fake://{meta['uid']}-{c['name']}",
                "ready": True,
                "started": True,
                "restartCount": 0,
                "state": {"running": {"startedAt": ts}},
            }
            for c in spec["containers"]
        ]
        status = {
            "phase": "Running",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "startTime": ts,
            "conditions": [
                {"type": t, "status": "True", "lastTransitionTime": ts}
                for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")
            ],
            "containerStatuses": containers,
        }
        await self.client.patch(
            kube.PODS,
            meta["name"],
            {"status": status},
            namespace=self.namespace,
            sub="status",
            content_type=kube.STRATEGIC,
        )
