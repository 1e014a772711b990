"""Crash suite: ``kill -9`` of serve at random moments of rollouts, against uninterrupted twins.

Given a strategy's v1 → v2 rollout under steady load, run once uninterrupted (the twin) and
once with serve SIGKILLed at random moments (each time started again at once on the same
state dir), then both end in the same state (phase, revisions, weights, step, replicas,
history), no process of the crashed run is left over beyond the twin's (one router
process, the desired replicas), and not one request failed, for every strategy but
recreate, whose gap between stopping v1 and v2 being ready is documented.

``make test`` runs a bounded count: canary and blue-green, 2 kills each
(``CHANGEOVER_CRASH_KILLS``); ``make crash-long`` runs every strategy with 25 kills each
(``CHANGEOVER_CRASH_ALL=1``), 100 in all. The seed is printed so a failure can be replayed
with ``CHANGEOVER_CRASH_SEED``.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from e2e_load import BackgroundLoad, describe
from e2e_serve import Serve, marked_processes
from e2e_specs import example_rollout, with_version, write_rollout

pytestmark = pytest.mark.slow

KILLS = int(os.environ.get("CHANGEOVER_CRASH_KILLS", "2"))
SEED = int(os.environ.get("CHANGEOVER_CRASH_SEED", str(int(time.time()))))

STRATEGIES: dict[str, dict[str, Any]] = {
    "canary": {
        "steps": [{"setWeight": 30}, {"pause": {"duration": "1s"}}, {"setWeight": 60}],
        "maxSurge": "50%",
        # The old stable stays up this long after promotion (default 30 s): within the test.
        "scaleDownDelaySeconds": "1s",
    },
    "blueGreen": {
        "autoPromotionEnabled": True,
        "autoPromotionSeconds": "1s",
        "scaleDownDelaySeconds": "1s",
    },
    "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    "recreate": {},
}
RUN = list(STRATEGIES) if os.environ.get("CHANGEOVER_CRASH_ALL") else ["canary", "blueGreen"]
FIELDS = ("phase", "stableRevision", "canaryRevision", "currentStepIndex", "weights", "replicas")


@pytest.fixture
def twins(tmp_path: Path) -> Iterator[tuple[Serve, Serve]]:
    pair = (Serve(tmp_path / "twin"), Serve(tmp_path / "crashed"))
    try:
        for s in pair:
            s.root.mkdir(parents=True)
            s.start()
        yield pair
    finally:
        for s in pair:
            s.cleanup()
        alive = [p.pid for s in pair for p in marked_processes(s.mark)]
        assert not alive, f"processes of this test outlived it: {alive}"


def _end_state(serve: Serve, name: str) -> dict[str, Any]:
    status = serve.status(name)
    history = [(h["revision"], h["stable"], h["current"]) for h in serve.history(name)]
    # The replica processes the platform keeps per revision (terminating ones included).
    revisions = serve.platform_state().get("rollouts", {}).get(name, {}).get("revisions", {})
    processes = {rev: len(r.get("replicas", [])) for rev, r in revisions.items()}
    return {**{f: status.get(f) for f in FIELDS}, "history": history, "processes": processes}


def _settled(serve: Serve, name: str, like: dict[str, Any] | None = None) -> dict[str, Any]:
    """The end state once it stops changing (or equals ``like``), within 30 s."""
    deadline = time.monotonic() + 30
    last = _end_state(serve, name)
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = _end_state(serve, name)
        if now == like or (like is None and now == last):
            return now
        last = now
    return last


def _roll(serve: Serve, tmp_path: Path, strategy: str, rng: random.Random | None) -> Any:
    """v1 Healthy, then v2 under load to Healthy; with ``rng``, serve is SIGKILLed and
    started again at random moments along the way. The load report."""
    name = f"crash-{strategy.lower()}"
    v1 = example_rollout(
        strategy,
        name=name,
        version="v1",
        mark=serve.mark,
        replicas=2,
        strategy_patch=STRATEGIES[strategy],
    )
    spec = write_rollout(tmp_path / f"{serve.root.name}-{name}.yaml", v1)
    assert serve.apply(spec).code == 0
    serve.wait_phase(name, "Healthy", stableRevision=1)
    endpoint = serve.status(name)["endpoint"]
    with BackgroundLoad(endpoint, rate=150) as load:
        load.wait_for("1", 30)
        write_rollout(spec, with_version(v1, "v2"))
        assert serve.apply(spec).code == 0
        for _ in range(KILLS if rng is not None else 0):
            time.sleep(rng.uniform(0.1, 2.0) if rng is not None else 0)
            serve.kill9()
            serve.start()
        serve.wait_phase(name, "Healthy", stableRevision=2, within=120)
        load.wait_for("2", 100)
        report = load.stop()
    return name, report


@pytest.mark.parametrize("strategy", RUN)
def test_kill_9_at_random_moments_ends_as_the_uninterrupted_twin(
    twins: tuple[Serve, Serve], tmp_path: Path, strategy: str
) -> None:
    twin, crashed = twins
    seed = SEED + list(STRATEGIES).index(strategy)
    print(f"crash suite: {strategy}, {KILLS} kills, CHANGEOVER_CRASH_SEED={seed}")
    name, twin_report = _roll(twin, tmp_path, strategy, None)
    _, report = _roll(crashed, tmp_path, strategy, random.Random(seed))

    # Scale-downs after Healthy take their time (drain, grace): both settle, then compare.
    expected = _settled(twin, name)
    assert _settled(crashed, name, like=expected) == expected
    if strategy != "recreate":  # recreate's gap (v1 stopped before v2 is ready) is documented
        assert twin_report.failures == 0, describe(twin_report)
        assert report.failures == 0, describe(report)

    # No orphans: one router process, and the replicas the status shows, as in the twin.
    for serve in (twin, crashed):
        routers = [d for d in serve.router_processes() if psutil.pid_exists(d["pid"])]
        assert len(routers) == 1, routers
    assert len(crashed.replica_pids(name)) == len(twin.replica_pids(name)) == 2
    live = {p.pid for p in marked_processes(crashed.mark)}
    wanted = {*crashed.replica_pids(name), crashed.router_pid()}
    assert crashed.proc is not None
    assert live - {crashed.proc.pid} == wanted, (live, wanted)
