"""Manual operations through the real CLI against a real server, as an operator runs them:
abort, retry, undo, pause/resume, and ``apply --wait`` as a CI gate, with their exit codes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import JSON, Client, wait_until
from e2e_serve import Serve
from e2e_specs import example_rollout, with_version, write_rollout

pytestmark = pytest.mark.slow


def _deploy(
    serve: Serve, tmp_path: Path, name: str, steps: list[dict[str, Any]], **kwargs: Any
) -> tuple[Path, JSON]:
    """v1 Healthy; the spec file path and the v1 document."""
    v1 = example_rollout(
        "canary",
        name=name,
        version="v1",
        mark=serve.mark,
        replicas=2,
        strategy_patch={"steps": steps, "maxSurge": "50%"},
        **kwargs,
    )
    spec = write_rollout(tmp_path / f"{name}.yaml", v1)
    result = serve.apply(spec)
    assert result.code == 0, str(result)
    serve.wait_phase(name, "Healthy", stableRevision=1)
    return spec, v1


def _versions(url: str, count: int) -> list[tuple[str, str]]:
    """(revision header, body version) of ``count`` requests in a row."""
    with Client(url) as client:
        replies = [client.get("/") for _ in range(count)]
    bad = [(r.status, r.body[:200]) for r in replies if r.status != 200]
    assert not bad, bad[:5]
    return [(r.headers["x-changeover-revision"], r.json()["version"]) for r in replies]


def _promote_until_healthy(serve: Serve, name: str, revision: int, *, within: float = 60) -> JSON:
    def done() -> JSON | None:
        doc = serve.api_status(name)
        if doc["phase"] == "Healthy" and doc["stableRevision"] == revision:
            return doc
        pause = doc.get("pause") or {}
        if doc["phase"] == "Paused" and not doc["userPaused"] and pause.get("until") is None:
            assert serve.cli("promote", name).code == 0
        return None

    return wait_until(done, within=within, what=f"{name} Healthy on {revision}", interval=0.2)


def test_abort_retry_and_undo(serve: Serve, tmp_path: Path) -> None:
    name = "ops"
    spec, v1 = _deploy(serve, tmp_path, name, [{"setWeight": 50}, {"pause": {}}])
    write_rollout(spec, with_version(v1, "v2"))
    assert serve.apply(spec).code == 0
    paused = serve.wait_status(
        name, lambda d: d["phase"] == "Paused" and d["weights"] == {"1": 50, "2": 50}
    )
    url = paused["endpoint"]
    assert {rev for rev, _ in _versions(url, 20)} == {"1", "2"}

    # Abort: all traffic back on stable at once, the very next requests included.
    aborted = serve.cli("abort", name)
    assert aborted.code == 0, str(aborted)
    assert "Aborted" in aborted.stdout
    assert set(_versions(url, 200)) == {("1", "v1")}
    status = serve.status(name)
    assert status["phase"] == "Aborted"
    assert status["weights"] == {"1": 100}
    assert status["stableRevision"] == 1
    # Aborting twice, or an unknown rollout, fails with exit 1 and a message.
    again = serve.cli("abort", name)
    assert again.code == 1 and "already Aborted" in again.stderr, str(again)
    unknown = serve.cli("abort", "no-such-rollout")
    assert unknown.code == 1 and "no-such-rollout" in unknown.stderr, str(unknown)

    # Retry: the same revision starts over from the first step.
    retried = serve.cli("retry", name)
    assert retried.code == 0, str(retried)
    again_paused = serve.wait_status(
        name,
        lambda d: d["phase"] == "Paused" and d["weights"] == {"1": 50, "2": 50},
        what="the retried canary back at its pause",
    )
    assert again_paused["canaryRevision"] == 2
    assert again_paused["currentStepIndex"] == 1
    assert {rev for rev, _ in _versions(url, 20)} == {"1", "2"}
    assert serve.cli("retry", name).code == 1  # not Aborted any more: nothing to retry

    assert serve.cli("promote", name).code == 0
    serve.wait_phase(name, "Healthy", stableRevision=2)
    assert set(_versions(url, 50)) == {("2", "v2")}
    history_before = serve.history(name)
    assert [h["revision"] for h in history_before] == [1, 2]

    # Undo: back to the previous revision's template, rolled out like any change.
    undone = serve.cli("undo", name)
    assert undone.code == 0, str(undone)
    target = _current(serve, name)
    assert target != 2
    final = _promote_until_healthy(serve, name, revision=target)
    assert final["weights"] == {str(target): 100}
    assert final["canaryRevision"] is None
    assert set(_versions(url, 50)) == {(str(target), "v1")}
    history = serve.history(name)
    current = [h for h in history if h["current"]]
    assert len(current) == 1 and "v1" in current[0]["command"], history
    assert current[0]["stable"] and current[0]["revision"] == target, history


def test_undo_returns_to_the_earlier_revision_itself(serve: Serve, tmp_path: Path) -> None:
    # A revision number names a template: undo moves the target back to revision 1 (and
    # reuses its replicas while they still run) instead of renumbering it, as kubectl does.
    name = "renumber"
    v1 = example_rollout(
        "rollingUpdate",
        name=name,
        version="v1",
        mark=serve.mark,
        replicas=2,
        strategy_patch={"maxSurge": 1, "maxUnavailable": 0},
    )
    spec = write_rollout(tmp_path / "rolling.yaml", v1)
    assert serve.apply(spec).code == 0
    serve.wait_phase(name, "Healthy", stableRevision=1)
    write_rollout(spec, with_version(v1, "v2"))
    assert serve.apply(spec).code == 0
    status = serve.wait_phase(name, "Healthy", stableRevision=2)
    assert serve.cli("undo", name).code == 0
    final = serve.wait_status(name, lambda d: d["phase"] == "Healthy" and d["stableRevision"] != 2)
    assert set(_versions(status["endpoint"], 20)) == {(str(final["stableRevision"]), "v1")}
    assert final["stableRevision"] == 1, final
    history = serve.history(name)
    assert [(h["revision"], h["current"], h["stable"]) for h in history] == [
        (1, True, True),
        (2, False, False),
    ], history


def _current(serve: Serve, name: str) -> int:
    revision: int = serve.api_status(name)["revision"]
    return revision


def test_pause_holds_the_rollout_and_resume_continues(serve: Serve, tmp_path: Path) -> None:
    name = "hold"
    # The timed pause is long enough for a CLI process to start on a busy 2-core box.
    steps = [{"setWeight": 25}, {"pause": {"duration": "8s"}}, {"setWeight": 75}, {"pause": {}}]
    spec, v1 = _deploy(serve, tmp_path, name, steps)
    write_rollout(spec, with_version(v1, "v2"))
    assert serve.apply(spec).code == 0
    timed = serve.wait_status(
        name,
        lambda d: d["weights"].get("2") == 25 and (d["pause"] or {}).get("until") is not None,
        what="the timed pause after the first step",
    )
    step_ends_at = timed["pause"]["until"]  # the server's wall clock, the same machine's

    paused = serve.cli("pause", name)
    assert paused.code == 0, str(paused)
    status = serve.status(name)
    assert status["weights"] == {"1": 75, "2": 25}, "the timed pause ended before `pause` ran"
    assert status["phase"] == "Paused" and status["userPaused"] is True
    assert serve.cli("pause", name).code == 1  # already paused by a user
    # Past the end of the timed pause, a user-paused rollout still does not move.
    while time.time() < step_ends_at + 1.0:
        doc = serve.api_status(name)
        assert doc["weights"] == {"1": 75, "2": 25} and doc["phase"] == "Paused", doc
        assert doc["userPaused"] is True, doc
        time.sleep(0.25)

    resumed = serve.cli("resume", name)
    assert resumed.code == 0, str(resumed)
    at_gate = serve.wait_status(
        name,
        lambda d: d["phase"] == "Paused" and d["weights"] == {"1": 25, "2": 75},
        what="the rollout to reach the promotion gate",
    )
    assert at_gate["userPaused"] is False
    # A pause step waits for promote, not resume.
    not_resumable = serve.cli("resume", name)
    assert not_resumable.code == 1 and "promote" in not_resumable.stderr, str(not_resumable)
    assert serve.cli("promote", name).code == 0
    serve.wait_phase(name, "Healthy", stableRevision=2)


def test_apply_wait_exits_0_on_healthy(serve: Serve, tmp_path: Path) -> None:
    name = "gate-ok"
    spec, v1 = _deploy(serve, tmp_path, name, [{"setWeight": 50}, {"pause": {"duration": "1s"}}])
    write_rollout(spec, with_version(v1, "v2"))
    result = serve.apply(spec, "--wait", "--timeout", "60", "-o", "json")
    assert result.code == 0, str(result)
    doc = result.json
    assert [s["phase"] for s in doc["statuses"]] == ["Healthy"]
    assert doc["statuses"][0]["stableRevision"] == 2
    assert serve.status(name)["weights"] == {"2": 100}


def test_apply_wait_exits_1_when_aborted_from_another_process(serve: Serve, tmp_path: Path) -> None:
    name = "gate-abort"
    spec, v1 = _deploy(serve, tmp_path, name, [{"setWeight": 50}, {"pause": {}}])
    write_rollout(spec, with_version(v1, "v2"))
    waiting = serve.cli_popen("apply", "-f", str(spec), "--wait", "--timeout", "60")
    try:
        serve.wait_status(
            name,
            lambda d: d["phase"] == "Paused" and d["canaryRevision"] == 2,
            what="the canary to wait for promote",
        )
        assert waiting.poll() is None, "apply --wait returned before the rollout ended"
        assert serve.cli("abort", name).code == 0
        stdout, stderr = waiting.communicate(timeout=30)
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.communicate()
    assert waiting.returncode == 1, (stdout, stderr)
    assert "Aborted" in stdout + stderr
    assert serve.status(name)["weights"] == {"1": 100}
