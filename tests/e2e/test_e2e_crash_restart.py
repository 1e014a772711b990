"""``kill -9`` of ``changeover serve`` mid-rollout, then a restart on the same state dir.

Given a canary paused at a setWeight step (or a blue-green with its preview up) under
steady load, when serve is SIGKILLed (no cleanup) and started again on the same state dir,
then not one request fails, before, during or after: the router runs in a process of its
own that keeps serving the last routing table while serve is gone; the new serve re-adopts
that very router process and the very same replica processes, restores nothing by guessing,
and the rollout goes on to the same end state.
"""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest
from e2e_load import BackgroundLoad, describe
from e2e_serve import Serve
from e2e_specs import example_rollout, with_version, write_rollout

pytestmark = pytest.mark.slow

NAME = "crash"


def _alive(pids: list[int]) -> bool:
    return all(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in pids)


def test_kill_9_mid_canary_then_restart_resumes_to_the_same_end_state(
    serve: Serve, tmp_path: Path
) -> None:
    v1 = example_rollout(
        "canary",
        name=NAME,
        version="v1",
        mark=serve.mark,
        replicas=2,
        strategy_patch={"steps": [{"setWeight": 40}, {"pause": {}}, {"setWeight": 80}]},
    )
    spec = write_rollout(tmp_path / "canary.yaml", v1)
    assert serve.apply(spec).code == 0
    serve.wait_phase(NAME, "Healthy", stableRevision=1)
    write_rollout(spec, with_version(v1, "v2"))
    assert serve.apply(spec).code == 0
    serve.wait_status(NAME, lambda d: d["phase"] == "Paused" and d["weights"] == {"1": 60, "2": 40})

    before = serve.status(NAME)
    pids_v1 = serve.replica_pids(NAME, 1)
    pids_v2 = serve.replica_pids(NAME, 2)
    assert len(pids_v1) == 2 and len(pids_v2) >= 1, serve.platform_state()
    assert _alive(pids_v1 + pids_v2)
    endpoint = before["endpoint"]

    router = serve.router_pid()

    # Load across the crash, the time serve is gone and the restart: nothing may fail.
    with BackgroundLoad(endpoint, rate=250) as across:
        across.wait_for("2", 50)
        serve.kill9()
        # Replicas and router outlive serve: they are not children that die with it.
        assert _alive([*pids_v1, *pids_v2, router])
        across.wait_for("2", 100)  # served by the router process alone
        serve.start()
        across.wait_for("2", 100)
        window = across.stop()
    assert window.failures == 0, describe(window)
    assert window.by_revision.get("1", 0) > window.by_revision.get("2", 0) > 0, describe(window)
    assert serve.router_pid() == router  # adopted, not restarted

    # Same processes, same weights, same step: nothing was replaced or reset.
    after = serve.status(NAME)
    assert serve.replica_pids(NAME, 1) == pids_v1
    assert serve.replica_pids(NAME, 2) == pids_v2
    assert _alive(pids_v1 + pids_v2)
    for field in ("phase", "stableRevision", "canaryRevision", "currentStepIndex", "weights"):
        assert after[field] == before[field], (field, before, after)
    assert after["replicas"] == before["replicas"]

    # The rollout goes on from where it was, still without a failed request.
    with BackgroundLoad(endpoint, rate=250) as load:
        load.wait_for("2", 100)
        assert serve.cli("promote", NAME).code == 0
        final = serve.wait_phase(NAME, "Healthy", stableRevision=2, within=60)
        load.wait_for("2", 300)
        report = load.stop()
    assert report.failures == 0, describe(report)
    assert report.rate_per_s >= 200, describe(report)
    assert final["canaryRevision"] is None
    assert serve.status(NAME)["weights"] == {"2": 100}
    # The re-adopted v2 replicas are the ones serving the end state.
    assert set(pids_v2) <= set(serve.replica_pids(NAME, 2))
