"""Recreate's pre/mid/post hooks as Kubernetes Jobs.

A hook runs once per hook id (the engine makes the id unique per rollout, revision, hook
point and attempt): the Job's name carries a digest of the id, so asking twice creates one
Job. It runs the hook's ``command`` in the new revision's image (a migration ships with the
code it migrates), with ``activeDeadlineSeconds`` = the hook's ``timeoutSeconds`` and no
retries, so the Job controller itself fails a hook that overruns. Its state comes from the
Job's conditions: Complete → succeeded, Failed → failed (with the Job's reason and message).
"""

from __future__ import annotations

import hashlib
import math
from typing import Any, Literal

from changeover.kube import client as kube
from changeover.kube import names
from changeover.platforms.kubernetes import informer
from changeover.spec import models, pod

JSON = dict[str, Any]
HookState = Literal["running", "succeeded", "failed"]


def job_name(rollout: str, hook_id: str) -> str:
    point = hook_id.split(":")[2] if hook_id.count(":") >= 3 else "hook"
    digest = hashlib.sha256(hook_id.encode()).hexdigest()[:8]
    return f"{rollout[:40]}-{point[:8]}-{digest}"


class JobHooks:
    def __init__(self, client: kube.KubeClient, jobs: informer.Informer) -> None:
        self.client = client
        self.cache = jobs

    async def start(
        self, rollout: JSON, *, hook_id: str, hook: models.Hook, template: pod.PodTemplate
    ) -> None:
        meta = rollout["metadata"]
        name = job_name(meta["name"], hook_id)
        if self.cache.get(meta["namespace"], name) is not None:
            return
        container: JSON = {
            "name": "hook",
            "image": template.image,
            "command": list(hook.command),
            "env": [{"name": k, "value": v} for k, v in sorted(hook.env.items())],
        }
        if hook.working_dir:
            container["workingDir"] = hook.working_dir
        labels = {names.ROLLOUT_LABEL: meta["name"], names.HOOK_LABEL: "true"}
        body: JSON = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": name,
                "namespace": meta["namespace"],
                "labels": labels,
                "annotations": {"changeover.dev/hook-id": hook_id},
                "ownerReferences": [names.owner_reference(rollout)],
            },
            "spec": {
                "backoffLimit": 0,
                "activeDeadlineSeconds": max(1, math.ceil(hook.timeout_seconds)),
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"restartPolicy": "Never", "containers": [container]},
                },
            },
        }
        try:
            created = await self.client.create(kube.JOBS, body, namespace=meta["namespace"])
        except kube.Conflict:
            return
        self.cache.remember(created)

    def status(self, rollout: JSON, hook_id: str) -> tuple[HookState, str] | None:
        meta = rollout["metadata"]
        job = self.cache.get(meta["namespace"], job_name(meta["name"], hook_id))
        if job is None:
            return None
        for cond in (job.get("status") or {}).get("conditions") or []:
            if cond.get("status") != "True":
                continue
            if cond.get("type") == "Complete":
                return "succeeded", ""
            if cond.get("type") == "Failed":
                why = cond.get("message") or cond.get("reason") or "the Job failed"
                return "failed", f"Job {job['metadata']['name']}: {why}"
        return "running", ""
