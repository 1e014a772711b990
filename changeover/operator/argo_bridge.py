"""Reading Argo Rollouts' own ``Rollout`` resources (argoproj.io/v1alpha1) directly.

With ``changeover serve --platform kubernetes --argo-rollouts`` the operator also watches
Argo Rollouts and keeps, for each, a changeover ``Rollout`` of the same name converted by
``importers`` (owned by the Argo resource, so deleting it deletes ours). Users keep
editing the Argo manifest (``kubectl argo rollouts set image`` works); the converted copy
follows, and what could not be carried over is in its annotation
``changeover.dev/import-notes`` and in an ``ImportNotes`` event on first conversion (a
Warning when a field is lost, Normal when the notes only say how fields were written). One that
``changeover import`` would refuse (the conversion does not pass ``changeover lint``) gets
an ``InvalidSpec`` Warning event naming the field instead, and no changeover Rollout.

An Argo Rollout with ``workloadRef`` (a Deployment holding the pod template) is converted
with that Deployment, read from the API when the Argo Rollout changes: a later edit of
the Deployment alone is not followed (edit the Argo Rollout, or re-apply it, to pick it up).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from changeover import errors, importers
from changeover.engine import commands as engine_commands
from changeover.engine.status import RolloutStatus
from changeover.importers import check
from changeover.kube import client as kube
from changeover.operator import argo_status
from changeover.platforms.kubernetes import informer
from changeover.platforms.kubernetes.events import EventRecorder
from changeover.platforms.kubernetes.replicasets import KubePlatform

log = logging.getLogger(__name__)
JSON = dict[str, Any]
NOTES_ANNOTATION = "changeover.dev/import-notes"
SOURCE_ANNOTATION = "changeover.dev/imported-from"
# The Argo Rollout's generation this conversion is of (its status's observedGeneration
# once the changeover Rollout has observed the conversion).
GENERATION_ANNOTATION = "changeover.dev/argo-generation"
# How many of the notes lose something of the Argo manifest (``Note.loss``).
LOSSES_ANNOTATION = "changeover.dev/import-losses"


DEPLOYMENTS = kube.Resource("apps/v1", "deployments", "Deployment")
_COMMANDS: dict[str, Callable[[RolloutStatus, float], RolloutStatus]] = {
    "promote": lambda s, _now: engine_commands.promote(s),
    "promote-full": lambda s, _now: engine_commands.promote(s, full=True),
    "abort": lambda s, now: engine_commands.abort(s, now=now),
    "retry": lambda s, _now: engine_commands.retry(s),
}


def converted(argo: JSON, workload: JSON | None = None) -> JSON | None:
    """The changeover Rollout for one Argo Rollout (None if it cannot be converted);
    ``workload`` is the Deployment its ``workloadRef`` names, when there is one."""
    result = importers.convert(
        [argo],
        source=f"argoproj.io Rollout/{argo['metadata']['name']}",
        context=[workload] if workload is not None else [],
    )
    rollouts = [d for d in result.documents if d.get("kind") == "Rollout"]
    if not rollouts:
        return None
    body = rollouts[0]
    meta = argo["metadata"]
    annotations = dict(body["metadata"].get("annotations") or {})
    annotations.pop("kubectl.kubernetes.io/last-applied-configuration", None)
    annotations[SOURCE_ANNOTATION] = f"argoproj.io/v1alpha1/Rollout/{meta['name']}"
    annotations[GENERATION_ANNOTATION] = str(meta.get("generation") or "")
    annotations[NOTES_ANNOTATION] = json.dumps(
        [f"{n.path}: {n.kind}: {n.message}" for n in result.notes]
    )
    annotations[LOSSES_ANNOTATION] = str(len(result.losses))
    body["metadata"] = {
        "name": meta["name"],
        "namespace": meta["namespace"],
        "labels": dict(meta.get("labels") or {}),
        "annotations": annotations,
        "ownerReferences": [
            {
                "apiVersion": "argoproj.io/v1alpha1",
                "kind": "Rollout",
                "name": meta["name"],
                "uid": meta["uid"],
                "controller": False,
                "blockOwnerDeletion": False,
            }
        ],
    }
    return body


class ArgoBridge:
    """Keeps a changeover Rollout for every Argo Rollout the operator can see."""

    def __init__(
        self,
        client: kube.KubeClient,
        *,
        namespace: str | None,
        rollouts: informer.Informer,
        platform: KubePlatform,
        recorder: EventRecorder,
        enqueue: Callable[[tuple[str, str]], None],
    ) -> None:
        """``rollouts`` is the operator's cache of changeover Rollouts (told of each write);
        ``enqueue`` asks for a ``sync`` of ("argo", "namespace/name")."""
        self.client = client
        self.rollouts = rollouts
        self.platform = platform
        self.recorder = recorder
        self.enqueue = enqueue
        self.informer = informer.Informer(
            client, kube.ARGO_ROLLOUTS, namespace=namespace, on_change=self._changed
        )
        self._pending: set[tuple[str, str]] = set()

    def _changed(self, obj: JSON) -> None:
        self._pending.add(informer.key_of(obj))
        self.enqueue(("argo", f"{obj['metadata'].get('namespace')}/{obj['metadata']['name']}"))

    async def sync(self, namespace: str, name: str) -> None:
        """Follow the Argo Rollout's spec, carry out what the plugin patched into it, and
        write its status from the changeover Rollout's."""
        argo = self.informer.get(namespace, name)
        if argo is None or argo["metadata"].get("deletionTimestamp"):
            return
        if not await self._follow(argo, namespace, name):
            return
        ours = self.rollouts.get(namespace, name)
        if ours is None or SOURCE_ANNOTATION not in (ours["metadata"].get("annotations") or {}):
            return
        ours = await self._commands(argo, ours)
        counts = self.platform.observe(ours)
        raw = ours.get("status") or {}
        meta = ours["metadata"]
        observed = None
        if raw.get("observedGeneration") == meta.get("generation"):
            observed = (meta.get("annotations") or {}).get(GENERATION_ANNOTATION)
        body = argo_status.status(
            argo,
            RolloutStatus.model_validate(raw),
            counts,
            observed_generation=observed,
            now=time.time(),
        )
        await self._write_status(argo, body)

    async def _follow(self, argo: JSON, namespace: str, name: str) -> bool:
        """Create or update the changeover Rollout from the Argo one; False if it cannot be
        converted (the Argo Rollout then says InvalidSpec)."""
        client = self.client
        try:
            body = converted(argo, await self._workload(argo, namespace))
        except errors.SpecError as exc:  # the converter itself refuses a field
            body, problems = None, exc.problems
        else:
            if body is None:
                return False
            spec_meta = {k: v for k, v in body["metadata"].items() if k != "ownerReferences"}
            problems = check.problems([{**body, "metadata": spec_meta}], source=f"Rollout/{name}")
        if problems or body is None:
            # What `changeover import` would refuse is not created half-right: the Argo
            # Rollout gets a Warning event saying which field, and nothing runs.
            text = "; ".join(f"{p.path}: {p.message}" for p in problems)
            status = argo_status.invalid(argo, text[:1000], now=time.time())
            if status != (argo.get("status") or {}):
                await self.recorder.record(argo, "InvalidSpec", text[:1000])
                await self._write_status(argo, status)
            return False
        existing = await client.get_or_none(kube.ROLLOUTS, name, namespace=namespace)
        if existing is None:
            written = await client.create(kube.ROLLOUTS, body, namespace=namespace)
            self.rollouts.remember(written)
            annotations = body["metadata"]["annotations"]
            notes = json.loads(annotations[NOTES_ANNOTATION])
            if notes:
                # Warning when something of the Argo manifest does not run here; Normal when
                # the notes only say how a field was written.
                lost = annotations.get(LOSSES_ANNOTATION, "0") != "0"
                await self.recorder.record(
                    argo, "ImportNotes", "; ".join(notes)[:1000], warning=lost
                )
            return True
        if SOURCE_ANNOTATION not in (existing["metadata"].get("annotations") or {}):
            raise errors.PermanentBackendError(
                f"a changeover Rollout {name} exists that was not imported from Argo Rollouts"
            )
        had = (existing["metadata"].get("annotations") or {}).get(GENERATION_ANNOTATION)
        wanted = body["metadata"]["annotations"][GENERATION_ANNOTATION]
        if existing.get("spec") == body["spec"] and had == wanted:
            return True
        body["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
        written = await client.replace(kube.ROLLOUTS, body, namespace=namespace)
        self.rollouts.remember(written)
        return True

    async def _commands(self, argo: JSON, ours: JSON) -> JSON:
        """Carry out the promote/abort/retry the plugin patched into the Argo Rollout's
        status on the changeover Rollout (as ``changeover promote`` would); the new one."""
        raw = ours.get("status") or {}
        status = RolloutStatus.model_validate(raw)
        counts = self.platform.observe(ours)
        target = counts.get(status.target_revision or -1)
        asked = argo_status.commands(argo, status, target_hash=target.pod_hash if target else "")
        if not asked:
            return ours
        now = time.time()
        try:
            for command in asked:
                status = _COMMANDS[command](status, now)
        except errors.StateError as exc:
            await self.recorder.record(argo, "CommandRefused", str(exc), warning=True)
            return ours
        meta = ours["metadata"]
        update = {
            "apiVersion": ours.get("apiVersion", kube.ROLLOUTS.api_version),
            "kind": "Rollout",
            "metadata": {
                "name": meta["name"],
                "namespace": meta["namespace"],
                "resourceVersion": meta["resourceVersion"],
            },
            "spec": ours.get("spec") or {},
            "status": {**raw, **status.to_json_dict()},
        }
        written = await self.client.replace(
            kube.ROLLOUTS, update, namespace=meta["namespace"], sub="status"
        )
        self.rollouts.remember(written)
        log.info("argo rollout %s/%s: %s", meta["namespace"], meta["name"], ", ".join(asked))
        return written

    async def _write_status(self, argo: JSON, body: JSON) -> None:
        if body == (argo.get("status") or {}):
            return
        written = await self.client.replace_status(kube.ARGO_ROLLOUTS, argo, body)
        self.informer.remember(written)

    async def _workload(self, argo: JSON, namespace: str) -> JSON | None:
        ref = (argo.get("spec") or {}).get("workloadRef") or {}
        if ref.get("kind", "Deployment") != "Deployment" or not ref.get("name"):
            return None
        return await self.client.get_or_none(DEPLOYMENTS, ref["name"], namespace=namespace)
