"""Reading Argo Rollouts' own ``Rollout`` resources (argoproj.io/v1alpha1) directly.

With ``changeover serve --platform kubernetes --argo-rollouts`` the operator also watches
Argo Rollouts and keeps, for each, a changeover ``Rollout`` of the same name converted by
``spec.importers`` (owned by the Argo resource, so deleting it deletes ours). Users keep
editing the Argo manifest (``kubectl argo rollouts set image`` works); the converted copy
follows, and what could not be carried over is in its annotation
``changeover.dev/import-notes`` and in a Warning event on first conversion. One that
``changeover import`` would refuse (the conversion does not pass ``changeover lint``) gets
an ``InvalidSpec`` Warning event naming the field instead, and no changeover Rollout.

An Argo Rollout with ``workloadRef`` (a Deployment holding the pod template) is converted
with that Deployment, read from the API when the Argo Rollout changes: a later edit of
the Deployment alone is not followed (edit the Argo Rollout, or re-apply it, to pick it up).
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from changeover import errors
from changeover.platforms.kubernetes import client as kube
from changeover.platforms.kubernetes import informer
from changeover.spec import importers
from changeover.spec.importers import check

if TYPE_CHECKING:
    from changeover.operator.runtime import Operator

log = logging.getLogger(__name__)
JSON = dict[str, Any]
NOTES_ANNOTATION = "changeover.dev/import-notes"
SOURCE_ANNOTATION = "changeover.dev/imported-from"


DEPLOYMENTS = kube.Resource("apps/v1", "deployments", "Deployment")


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
    annotations[NOTES_ANNOTATION] = json.dumps(
        [f"{n.path}: {n.kind}: {n.message}" for n in result.notes]
    )
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

    def __init__(self, op: Operator) -> None:
        self.op = op
        self.informer = informer.Informer(
            op.client, kube.ARGO_ROLLOUTS, namespace=op.namespace, on_change=self._changed
        )
        self._pending: set[tuple[str, str]] = set()

    def _changed(self, obj: JSON) -> None:
        self._pending.add(informer.key_of(obj))
        self.op.queue.add(("argo", f"{obj['metadata'].get('namespace')}/{obj['metadata']['name']}"))

    async def sync(self, namespace: str, name: str) -> None:
        argo = self.informer.get(namespace, name)
        if argo is None or argo["metadata"].get("deletionTimestamp"):
            return
        client = self.op.client
        try:
            body = converted(argo, await self._workload(argo, namespace))
        except errors.SpecError as exc:  # refused by the importer itself, field named
            text = "; ".join(f"{p.path}: {p.message}" for p in exc.problems)
            await self.op.recorder.record(argo, "InvalidSpec", text[:1000])
            return
        if body is None:
            return
        spec_meta = {k: v for k, v in body["metadata"].items() if k != "ownerReferences"}
        problems = check.problems([{**body, "metadata": spec_meta}], source=f"Rollout/{name}")
        if problems:
            # What `changeover import` would refuse is not created half-right: the Argo
            # Rollout gets a Warning event saying which field, and nothing runs.
            text = "; ".join(f"{p.path}: {p.message}" for p in problems)
            await self.op.recorder.record(argo, "InvalidSpec", text[:1000])
            return
        existing = await client.get_or_none(kube.ROLLOUTS, name, namespace=namespace)
        if existing is None:
            await client.create(kube.ROLLOUTS, body, namespace=namespace)
            notes = json.loads(body["metadata"]["annotations"][NOTES_ANNOTATION])
            if notes:
                await self.op.recorder.record(argo, "ImportNotes", "; ".join(notes)[:1000])
            return
        if SOURCE_ANNOTATION not in (existing["metadata"].get("annotations") or {}):
            raise errors.PermanentBackendError(
                f"a changeover Rollout {name} exists that was not imported from Argo Rollouts"
            )
        if existing.get("spec") == body["spec"]:
            return
        body["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
        await client.replace(kube.ROLLOUTS, body, namespace=namespace)

    async def _workload(self, argo: JSON, namespace: str) -> JSON | None:
        ref = (argo.get("spec") or {}).get("workloadRef") or {}
        if ref.get("kind", "Deployment") != "Deployment" or not ref.get("name"):
            return None
        return await self.op.client.get_or_none(DEPLOYMENTS, ref["name"], namespace=namespace)
