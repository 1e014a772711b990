"""A reverted commit, re-applied, is a rollback (as in Argo Rollouts and Kubernetes).

Given v1 Healthy and v2 in flight as a canary (paused, with a background analysis running),
when the user applies v1's file again through the CLI (a GitOps revert), then the rollout is
back on revision 1 at once: Healthy, all traffic on v1, no new revision in the history and
no step or analysis run against v1.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from e2e_helpers import http_get
from e2e_serve import Serve
from e2e_specs import example_rollout, with_version, write_rollout

pytestmark = pytest.mark.slow

STEPS = [{"setWeight": 50}, {"pause": {}}]
BACKGROUND = {
    "startingStep": 0,
    "metrics": [
        {
            "name": "restarts",
            "interval": "1s",
            "successCondition": "result < 1",
            "provider": {"builtin": {"metric": "restarts", "revision": "canary"}},
        }
    ],
}


def test_reapplying_the_stable_file_mid_canary_goes_back_at_once(
    serve: Serve, tmp_path: Path
) -> None:
    name = "revert"
    v1 = example_rollout(
        "canary",
        name=name,
        version="v1",
        mark=serve.mark,
        strategy_patch={"steps": STEPS, "analysis": BACKGROUND},
    )
    v1_file = write_rollout(tmp_path / "v1.yaml", v1)
    v2_file = write_rollout(tmp_path / "v2.yaml", with_version(v1, "v2"))
    assert serve.apply(v1_file).code == 0
    serve.wait_phase(name, "Healthy", stableRevision=1)
    assert serve.apply(v2_file).code == 0
    paused = serve.wait_phase(name, "Paused", canaryRevision=2)
    runs_before = len(paused.get("analysisRuns") or [])

    reverted = serve.apply(v1_file)
    assert reverted.code == 0, str(reverted)
    final = serve.wait_phase(name, "Healthy", stableRevision=1, within=30)
    assert final["revision"] == 1 and final["weights"] == {"1": 100}
    assert final["canaryRevision"] is None
    assert [h["revision"] for h in serve.history(name)] == [1, 2]
    assert len(final.get("analysisRuns") or []) == runs_before  # nothing ran against v1
    versions = {http_get(final["endpoint"]).headers.get("x-app-version") for _ in range(20)}
    assert versions == {"v1"}
