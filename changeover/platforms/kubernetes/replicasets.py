"""``KubePlatform``: a rollout's revisions as ReplicaSets it owns.

Each revision is one ReplicaSet named ``<rollout>-<pod-template-hash>``, labelled with the
rollout and the hash (``names.HASH_LABEL``, which Services select on), annotated with the
revision number, and owned by the Rollout (``ownerReferences``, so deleting the Rollout
garbage-collects it). Equal pod templates hash alike, so going back to an earlier template
re-uses that revision's ReplicaSet (and its number) instead of starting a new one.

The verbs mirror ``platforms.base.Platform`` (ensure a revision, scale, delete, observe);
``observe`` reads counts from the ReplicaSets' status (``availableReplicas`` honours
``minReadySeconds``, which the ReplicaSet is given), not pod by pod. Reads come from an
``Informer`` cache; writes go to the API and into the cache. Called by ``operator.reconcile``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from changeover import errors
from changeover.kube import client as kube
from changeover.kube import names
from changeover.platforms.kubernetes import informer
from changeover.spec import pod

JSON = dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class Counts:
    revision: int
    name: str
    pod_hash: str
    desired: int
    ready: int
    available: int


def by_rollout_key(namespace: str, rollout: str) -> str:
    return f"{namespace}/{rollout}"


def by_rollout(obj: JSON) -> str | None:
    """The index the ReplicaSet informer keeps: namespace/rollout of the owner label."""
    meta = obj.get("metadata", {})
    owner = (meta.get("labels") or {}).get(names.ROLLOUT_LABEL)
    return by_rollout_key(str(meta.get("namespace", "")), owner) if owner else None


class KubePlatform:
    name = "kubernetes"
    capabilities = frozenset({"replicasets", "hooks-as-jobs"})

    def __init__(self, client: kube.KubeClient, replicasets: informer.Informer) -> None:
        self.client = client
        self.cache = replicasets

    # --- reading -----------------------------------------------------------------------

    def revisions(self, rollout: JSON) -> dict[int, JSON]:
        """The rollout's ReplicaSets by revision number (from the cache)."""
        meta = rollout["metadata"]
        out: dict[int, JSON] = {}
        for rs in self.cache.indexed(by_rollout_key(meta["namespace"], meta["name"])):
            rs_meta = rs["metadata"]
            if rs_meta.get("namespace") != meta["namespace"]:
                continue
            if rs_meta.get("deletionTimestamp") or not names.owned_by(rs, meta["uid"]):
                continue
            revision = names.revision_of(rs)
            if revision is not None:
                out[revision] = rs
        return out

    def observe(self, rollout: JSON) -> dict[int, Counts]:
        out = {}
        for revision, rs in self.revisions(rollout).items():
            status = rs.get("status") or {}
            # The status lags a scale-down: never report more ready than desired.
            desired = int(rs["spec"].get("replicas", 0))
            ready = int(status.get("readyReplicas") or 0)
            available = int(status.get("availableReplicas") or 0)
            if status.get("observedGeneration", 0) < rs["metadata"].get("generation", 0):
                ready, available = min(ready, desired), min(available, desired)
            out[revision] = Counts(
                revision=revision,
                name=rs["metadata"]["name"],
                pod_hash=rs["metadata"]["labels"].get(names.HASH_LABEL, ""),
                desired=desired,
                ready=ready,
                available=available,
            )
        return out

    def revision_of_hash(self, rollout: JSON, pod_hash: str) -> int | None:
        for revision, rs in self.revisions(rollout).items():
            if rs["metadata"].get("labels", {}).get(names.HASH_LABEL) == pod_hash:
                return revision
        return None

    def template_of(self, rollout: JSON, revision: int) -> JSON | None:
        """A revision's pod template as the Rollout had it (for undo and history)."""
        rs = self.revisions(rollout).get(revision)
        return None if rs is None else original_template(rs)

    # --- writing -----------------------------------------------------------------------

    async def ensure_revision(
        self,
        rollout: JSON,
        *,
        revision: int,
        template: pod.PodTemplate,
        pod_hash: str,
        min_ready_seconds: float,
    ) -> None:
        """Create the revision's ReplicaSet with 0 replicas (idempotent)."""
        meta = rollout["metadata"]
        name = names.replicaset_name(meta["name"], pod_hash)
        ours = {names.ROLLOUT_LABEL: meta["name"], names.HASH_LABEL: pod_hash}
        labels = {**template.metadata.labels, **ours}
        pod_meta: JSON = {"labels": labels}
        if template.metadata.annotations:
            pod_meta["annotations"] = dict(template.metadata.annotations)
        body: JSON = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": name,
                "namespace": meta["namespace"],
                "labels": labels,
                "annotations": {
                    names.REVISION_ANNOTATION: str(revision),
                    names.TEMPLATE_ANNOTATION: json.dumps(
                        template.to_json_dict(), sort_keys=True, separators=(",", ":")
                    ),
                },
                "ownerReferences": [names.owner_reference(rollout)],
            },
            "spec": {
                "replicas": 0,
                "minReadySeconds": math.ceil(min_ready_seconds),
                "selector": {"matchLabels": ours},
                "template": {"metadata": pod_meta, "spec": template.spec},
            },
        }
        try:
            created = await self.client.create(kube.REPLICASETS, body, namespace=meta["namespace"])
        except kube.Conflict:
            existing = await self.client.get(kube.REPLICASETS, name, namespace=meta["namespace"])
            if not names.owned_by(existing, meta["uid"]):
                raise errors.PermanentBackendError(
                    f"ReplicaSet {name} exists and is not owned by rollout {meta['name']}"
                ) from None
            created = existing
        self.cache.remember(created)

    async def scale(self, rollout: JSON, *, revision: int, replicas: int) -> None:
        rs = self.revisions(rollout).get(revision)
        if rs is None:
            raise errors.TemporaryBackendError(
                f"revision {revision} of {rollout['metadata']['name']} has no ReplicaSet yet"
            )
        patched = await self.client.patch(
            kube.REPLICASETS,
            rs["metadata"]["name"],
            {"spec": {"replicas": replicas}},
            namespace=rs["metadata"]["namespace"],
        )
        self.cache.remember(patched)

    async def delete_revision(self, rollout: JSON, *, revision: int) -> None:
        rs = self.revisions(rollout).get(revision)
        if rs is None:
            return
        meta = rs["metadata"]
        await self.client.delete(
            kube.REPLICASETS, meta["name"], namespace=meta["namespace"], propagation="Background"
        )
        self.cache.forget(meta["namespace"], meta["name"])


def original_template(rs: JSON) -> JSON:
    """The pod template a ReplicaSet was made from, as the Rollout had it."""
    raw = (rs["metadata"].get("annotations") or {}).get(names.TEMPLATE_ANNOTATION)
    if raw:
        template: JSON = json.loads(raw)
        return template
    template = rs["spec"]["template"]
    meta = template.get("metadata") or {}
    labels = {
        k: v
        for k, v in (meta.get("labels") or {}).items()
        if k not in (names.ROLLOUT_LABEL, names.HASH_LABEL)
    }
    out: JSON = {"metadata": {"labels": labels}, "spec": template["spec"]}
    if meta.get("annotations"):
        out["metadata"]["annotations"] = meta["annotations"]
    return out
