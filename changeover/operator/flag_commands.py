"""``KubeFlags``: the flag operations of ``flags.flag_service.FlagService`` on Flag
resources through the Kubernetes API (the CLI's ``flag/NAME`` with ``--platform
kubernetes``, and ``kubectl changeover``).

``promote``/``pause``/``resume``/``retry`` apply the pure ``flags.progress`` commands to
the Flag's status and ``abort`` turns it off, each written to the status subresource with
the resourceVersion it read (retried on a fresh read on 409 Conflict). The operator's next
look (``operator.flag_rollouts``) walks on from what was written and records the event the
command asks for (``requestedEvent``). Status documents are ``FlagService``'s.

``history`` lists the specs the operator kept in ``status.history`` (``flags.flag_history``)
and ``undo`` writes one of them back into ``spec``, with the same retry on 409.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Callable
from typing import Any

from changeover import errors
from changeover.flags import flag_history, flag_service, progress
from changeover.kube import client as kube
from changeover.operator import documents, flag_rollouts
from changeover.operator.flag_endpoint import current_status
from changeover.platforms.kubernetes.events import list_events
from changeover.platforms.kubernetes.informer import Informer
from changeover.spec import flag as spec_flag

JSON = dict[str, Any]
ATTEMPTS = 10


class KubeFlags:
    def __init__(
        self,
        client: kube.KubeClient,
        *,
        namespace: str,
        watched: Callable[[], Informer | None] | None = None,
    ) -> None:
        """``watched``: the namespace's Flags kept by a watch, when synced (the cluster
        dashboard's list page reads them from there)."""
        self.client = client
        self.namespace = namespace
        self._watched = watched

    async def _get(self, name: str) -> JSON:
        obj = await self.client.get_or_none(kube.FLAGS, name, namespace=self.namespace)
        if obj is None:
            raise errors.NotFound(f"no flag named {name!r} in namespace {self.namespace}")
        return obj

    # --- reads ---------------------------------------------------------------------

    def document(self, obj: JSON) -> JSON:
        meta = obj["metadata"]
        name = str(meta["name"])
        try:
            return flag_service.status_document(
                name,
                int(meta.get("generation") or 0),
                {"spec": obj.get("spec") or {}},
                current_status(obj),
                meta.get("creationTimestamp"),
            )
        except ValueError as exc:
            return {"kind": "Flag", "name": name, "phase": "Invalid", "message": str(exc)[:500]}

    async def list_flags(self) -> list[JSON]:
        informer = self._watched() if self._watched is not None else None
        if informer is not None:  # (a cluster-wide cache has every namespace's)
            found = [o for o in informer.items() if o["metadata"]["namespace"] == self.namespace]
        else:
            found = (await self.client.list(kube.FLAGS, namespace=self.namespace))["items"]
        items = sorted(found, key=lambda o: o["metadata"]["name"])
        return [self.document(o) for o in items]

    async def status(self, name: str) -> JSON:
        return self.document(await self._get(name))

    async def history(self, name: str) -> list[JSON]:
        """The kept revisions, oldest first, as the local platform lists a flag's."""
        obj = await self._get(name)
        return flag_history.rows(_revisions(obj), _generation(obj))

    async def events(self, name: str, *, limit: int = 50) -> list[JSON]:
        await self._get(name)
        items = await list_events(self.client, namespace=self.namespace, name=name, kind="Flag")
        return [
            {
                "reason": e.get("reason"),
                "message": e.get("message"),
                "type": e.get("type"),
                "time": documents.epoch(e.get("lastTimestamp") or e.get("eventTime")),
                "revision": None,
            }
            for e in items[-limit:]
        ]

    # --- writes --------------------------------------------------------------------

    async def apply(self, flags: list[spec_flag.Flag]) -> list[JSON]:
        """Create or update each Flag (already checked by the spec models)."""
        results = []
        for flag in flags:
            body = {
                "apiVersion": kube.FLAGS.api_version,
                "kind": "Flag",
                "metadata": {"name": flag.name, "namespace": self.namespace},
                "spec": flag.to_json_dict()["spec"],
            }
            results.append(await self._apply_one(flag.name, body))
        return results

    async def _apply_one(self, name: str, body: JSON) -> JSON:
        # Retried on a stale read: the operator writes the Flag's status in between.
        for _ in range(ATTEMPTS):
            before = await self.client.get_or_none(kube.FLAGS, name, namespace=self.namespace)
            try:
                if before is None:
                    written = await self.client.create(kube.FLAGS, body, namespace=self.namespace)
                    action = "created"
                elif before.get("spec") == body["spec"]:
                    written, action = before, "unchanged"
                else:
                    rv = before["metadata"]["resourceVersion"]
                    update = {**body, "metadata": {**body["metadata"], "resourceVersion": rv}}
                    written = await self.client.replace(
                        kube.FLAGS, update, namespace=self.namespace
                    )
                    action = "updated"
            except kube.Conflict:
                await asyncio.sleep(0.05)
                continue
            revision = int(written["metadata"].get("generation") or 0)
            return {"kind": "Flag", "name": name, "revision": revision, "action": action}
        raise errors.TemporaryBackendError(f"flag {name} kept changing; try again")

    async def undo(self, name: str, *, to_revision: int | None = None) -> JSON:
        """Write a kept revision's spec back as the Flag's spec (the one before the current
        by default): a new generation, whose rollout (if any) starts from the first step.
        Written with the resourceVersion read, retried on a fresh read on 409 Conflict (the
        operator writes the status meanwhile), as a Rollout's undo."""
        for _ in range(ATTEMPTS):
            obj = await self._get(name)
            current = _generation(obj)
            kept = {n: spec for n, spec, _ in _revisions(obj)}
            target = flag_history.undo_target(name, kept, current, to_revision)
            spec = kept[target]
            try:
                flag_rollouts.parse_flag({**obj, "spec": spec})
            except ValueError as exc:
                raise errors.StateError(
                    f"flag {name!r}: the spec kept as revision {target} is not a valid Flag "
                    f"spec ({str(exc)[:500]})"
                ) from None
            obj["spec"] = copy.deepcopy(spec)
            try:
                written = await self.client.replace(kube.FLAGS, obj, namespace=self.namespace)
            except kube.Conflict:
                await asyncio.sleep(0.05)
                continue
            return {
                **self.document(written),
                "undoneTo": target,
                "newRevision": _generation(written),
            }
        raise errors.TemporaryBackendError(f"flag {name} kept changing; try again")

    async def delete(self, name: str) -> None:
        await self._get(name)
        await self.client.delete(kube.FLAGS, name, namespace=self.namespace)

    async def abort(self, name: str) -> JSON:
        """Turn the flag off now: everyone gets the default variant until a new spec."""
        message = "turned off: everyone gets the default variant"

        def change(_: spec_flag.FlagSpec, status: JSON) -> JSON:
            return {**status, "off": True, "phase": "Aborted", "message": message}

        return await self._write(name, change, ("Aborted", "turned off by abort"))

    async def retry(self, name: str) -> JSON:
        """Turn an aborted flag back on, its rollout (if any) from the first step."""

        def change(spec: spec_flag.FlagSpec, status: JSON) -> JSON:
            return progress.retry(status, spec, time.time())

        return await self._write(name, change, ("Retried", "turned on again"))

    async def promote(self, name: str, *, full: bool = False) -> JSON:
        return await self._walk(name, lambda s: progress.promote(s, full=full), "Promoted")

    async def pause(self, name: str) -> JSON:
        return await self._walk(name, progress.pause, "Paused")

    async def resume(self, name: str) -> JSON:
        return await self._walk(name, progress.resume, "Resumed")

    async def _walk(self, name: str, change: Callable[[JSON], JSON], reason: str) -> JSON:
        def checked(spec: spec_flag.FlagSpec, status: JSON) -> JSON:
            rollout = status.get("rollout")
            if spec.rollout is None or not rollout or rollout.get("done"):
                raise errors.StateError(f"flag {name!r} has no rollout in progress")
            if status.get("off"):
                raise errors.StateError(f"flag {name!r} is turned off: `retry` turns it on again")
            return change(status)

        return await self._write(name, checked, (reason, f"{reason.lower()} by the user"))

    async def _write(
        self,
        name: str,
        change: Callable[[spec_flag.FlagSpec, JSON], JSON],
        event: tuple[str, str],
    ) -> JSON:
        for _ in range(ATTEMPTS):
            obj = await self._get(name)
            try:
                spec = flag_rollouts.parse_flag(obj).spec
            except ValueError as exc:
                raise errors.StateError(f"flag {name!r} has an invalid spec: {exc}") from None
            status = current_status(obj)
            kept = (obj.get("status") or {}).get(flag_rollouts.HISTORY)
            new = change(spec, {k: v for k, v in status.items() if k != "conditions"})
            obj["status"] = {
                **new,
                "conditions": status.get("conditions") or [],
                "observedGeneration": obj["metadata"].get("generation"),
                flag_rollouts.REQUESTED: list(event),
            }
            if kept is not None:  # the operator's record of earlier specs stays
                obj["status"][flag_rollouts.HISTORY] = kept
            try:
                written = await self.client.replace(
                    kube.FLAGS, obj, namespace=self.namespace, sub="status"
                )
            except kube.Conflict:
                await asyncio.sleep(0.05)
                continue
            return self.document(written)
        raise errors.TemporaryBackendError(f"flag {name} kept changing; try again")


def _generation(obj: JSON) -> int:
    return int((obj.get("metadata") or {}).get("generation") or 0)


def _revisions(obj: JSON) -> list[flag_history.Revision]:
    """The Flag's kept revisions (``status.history``) and its current one."""
    kept = flag_history.parse((obj.get("status") or {}).get(flag_rollouts.HISTORY))
    return flag_history.revisions(kept, _generation(obj), obj.get("spec") or {})
