"""The ``job`` metric provider on Kubernetes: each measurement is a real ``batch/v1`` Job
in the rollout's namespace, as Argo Rollouts runs it.

The Job is the template's ``job: {metadata, spec}`` (Argo's shape) as written: its pods run
with the service account the template's pod spec names, or the namespace's ``default`` one,
never with the operator's, and nothing runs inside the operator's pod. A measurement is
Successful when the Job has the ``Complete`` condition and Failed when it has ``Failed``
(its reason and message are the measurement's); the template's ``activeDeadlineSeconds``
and ``backoffLimit`` are the Job controller's to enforce. Whatever the outcome, and when the
run is stopped mid-measurement, the Job is deleted with ``propagationPolicy: Background``
(its pods go with it). The measurement's metadata names the Job (``job-name``,
``job-namespace``), as Argo's does.

The local shape (``command: [...]`` with no image) has nothing to run on Kubernetes: such a
measurement is an Error saying so.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import logging
import re
import time
from collections.abc import Mapping
from typing import Any

from changeover import errors
from changeover.analysis.providers import base
from changeover.kube import client as kube

log = logging.getLogger(__name__)
JSON = dict[str, Any]
# The label an analysis Job carries: the rollout it measures.
ROLLOUT_LABEL = "changeover.dev/analysis-for"
POLL_SECONDS = 1.0


def job_name(rollout: str, canary_revision: int | None, now: float) -> str:
    """A fresh DNS-1123 name per measurement: ``<rollout>-<revision>-<digest>``."""
    digest = hashlib.sha256(f"{rollout}/{canary_revision}/{now}/{time.monotonic_ns()}".encode())
    stem = re.sub(r"[^a-z0-9-]", "-", rollout.lower())[:40].strip("-") or "analysis"
    return f"{stem}-{canary_revision or 0}-{digest.hexdigest()[:10]}"


def job_body(config: Mapping[str, Any], *, name: str, namespace: str, rollout: str) -> JSON:
    """The Job for one measurement; ProviderError when the config is not a Job."""
    spec = _map(config, "spec")
    containers = _map(_map(spec, "template"), "spec").get("containers")
    if not isinstance(containers, list) or not containers:
        raise base.ProviderError(
            "provider.job: on Kubernetes a job runs as a Kubernetes Job: expected "
            "spec.template.spec.containers (with an image), as Argo Rollouts writes it"
        )
    meta = _map(config, "metadata")
    body_spec = copy.deepcopy(spec)
    template = body_spec["template"]
    template["spec"].setdefault("restartPolicy", "Never")  # the API refuses Always for a Job
    labels = {**(meta.get("labels") or {}), ROLLOUT_LABEL: rollout[:63]}
    template.setdefault("metadata", {})
    template["metadata"]["labels"] = {**(template["metadata"].get("labels") or {}), **labels}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "annotations": dict(meta.get("annotations") or {}),
        },
        "spec": body_spec,
    }


def _map(doc: Mapping[str, Any], key: str) -> JSON:
    value = doc.get(key)
    return value if isinstance(value, dict) else {}


def outcome(job: JSON) -> tuple[base.MeasurementPhase, str] | None:
    """Successful on ``Complete``, Failed on ``Failed``; None while it runs."""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if not isinstance(cond, dict) or cond.get("status") != "True":
            continue
        if cond.get("type") == "Complete":
            return "Successful", "completed"
        if cond.get("type") == "Failed":
            why = ": ".join(str(cond[k]) for k in ("reason", "message") if cond.get(k))
            return "Failed", f"failed{': ' + why if why else ''}"
    return None


class KubeJobProvider:
    name = "job"

    def __init__(self, client: kube.KubeClient, *, poll: float = POLL_SECONDS) -> None:
        self.client = client
        self.poll = poll

    async def measure(
        self,
        config: Mapping[str, Any],
        *,
        args: Mapping[str, str],
        context: base.MeasureContext,
    ) -> base.ProviderResult:
        namespace = context.namespace
        name = job_name(context.rollout, context.canary_revision, context.now)
        body = job_body(config, name=name, namespace=namespace, rollout=context.rollout)
        metadata = {"job-name": name, "job-namespace": namespace}
        try:
            await self.client.create(kube.JOBS, body, namespace=namespace)
        except errors.ChangeoverError as exc:
            raise base.ProviderError(f"job {namespace}/{name}: cannot create: {exc}") from None
        try:
            while True:
                try:
                    job = await self.client.get_or_none(kube.JOBS, name, namespace=namespace)
                except errors.TemporaryBackendError as exc:
                    log.warning("reading Job %s/%s: %s", namespace, name, exc)
                    job = {}
                if job is None:
                    raise base.ProviderError(f"job {namespace}/{name} was deleted while it ran")
                found = outcome(job)
                if found is not None:
                    phase, what = found
                    return base.ProviderResult(
                        value=None,
                        phase=phase,
                        message=f"job {namespace}/{name} {what}",
                        metadata=metadata,
                    )
                await asyncio.sleep(self.poll)
        finally:
            # Done, failed, or the run was stopped: the Job and its pods go (shielded, so a
            # second cancellation does not leave the Job behind).
            await asyncio.shield(self._delete(name, namespace))

    async def _delete(self, name: str, namespace: str) -> None:
        with contextlib.suppress(errors.ChangeoverError):
            await self.client.delete(kube.JOBS, name, namespace=namespace, propagation="Background")
