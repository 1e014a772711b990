"""Leader election on a ``coordination.k8s.io/v1`` Lease, so two operator replicas never
both act (client-go's leaderelection, same fields and timing defaults).

    elector = LeaderElector(client, namespace="changeover-system", identity="pod-a")
    await elector.acquire()          # returns once we hold the lease
    task = asyncio.create_task(elector.keep())   # renews; returns if the lease is lost

A lease is free when its holder is empty or has not renewed for ``leaseDurationSeconds``,
measured on *our* clock from when we last saw ``renewTime`` change (clocks of two
machines need not agree). Renewal uses the Lease's resourceVersion, so of two candidates
only one wins an update. ``release`` empties the holder on a clean shutdown so the other
replica takes over at once instead of after the lease duration.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from typing import Any

from changeover import errors
from changeover.kube import client as kube

log = logging.getLogger(__name__)
JSON = dict[str, Any]


def _micro_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(
        self,
        client: kube.KubeClient,
        *,
        namespace: str,
        identity: str,
        name: str = "changeover-operator",
        lease_seconds: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.identity = identity
        self.name = name
        self.lease_seconds = lease_seconds
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self._seen: tuple[str, str] | None = None  # (holder, renewTime) last observed
        self._seen_at = 0.0
        self.is_leader = False

    def _spec(self, lease: JSON | None) -> JSON:
        now = _micro_now()
        old = (lease or {}).get("spec") or {}
        taking_over = old.get("holderIdentity") != self.identity
        transitions = int(old.get("leaseTransitions") or 0) + (1 if taking_over and lease else 0)
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self.lease_seconds),
            "acquireTime": now if taking_over else old.get("acquireTime", now),
            "renewTime": now,
            "leaseTransitions": transitions,
        }

    async def try_acquire(self) -> bool:
        """One attempt to take or renew the lease; True if we hold it afterwards."""
        lease = await self.client.get_or_none(kube.LEASES, self.name, namespace=self.namespace)
        if lease is None:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(None),
            }
            try:
                await self.client.create(kube.LEASES, body, namespace=self.namespace)
            except kube.Conflict:
                return False
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        seen = (holder, str(spec.get("renewTime")))
        if seen != self._seen:
            self._seen, self._seen_at = seen, time.monotonic()
        duration = float(spec.get("leaseDurationSeconds") or self.lease_seconds)
        expired = time.monotonic() - self._seen_at > duration
        if holder and holder != self.identity and not expired:
            return False
        lease["spec"] = self._spec(lease)
        try:
            await self.client.replace(kube.LEASES, lease, namespace=self.namespace)
        except kube.Conflict:
            return False
        return True

    async def acquire(self) -> None:
        while True:
            try:
                if await self.try_acquire():
                    self.is_leader = True
                    log.info("%s leads (lease %s/%s)", self.identity, self.namespace, self.name)
                    return
            except errors.BackendError as exc:
                log.warning("leader election: %s", exc)
            await asyncio.sleep(self.retry_period)

    async def keep(self) -> None:
        """Renew every ``retry_period``; return when renewal failed for ``renew_deadline``."""
        last_ok = time.monotonic()
        while True:
            await asyncio.sleep(self.retry_period)
            try:
                if await self.try_acquire():
                    last_ok = time.monotonic()
                    continue
                log.error("%s lost the lease to another replica", self.identity)
                break
            except errors.BackendError as exc:
                log.warning("lease renewal failed: %s", exc)
            if time.monotonic() - last_ok > self.renew_deadline:
                log.error(
                    "%s could not renew the lease for %.0fs", self.identity, self.renew_deadline
                )
                break
        self.is_leader = False

    async def release(self) -> None:
        if not self.is_leader:
            return
        self.is_leader = False
        lease = await self.client.get_or_none(kube.LEASES, self.name, namespace=self.namespace)
        if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
            return
        lease["spec"]["holderIdentity"] = ""
        lease["spec"]["leaseDurationSeconds"] = 1
        try:
            await self.client.replace(kube.LEASES, lease, namespace=self.namespace)
        except errors.BackendError:
            return
