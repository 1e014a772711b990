"""An argument read from a Kubernetes Secret (``valueFrom.secretKeyRef``, as Argo Rollouts
templates write it) on the local platform, which has no Secrets: the run cannot start and
says which Secret and what to do, instead of running with the argument missing."""

from __future__ import annotations

from pathlib import Path

from analysis_helpers import TemplateRunner

TEMPLATE = {
    "apiVersion": "changeover.dev/v1alpha1",
    "kind": "AnalysisTemplate",
    "metadata": {"name": "with-token"},
    "spec": {
        "args": [{"name": "token", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "api"}}}],
        "metrics": [
            {
                "name": "ok",
                "provider": {
                    "web": {
                        "url": "http://127.0.0.1:9/health",
                        "headers": [{"key": "Authorization", "value": "{{args.token}}"}],
                    }
                },
            }
        ],
    },
}


async def test_a_secret_argument_on_the_local_platform_is_refused_clearly(tmp_path: Path) -> None:
    t = TemplateRunner(tmp_path / "analysis.db")
    try:
        t.start("web-2-1-step1", t.put(TEMPLATE), {})
        seen = t.seen("web-2-1-step1")
        assert seen.phase == "Error"
        assert "secretKeyRef creds/api" in seen.message
        assert "local platform" in seen.message
    finally:
        await t.close()
