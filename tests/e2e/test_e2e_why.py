"""Why a rollout is stuck, shown where the user looks (``get``, ``status -o json``, the
events) rather than only in serve's stderr: a misspelt command, a process that exits at
once, a readiness probe that never passes. A crash loop degrades the rollout in seconds,
not after progressDeadlineSeconds (600 s by default)."""

from __future__ import annotations

import signal
import socket
import sys
import threading
import time
from pathlib import Path

import pytest
from e2e_helpers import JSON, MARK_VAR, wait_until
from e2e_serve import Serve
from e2e_specs import example_rollout, with_version, write_rollout

pytestmark = pytest.mark.slow


def _rollout(serve: Serve, tmp_path: Path, name: str, command: list[str], **spec: object) -> Path:
    doc = example_rollout("rollingUpdate", name=name, version="v1", mark=serve.mark, replicas=1)
    doc["spec"]["template"]["command"] = command
    doc["spec"].update(spec)
    return write_rollout(tmp_path / f"{name}.yaml", doc)


def _events(serve: Serve, name: str) -> list[JSON]:
    doc = serve.cli("get", name, "-o", "json", check=True).json
    events: list[JSON] = doc["events"]
    return events


def test_why_a_revision_fails_is_shown_and_a_crash_loop_degrades_in_seconds(
    serve: Serve, tmp_path: Path
) -> None:
    """Three rollouts side by side on one server: a misspelt command, a process that exits
    at once, a readiness probe that never passes."""
    typo = _rollout(serve, tmp_path, "typo", ["pythn3", "-m", "http.server", "$(PORT)"])
    script = "import sys; print('MODEL_PATH is not set', file=sys.stderr); sys.exit(3)"
    quits = _rollout(serve, tmp_path, "quits", [sys.executable, "-c", script])
    unready = _rollout(
        serve,
        tmp_path,
        "unready",
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "$(PORT)"],
        progressDeadlineSeconds=4,
    )
    started = time.monotonic()
    for spec in (typo, quits, unready):
        assert serve.apply(spec).code == 0

    # The misspelt command: Degraded within seconds (the crash-loop threshold), not after
    # the 600 s default deadline, with the reason in the message, status, events and get.
    doc = serve.wait_phase("typo", "Degraded", within=30)
    assert time.monotonic() - started < 30
    assert "crash-looping" in doc["message"]
    assert "cannot execute 'pythn3'" in doc["message"]
    seen = serve.status("typo")["revisionStates"]["1"]
    assert seen["restarts"] >= 3
    assert "cannot execute 'pythn3'" in seen["lastFailure"]
    reasons = {e["reason"]: e["message"] for e in _events(serve, "typo")}
    assert "cannot execute 'pythn3'" in reasons["ReplicaFailed"]
    assert "crash-looping" in reasons["RolloutDegraded"]
    shown = serve.cli("get", "typo", check=True).stdout
    assert "last failure" in shown and "cannot execute 'pythn3'" in shown
    # apply --wait of the same spec ends at once with exit 1 and the reason.
    waited = serve.apply(typo, "--wait", "--timeout", "20")
    assert waited.code == 1 and "crash-looping" in waited.stdout, str(waited)

    # Exits at once: its exit code and the last lines it wrote.
    doc = serve.wait_phase("quits", "Degraded", within=30)
    assert "exited with code 3: MODEL_PATH is not set" in doc["message"]
    seen = serve.status("quits")["revisionStates"]["1"]
    assert seen["lastFailure"] == "exited with code 3: MODEL_PATH is not set"

    # The probe never passes: no crash, so the deadline decides, and names the probe.
    doc = serve.wait_phase("unready", "Degraded", within=30)
    assert "progressDeadlineSeconds" in doc["message"]
    assert "readiness probe failed" in doc["message"]
    seen = serve.status("unready")["revisionStates"]["1"]
    assert seen["restarts"] == 0 and "readiness probe failed" in seen["notReady"]
    assert "ReplicaUnhealthy" in {e["reason"] for e in _events(serve, "unready")}


def test_a_service_port_in_use_counts_against_the_deadline(serve: Serve, tmp_path: Path) -> None:
    """The bind error was shown but the phase stayed Progressing forever and `apply --wait`
    waited 30 minutes. Now it is the phase's message and the deadline fires; once the port
    is free the rollout goes on by itself."""
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    port = squatter.getsockname()[1]
    doc = example_rollout("rollingUpdate", name="busy", version="v1", mark=serve.mark, replicas=1)
    doc["spec"]["service"]["port"] = port
    doc["spec"]["progressDeadlineSeconds"] = 3
    spec = write_rollout(tmp_path / "busy.yaml", doc)
    try:
        started = time.monotonic()
        waited = serve.apply(spec, "--wait", "--timeout", "60")
        assert waited.code == 1, str(waited)
        assert time.monotonic() - started < 45
        assert "Degraded" in waited.stdout and "progressDeadlineSeconds" in waited.stdout
        assert f"127.0.0.1:{port}" in waited.stdout and "in use" in waited.stdout
        status = serve.status("busy")
        assert status["phase"] == "Degraded" and "in use" in status["message"]
    finally:
        squatter.close()
    serve.wait_phase("busy", "Healthy", within=60)


