"""``changeover demo``: it runs end to end, loses no request, and leaves no process behind.

The slow tests run the real thing (``changeover demo --fast``: a private ``serve``, real
replicas of examples/app.py, the builtin router, steady load) as a subprocess. Every process
it causes inherits ``DEMO_TEST_MARKER`` from the environment, so "nothing survives" is
checked by looking for that marker in every process on the machine, wherever the process
was reparented to. The fast tests cover the pure parts: specs, step log, views.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest
import yaml
from rich.console import Console

from changeover import loadgen, validation
from changeover.demo import model_act, rollout_docs, view

REPO = Path(__file__).resolve().parents[1]
FINAL = re.compile(r"demo finished in \S+: ([\d,]+) requests, ([\d,]+) failed, served by (.+)")


# --- the real demo ---------------------------------------------------------------------


def marked(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            ours = proc.environ().get("DEMO_TEST_MARKER") == marker
            if ours and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


def start_demo(marker: str, tmp_path: Path) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "DEMO_TEST_MARKER": marker,
        # Replicas get only a base environment: pass the marker on (docs: the local platform).
        "CHANGEOVER_PASS_ENV": "DEMO_TEST_MARKER",
        # The demo must not need (or touch) the user's config: point it somewhere empty.
        "CHANGEOVER_CONFIG": str(tmp_path / "user-config" / "servers.json"),
        "COLUMNS": "120",
    }
    # SIGINT at its default here, as from a terminal, even when the suite was started
    # with it ignored: tests/conftest.py (pytest_configure) sees to that.
    return subprocess.Popen(
        [sys.executable, "-m", "changeover.cli.main", "demo", "--fast"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def assert_nothing_survives(marker: str) -> None:
    deadline = time.monotonic() + 10
    while (left := marked(marker)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, [(p.pid, p.cmdline()) for p in left]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_demo_runs_both_acts_loses_nothing_and_cleans_up(tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    proc = start_demo(marker, tmp_path)
    most = 0
    try:
        while proc.poll() is None:
            most = max(most, len(marked(marker)))
            time.sleep(0.5)
        out = proc.stdout.read() if proc.stdout else ""
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    # serve and its replicas (4 for the canary, then more for the blue-green) carried the
    # marker while the demo ran: the check below is looking at the right processes.
    assert most >= 5, out
    match = FINAL.search(out)
    assert match, out
    total, failed, served = match.groups()
    assert int(total.replace(",", "")) > 1000
    # the only failures are the bad version's, before its analysis aborted it
    bad = re.search(r"([\d,]+) of the failed requests were answered by v3", out)
    assert bad and bad.group(1) == failed and int(failed.replace(",", "")) > 0, out
    assert served.strip() == "v1 and v2 and v3"
    assert "✔ v2 promoted by analysis" in out and "✖ v3 aborted by analysis" in out
    assert "all traffic is back on v2" in out
    # the model act: a shadow compared, a canary judged on TTFT, a drifting shadow stopped
    assert "✔ v2 promoted: answers-match = 1 Successful; ttft-p95 = " in out, out
    assert "✖ v3 stopped by analysis" in out and "answers-match = " in out
    assert "shadow revision 3 vs revision 2:" in out and "body: similarity" in out
    assert "Requests per revision" in out and "Time per step" in out
    assert "$ changeover promote demo-canary" in out
    assert "not one request reached the old side after the switch" in out
    assert_nothing_survives(marker)
    assert not (tmp_path / "user-config").exists(), "the demo wrote to the user's config"


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_ctrl_c_mid_canary_cleans_up_every_process(tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    proc = start_demo(marker, tmp_path)
    try:
        deadline = time.monotonic() + 60
        # Wait until serve and the canary's replicas run, then interrupt.
        while len(marked(marker)) < 5 and time.monotonic() < deadline:
            assert proc.poll() is None
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out
    assert "interrupted: cleaning up" in out
    assert "stopped serve" in out
    assert_nothing_survives(marker)


# --- the pure parts --------------------------------------------------------------------


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_demo_specs_pass_validation(version: str) -> None:
    root = rollout_docs.repo_root()
    docs = [
        rollout_docs.canary(root=root, version=version, port=18080, pause_seconds=12),
        rollout_docs.blue_green(
            root=root, version=version, port=18081, preview_port=18091, scale_down_seconds=60
        ),
        model_act.spec(root=root, version=version, port=18082, drift=0.5, interval=1.0),
    ]
    parsed = validation.read_text(yaml.safe_dump_all(docs), source="demo.yaml")
    assert [r.name for r in parsed.rollouts] == [
        rollout_docs.CANARY,
        rollout_docs.BLUE_GREEN,
        model_act.MODEL,
    ]


def test_repo_root_holds_the_example_app() -> None:
    assert (rollout_docs.repo_root() / "examples" / "app.py").is_file()


def test_steps_are_described_for_people() -> None:
    steps = rollout_docs.canary_steps(12)
    assert [rollout_docs.describe_step(s, short=True) for s in steps] == [
        "20%",
        "pause 12s",
        "50%",
        "pause {}",
        "80%",
        "pause 12s",
    ]
    assert rollout_docs.describe_step({"pause": {}}) == "pause {} until promote"


def report(timeline: list[dict[str, int]], failures: int = 0) -> loadgen.LoadReport:
    by_revision: dict[str, int] = {}
    for second in timeline:
        for rev, n in second.items():
            by_revision[rev] = by_revision.get(rev, 0) + n
    total = sum(by_revision.values())
    return loadgen.LoadReport(
        total=total,
        ok=total - failures,
        failures=failures,
        failure_examples=[],
        status_counts={200: total},
        by_revision=by_revision,
        failures_by_revision={},
        timeline=timeline,
        failure_timeline=[0] * len(timeline),
        latency_p50_ms=5.0,
        latency_p99_ms=9.0,
        duration_s=float(len(timeline)),
        stopped_by="running",
    )


def test_step_log_counts_requests_per_segment_from_report_differences() -> None:
    log = view.StepLog()
    versions = {"1": "v1", "2": "v2"}
    first = report([{"1": 100}])
    assert log.enter(act="canary", label="v1", now=0.0, report=first, versions=versions)
    assert not log.enter(act="canary", label="v1", now=1.0, report=first, versions=versions)
    second = report([{"1": 100}, {"1": 80, "2": 20}])
    log.enter(act="canary", label="20%", now=2.0, report=second, versions=versions)
    log.close(5.0, report([{"1": 100}, {"1": 80, "2": 20}, {"1": 50, "2": 50}], failures=1))
    assert [(s.label, s.seconds, s.counts, s.failures) for s in log.segments] == [
        ("v1", 2.0, {"1": 80, "2": 20}, 0),
        ("20%", 3.0, {"1": 50, "2": 50}, 1),
    ]
    assert log.current is None


def test_flip_lines_show_the_seconds_around_a_switch() -> None:
    rep = report([{"1": 150}, {"1": 150}, {"1": 42, "2": 108}, {"2": 150}, {"2": 90}])
    assert view.flip_lines(rep, {"1": "v1", "2": "v2"}, 2) == (
        "t=1s v1 150 | t=2s v1 42 v2 108 | t=3s v2 150"
    )


def test_sparkline_and_traffic_line() -> None:
    assert view.sparkline([0.0, 0.5, 1.0]) == " ▄█"
    status = {"weights": {"1": 80, "2": 20}, "replicas": {"1": 4, "2": 1}}
    assert view.traffic_line(status, {"1": "v1", "2": "v2"}) == (
        "traffic v1 80% · v2 20%   ready v1 4 · v2 1"
    )


def test_live_view_and_summaries_render() -> None:
    rep = report([{"1": 150}, {"1": 120, "2": 30}, {"1": 75, "2": 75}, {"1": 10}])
    versions = {"1": "v1", "2": "v2"}
    status = {
        "name": rollout_docs.CANARY,
        "phase": "Paused",
        "strategy": "canary",
        "revision": 2,
        "stableRevision": 1,
        "canaryRevision": 2,
        "currentStepIndex": 3,
        "totalSteps": 6,
        "weights": {"1": 50, "2": 50},
        "replicas": {"1": 4, "2": 2},
    }
    console = Console(width=120, record=True)
    console.print(
        view.live_view(
            title="canary",
            elapsed=75,
            status=status,
            events=[{"time": 0, "reason": "RolloutPaused", "message": "paused"}],
            report=rep,
            versions=versions,
            url="http://127.0.0.1:8080",
        )
    )
    log = view.StepLog()
    log.enter(act="canary", label="step 4/6", now=0.0, report=None, versions=versions)
    log.close(3.0, rep)
    console.print(
        view.revisions_summary([view.ActResult("canary", rollout_docs.CANARY, rep, versions)])
    )
    console.print(view.steps_summary(log.segments))
    text = console.export_text()
    assert "changeover demo  ·  canary  ·  01:15" in text
    assert "step 4/6" in text and "RolloutPaused" in text
    assert "Requests per revision" in text and "Time per step" in text
    assert "v1 355  v2 105" in text
