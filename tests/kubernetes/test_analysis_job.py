"""The ``job`` metric provider on Kubernetes runs a real Job in the rollout's namespace
(issue 11: it ran its command inside the operator's pod, with the operator's service
account). The template is Argo Rollouts' documented shape (docs/analysis/job.md).

The test bed's fake kubelet marks pods Running but runs no container, so a Job never
finishes by itself here: the test sets the Job's ``Complete``/``Failed`` condition through
the status subresource, as the Job controller would once its pod exits, and checks what
the operator created and how it read the outcome."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conftest import helper_operator
from k8s_helpers import Kube, eventually, healthy_on, phase_is, rollout

from changeover.kube import client as kube
from changeover.operator.analysis_job import ROLLOUT_LABEL
from changeover.operator.runtime import Operator

JSON = dict[str, Any]
SERVICE_ACCOUNTS = kube.Resource("v1", "serviceaccounts", "ServiceAccount")
STEPS = {
    "canary": {
        "steps": [
            {"setWeight": 25},
            {"analysis": {"templates": [{"templateName": "smoke"}]}},
            {"pause": {}},
        ]
    }
}


def job_template(marker: Path) -> JSON:
    """docs/analysis/job.md: a Job whose exit code is the verdict; here its command would
    leave a file behind if it ran in this process."""
    return {
        "apiVersion": "changeover.dev/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": "smoke"},
        "spec": {
            "metrics": [
                {
                    "name": "smoke",
                    "provider": {
                        "job": {
                            "metadata": {"labels": {"team": "checkout"}},
                            "spec": {
                                "backoffLimit": 1,
                                "template": {
                                    "spec": {
                                        "serviceAccountName": "smoke-runner",
                                        "containers": [
                                            {
                                                "name": "smoke",
                                                "image": "busybox:1.36",
                                                "command": ["sh", "-c", f"touch {marker}"],
                                            }
                                        ],
                                        "restartPolicy": "Never",
                                    }
                                },
                            },
                        }
                    },
                }
            ]
        },
    }


async def _analysis_job(k: Kube) -> JSON:
    async def jobs() -> list[JSON]:
        doc = await k.client.list(kube.JOBS, namespace=k.namespace, label_selector=ROLLOUT_LABEL)
        return list(doc["items"])

    (job,) = await eventually(jobs, lambda js: len(js) == 1, within=90, what="the analysis Job")
    return job


async def _start(k: Kube, tmp_path: Path) -> tuple[JSON, Path]:
    marker = tmp_path / "ran-inside-the-operator"
    await k.create(
        SERVICE_ACCOUNTS,
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "smoke-runner"}},
    )
    await k.create(kube.ANALYSIS_TEMPLATES, job_template(marker))
    await k.apply_rollout(rollout("web", replicas=2, strategy=STEPS))
    await healthy_on(k, "web", 1)
    await k.set_image("web", "app:v2")
    return await _analysis_job(k), marker


async def test_a_job_metric_runs_as_a_job_in_the_rollouts_namespace(
    kube_: Kube, operator: Operator, tmp_path: Path
) -> None:
    k = kube_
    job, marker = await _start(k, tmp_path)
    name = job["metadata"]["name"]
    assert job["metadata"]["namespace"] == k.namespace
    assert job["metadata"]["labels"]["team"] == "checkout"
    pod = job["spec"]["template"]["spec"]
    # The template's service account, not the operator's; the template's image and command.
    assert pod["serviceAccountName"] == "smoke-runner"
    assert pod["containers"][0]["image"] == "busybox:1.36"
    assert job["spec"]["backoffLimit"] == 1
    await k.finish_job(name, "Complete")
    st = await eventually(
        lambda: k.status("web"),
        lambda s: s.get("phase") in ("Paused", "Aborted") and s.get("currentStepIndex") == 2,
        within=90,
        what="past the analysis step",
    )
    assert st["phase"] == "Paused" and st["analysis"]["smoke"]["phase"] == "Successful"
    assert not marker.exists()  # nothing ran inside the operator
    # The Job is deleted once measured; the measurement names it.
    await eventually(
        lambda: k.client.get_or_none(kube.JOBS, name, namespace=k.namespace),
        lambda j: j is None,
        within=30,
        what="the Job deleted",
    )
    (run,) = [
        r
        for r in operator.analysis.store.runs(f"{k.namespace}/web")
        if "smoke" in r.get("results", {})
    ]
    (measured,) = run["results"]["smoke"]["measurements"]
    assert measured["metadata"] == {"job-name": name, "job-namespace": k.namespace}


async def test_a_failed_job_fails_the_analysis(
    kube_: Kube, operator: Operator, tmp_path: Path
) -> None:
    k = kube_
    job, marker = await _start(k, tmp_path)
    await k.finish_job(job["metadata"]["name"], "Failed", "BackoffLimitExceeded")
    st = await phase_is(k, "web", "Aborted", within=90)
    assert st["analysis"]["smoke"]["phase"] == "Failed"
    assert "BackoffLimitExceeded" in st["message"] or "smoke" in st["message"]
    assert not marker.exists()


async def test_a_job_left_by_an_earlier_operator_is_deleted(kube_: Kube, tmp_path: Path) -> None:
    """The operator died mid-measurement: its Job has no one to read it (the run measures
    again when it resumes), so the next operator deletes it."""
    k = kube_
    body = job_template(tmp_path / "x")["spec"]["metrics"][0]["provider"]["job"]
    leftover = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "web-2-leftover", "labels": {ROLLOUT_LABEL: "web"}},
        "spec": body["spec"],
    }
    unrelated = {**leftover, "metadata": {"name": "nightly-report"}}
    await k.create(kube.JOBS, leftover)
    await k.create(kube.JOBS, unrelated)
    async with helper_operator(k):
        await eventually(
            lambda: k.client.get_or_none(kube.JOBS, "web-2-leftover", namespace=k.namespace),
            lambda j: j is None,
            within=30,
            what="the leftover Job deleted",
        )
    assert await k.client.get_or_none(kube.JOBS, "nightly-report", namespace=k.namespace)