def test_logs_show_replicas_output_and_follow_a_new_revision(serve: Serve, tmp_path: Path) -> None:
    v1 = example_rollout("rollingUpdate", name="talk", version="v1", mark=serve.mark, replicas=1)
    spec = write_rollout(tmp_path / "talk.yaml", v1)
    assert serve.apply(spec, "--wait", "--timeout", "60").code == 0
    shown = serve.cli("logs", "talk", check=True).stdout
    assert "starting replica talk-1-" in shown and "app v1" in shown

    follower = serve.cli_popen("logs", "talk", "-f")
    lines: list[str] = []
    assert follower.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(follower.stdout or ()), daemon=True)
    reader.start()
    try:
        assert serve.apply(write_rollout(spec, with_version(v1, "v2"))).code == 0
        serve.wait_phase("talk", "Healthy", stableRevision=2, within=60)
        only_v2 = serve.cli("logs", "talk", "--revision", "2", check=True).stdout
        assert "app v2" in only_v2 and "app v1" not in only_v2
        # -f printed v1's tail, then v2's replica as it started, each line labelled.
        wait_until(
            lambda: any(line.startswith("[2/talk-2-") and "app v2" in line for line in lines),
            within=20,
            what="logs -f to show revision 2's replica",
        )
    finally:
        follower.send_signal(signal.SIGINT)
        follower.wait(timeout=20)
        reader.join(5)
    assert follower.returncode == 130
    assert any(line.startswith("[1/talk-1-") for line in lines)


def test_a_failed_hook_names_its_log(serve: Serve, tmp_path: Path) -> None:
    failing = [sys.executable, "-c", "print('migration 7 failed: column exists'); exit(4)"]
    doc = example_rollout("recreate", name="migr", version="v1", mark=serve.mark, replicas=1)
    doc["spec"]["strategy"]["recreate"] = {
        "mid": {"command": failing, "failurePolicy": "Abort", "env": {MARK_VAR: serve.mark}}
    }
    spec = write_rollout(tmp_path / "migr.yaml", doc)
    assert serve.apply(spec, "--wait", "--timeout", "60").code == 0
    assert serve.apply(write_rollout(spec, with_version(doc, "v2")), "--wait").code == 1
    message = serve.api_status("migr")["message"]
    assert "mid hook failed" in message and "log: " in message
    log_path = Path(message.split("log: ", 1)[1].split(" ", 1)[0])
    assert "migration 7 failed" in log_path.read_text()
    shown = serve.cli("logs", "migr", check=True).stdout
    assert "[hook migr_2_mid_" in shown and "migration 7 failed: column exists" in shown


def test_history_shows_what_changed_with_secrets_masked(serve: Serve, tmp_path: Path) -> None:
    env = {"MODEL": "m1", "API_TOKEN": "s3cret-one", "DB_PASSWORD": "hunter2"}
    v1 = example_rollout("canary", name="hist", version="v1", mark=serve.mark, env=env)
    spec = write_rollout(tmp_path / "hist.yaml", v1)
    assert serve.apply(spec).code == 0
    v2 = with_version(v1, "v2")
    v2["spec"]["template"]["env"].update(MODEL="m2", API_TOKEN="s3cret-two")
    v2["spec"]["template"]["command"] += ["--api-key", "k3y-value"]
    assert serve.apply(write_rollout(spec, v2)).code == 0

    table = serve.cli("history", "hist", check=True).stdout
    assert "env.MODEL: m1 → m2" in table
    assert "env.API_TOKEN: changed (value hidden)" in table
    assert "--version v1" in table and "--version v2 --api-key ***" in table
    assert "DB_PASSWORD" not in table  # unchanged: not a change
    raw = serve.cli("history", "hist", "-o", "json", check=True).stdout
    for secret in ("s3cret", "hunter2", "k3y-value"):
        assert secret not in table and secret not in raw
    revisions = serve.history("hist")
    assert revisions[1]["template"]["env"]["API_TOKEN"] == "***"
    assert {c["field"] for c in revisions[1]["changes"]} == {
        "command",
        "env.API_TOKEN",
        "env.MODEL",
    }
