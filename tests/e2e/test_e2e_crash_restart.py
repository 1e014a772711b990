"""``kill -9`` of ``changeover serve`` mid-canary, then a restart on the same state dir.

Given a canary paused at a setWeight step with load running, when serve is SIGKILLed (no
cleanup: its replicas keep running, orphaned) and started again on the same state dir, then
it re-adopts the very same replica processes of both revisions, restores the same weights,
and the rollout goes on to the same end state: promote → Healthy on v2 at 100%, with no
request lost once the restarted router is up. (While serve is dead the router is down too:
requests in that window fail, as expected, and are not counted.)
"""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest
from e2e_helpers import (
    BackgroundLoad,
    Serve,
    describe,
    example_rollout,
    http_get,
    wait_until,
    with_version,
    write_rollout,
)

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

    # Load across the crash and the restart window: failures here are expected.
    with BackgroundLoad(endpoint, rate=250) as across:
        across.wait_for("2", 50)
        serve.kill9()
        # The replicas outlive serve: they are supervised, not children that die with it.
        assert _alive(pids_v1 + pids_v2)
        serve.start()
        wait_until(lambda: _answers(endpoint), within=30, what="the restarted router to answer")
        window = across.stop()
    assert window.ok > 0, describe(window)

    # Same processes, same weights, same step: nothing was replaced or reset.
    after = serve.status(NAME)
    assert serve.replica_pids(NAME, 1) == pids_v1
    assert serve.replica_pids(NAME, 2) == pids_v2
    assert _alive(pids_v1 + pids_v2)
    for field in ("phase", "stableRevision", "canaryRevision", "currentStepIndex", "weights"):
        assert after[field] == before[field], (field, before, after)
    assert after["replicas"] == before["replicas"]

    # From here on, with the restarted router up, not one request may fail.
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


def _answers(endpoint: str) -> bool:
    try:
        return http_get(endpoint, timeout=2).status == 200
    except OSError:
        return False
