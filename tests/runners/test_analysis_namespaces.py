"""On Kubernetes two namespaces may each hold a rollout "web" and a template "error-rate":
the analysis store keeps their runs apart and a run resolves its own namespace's template."""

from __future__ import annotations

from pathlib import Path

from changeover.analysis.run import AnalysisRun
from changeover.clock import SystemClock
from changeover.runners.analysis_runner import AnalysisRunner
from changeover.runners.analysis_store import AnalysisStore, scoped


def template(limit: str) -> dict[str, object]:
    return {
        "apiVersion": "changeover.dev/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": "error-rate"},
        "spec": {
            "metrics": [
                {
                    "name": "error-rate",
                    "successCondition": f"result < {limit}",
                    "provider": {"builtin": {"metric": "error-rate"}},
                }
            ]
        },
    }


def run(run_id: str, namespace: str) -> dict[str, object]:
    return AnalysisRun(
        id=run_id,
        rollout="web",
        namespace=namespace,
        kind="step",
        revision=2,
        stable_revision=1,
        started_at=1.0,
    ).to_json()


def test_runs_and_templates_stay_in_their_namespace(tmp_path: Path) -> None:
    store = AnalysisStore(tmp_path / "analysis.db")
    try:
        store.put_run(run("web-2-1-step1", "default"), completed=False)
        store.put_run(run("prod/web-2-1-step1", "prod"), completed=False)
        assert [r["id"] for r in store.runs("web")] == ["web-2-1-step1"]
        assert [r["id"] for r in store.runs(scoped("web", "prod"))] == ["prod/web-2-1-step1"]

        store.put_template("error-rate", template("0.05"), now=1.0)
        store.put_template(scoped("error-rate", "prod"), template("0.01"), now=1.0)
        runner = AnalysisRunner(store=store, clock=SystemClock())
        default, prod = runner._templates("default"), runner._templates("prod")
        assert list(default) == list(prod) == ["error-rate"]
        assert default["error-rate"].spec.metrics[0].success_condition == "result < 0.05"
        assert prod["error-rate"].spec.metrics[0].success_condition == "result < 0.01"
        assert runner._templates("staging") == {}
    finally:
        store.close()
