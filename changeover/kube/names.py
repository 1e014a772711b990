"""Labels, annotations, object names and the pod-template hash: the operator's vocabulary
on Kubernetes objects, in one place so every module (and the tests) agree.

    >>> len(template_hash({"spec": {"containers": [{"name": "a", "image": "a:1"}]}}))
    10
    >>> replicaset_name("chat", "5d8f7c9b6x")
    'chat-5d8f7c9b6x'
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

ROLLOUT_LABEL = "changeover.dev/rollout"
# Argo Rollouts' label name, so Service selectors and dashboards written for Argo carry over.
HASH_LABEL = "rollouts-pod-template-hash"
REVISION_ANNOTATION = "rollout.changeover.dev/revision"
# The pod template exactly as the Rollout had it (the API server adds defaults to the
# ReplicaSet's copy): undo puts this back, so it hashes to the same revision again.
TEMPLATE_ANNOTATION = "rollout.changeover.dev/pod-template"
HOOK_LABEL = "changeover.dev/hook"
API_VERSION = "changeover.dev/v1alpha1"
COMPONENT = "changeover-operator"

# Kubernetes' rand.SafeEncodeString alphabet: no vowels, no look-alikes, so no words.
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def template_hash(template: dict[str, Any]) -> str:
    """A 10-character hash of a pod template; equal templates share one ReplicaSet."""
    canonical = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    number = int.from_bytes(hashlib.sha256(canonical).digest()[:8], "big")
    out = []
    for _ in range(10):
        number, digit = divmod(number, len(_ALPHABET))
        out.append(_ALPHABET[digit])
    return "".join(out)


def replicaset_name(rollout: str, pod_hash: str) -> str:
    return f"{rollout[:52]}-{pod_hash}"


def owner_reference(rollout: dict[str, Any]) -> dict[str, Any]:
    """The controller reference that makes an object belong to (and die with) a Rollout."""
    meta = rollout["metadata"]
    return {
        "apiVersion": rollout.get("apiVersion", API_VERSION),
        "kind": rollout.get("kind", "Rollout"),
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def owned_by(obj: dict[str, Any], uid: str) -> bool:
    refs = obj.get("metadata", {}).get("ownerReferences") or []
    return any(ref.get("uid") == uid and ref.get("controller") for ref in refs)


def revision_of(obj: dict[str, Any]) -> int | None:
    value = (obj.get("metadata", {}).get("annotations") or {}).get(REVISION_ANNOTATION)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def stable_service(rollout: str, configured: str | None) -> str:
    return configured or rollout


def canary_service(rollout: str, configured: str | None) -> str:
    return configured or f"{rollout}-canary"


def preview_service(rollout: str, configured: str | None) -> str:
    return configured or f"{rollout}-preview"
