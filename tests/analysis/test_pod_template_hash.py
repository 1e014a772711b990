"""``valueFrom.podTemplateHashValue`` is the revision's pod-template hash where the platform
has one (Kubernetes: the ReplicaSet's ``rollouts-pod-template-hash``), as Argo Rollouts
passes it; the local platform has none and passes the revision number (issue 13, item 6).
The test cluster runs the same through the operator (tests/kubernetes/test_argo_meaning.py)."""

from __future__ import annotations

from changeover.analysis import templates
from changeover.spec import analysis as spec
from changeover.spec import models

ROLLOUT = models.Rollout.model_validate(
    {
        "metadata": {"name": "web"},
        "spec": {
            "template": {"spec": {"containers": [{"name": "app", "image": "app:1"}]}},
            "strategy": {"canary": {}},
        },
    }
)
TEMPLATE = spec.AnalysisTemplate.model_validate(
    {
        "metadata": {"name": "rate"},
        "spec": {
            "args": [{"name": "stable-hash"}, {"name": "canary-hash"}],
            "metrics": [
                {
                    "name": "rate",
                    "provider": {
                        "prometheus": {
                            "address": "http://127.0.0.1:9",
                            "query": 'x{rollouts_pod_template_hash="{{args.canary-hash}}"}'
                            ' / x{rollouts_pod_template_hash="{{args.stable-hash}}"}',
                        }
                    },
                }
            ],
        },
    }
)
ANALYSIS = spec.RolloutAnalysis.model_validate(
    {
        "templates": [{"templateName": "rate"}],
        "args": [
            {"name": "stable-hash", "valueFrom": {"podTemplateHashValue": "Stable"}},
            {"name": "canary-hash", "valueFrom": {"podTemplateHashValue": "Latest"}},
        ],
    }
)


def test_stable_and_latest_are_the_replicasets_hashes() -> None:
    resolved = templates.resolve(
        ANALYSIS,
        {"rate": TEMPLATE},
        rollout=ROLLOUT,
        stable=1,
        latest=2,
        hashes={1: "6f8d9c7b5x", 2: "2xgcpw7j9l"},
    )
    assert resolved.args == {"stable-hash": "6f8d9c7b5x", "canary-hash": "2xgcpw7j9l"}
    (metric,) = resolved.metrics
    assert 'rollouts_pod_template_hash="2xgcpw7j9l"' in metric.config["query"]


def test_without_hashes_the_revision_number_stands_in() -> None:
    resolved = templates.resolve(ANALYSIS, {"rate": TEMPLATE}, rollout=ROLLOUT, stable=1, latest=2)
    assert resolved.args == {"stable-hash": "1", "canary-hash": "2"}
