"""The Job the operator makes for a ``job`` measurement (Argo's ``job: {metadata, spec}``)
and how it reads the Job's outcome; the cluster test is tests/kubernetes/test_analysis_job.py."""

from __future__ import annotations

import pytest

from changeover.analysis.providers import base
from changeover.operator import analysis_job

ARGO_JOB = {
    "metadata": {"labels": {"team": "checkout"}, "annotations": {"owner": "qa"}},
    "spec": {
        "backoffLimit": 1,
        "template": {
            "spec": {
                "serviceAccountName": "smoke-runner",
                "containers": [{"name": "smoke", "image": "busybox:1.36", "command": ["true"]}],
            }
        },
    },
}


def test_the_job_is_the_templates_job_in_the_rollouts_namespace() -> None:
    body = analysis_job.job_body(ARGO_JOB, name="web-2-abc", namespace="shop", rollout="web")
    assert body["metadata"]["namespace"] == "shop"
    assert body["metadata"]["labels"] == {"team": "checkout", analysis_job.ROLLOUT_LABEL: "web"}
    assert body["metadata"]["annotations"] == {"owner": "qa"}
    pod = body["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "smoke-runner"
    assert pod["restartPolicy"] == "Never"
    assert body["spec"]["backoffLimit"] == 1
    assert "restartPolicy" not in ARGO_JOB["spec"]["template"]["spec"]  # not changed in place


def test_the_local_command_shape_has_nothing_to_run_on_kubernetes() -> None:
    with pytest.raises(base.ProviderError, match=r"spec\.template\.spec\.containers"):
        analysis_job.job_body({"command": ["true"]}, name="n", namespace="ns", rollout="web")


def test_names_are_fresh_and_valid() -> None:
    names = {analysis_job.job_name("Web_App.v2", 3, 1.0) for _ in range(5)}
    assert len(names) == 5
    for name in names:
        assert name.startswith("web-app-v2-3-") and len(name) <= 63


@pytest.mark.parametrize(
    ("conditions", "expected"),
    [
        ([], None),
        ([{"type": "Complete", "status": "True"}], ("Successful", "completed")),
        (
            [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded", "message": "late"}],
            ("Failed", "failed: DeadlineExceeded: late"),
        ),
        ([{"type": "Failed", "status": "False"}], None),
    ],
)
def test_outcome_follows_the_jobs_conditions(
    conditions: list[dict[str, str]], expected: tuple[str, str] | None
) -> None:
    assert analysis_job.outcome({"status": {"conditions": conditions}}) == expected
