"""What ``serve``'s children see and what ``serve`` leaves on disk: replicas, hooks and
``job`` metrics get the base environment plus their spec's ``env``, never ``serve``'s
secrets; the state dir and everything in it is private (0700/0600), an existing one is
tightened at start, and the children's own files keep the umask ``serve`` started with."""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from platform_helpers import Platforms, wait_for

from changeover import childenv, statedir
from changeover.analysis.providers import base as providers
from changeover.analysis.providers import job
from changeover.spec import models

pytestmark = pytest.mark.slow

SECRETS = {
    "CHANGEOVER_TOKEN": "tok-123",
    "CHANGEOVER_CONFIG": "/home/u/.config/changeover/servers.json",
    "AWS_SECRET_ACCESS_KEY": "aws-456",
}
# Writes its environment, and a file of its own (for its mode), then waits to be stopped.
DUMP = (
    "import json, os, sys, time\n"
    "open(sys.argv[1] + '.own', 'w').close()\n"
    "with open(sys.argv[1] + '.tmp', 'w') as f: json.dump(dict(os.environ), f)\n"
    "os.rename(sys.argv[1] + '.tmp', sys.argv[1])\n"
    "time.sleep(float(sys.argv[2]))\n"
)


@pytest.fixture
def secrets_in_serve(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    monkeypatch.setenv("SHARED_PROXY", "http://proxy:3128")
    yield


@pytest.fixture
def restore_umask() -> Iterator[None]:
    before = os.umask(0o022)
    os.umask(before)
    yield
    os.umask(before)
    statedir._started_with = None


def read_env(path: Path) -> dict[str, str]:
    wait_for_file = path.exists
    assert wait_for_file(), path
    env: dict[str, str] = json.loads(path.read_text())
    return env


def assert_base_only(env: dict[str, str], own: dict[str, str]) -> None:
    for name in SECRETS:
        assert name not in env
    assert "SHARED_PROXY" not in env
    assert env["PATH"] == os.environ["PATH"]
    assert env["LC_ALL"] == "C.UTF-8"
    for name, value in own.items():
        assert env[name] == value
    extra = {n for n in env if not childenv.passed(n)} - set(own)
    assert extra <= {
        "PORT",
        "CHANGEOVER_ROLLOUT",
        "CHANGEOVER_REVISION",
        "CHANGEOVER_REPLICA",
        "CHANGEOVER_HOOK_ID",
        "ROLLOUT",
        "CANARY_REVISION",
        "STABLE_REVISION",
    }


async def test_a_replica_gets_the_base_environment_and_its_own(
    make_platform: Platforms, tmp_path: Path, secrets_in_serve: None
) -> None:
    out = tmp_path / "replica-env.json"
    template = models.ProcessTemplate(
        command=[sys.executable, "-c", DUMP, str(out), "60"], env={"MINE": "1"}
    )
    platform = make_platform()
    await platform.start()
    await platform.ensure_revision(rollout="chat", revision=1, template=template)
    await platform.scale(rollout="chat", revision=1, replicas=1)
    await wait_for(out.exists, what="the replica's environment")
    assert_base_only(read_env(out), {"MINE": "1", "CHANGEOVER_ROLLOUT": "chat"})


async def test_a_hook_gets_the_base_environment_and_its_own(
    make_platform: Platforms, tmp_path: Path, secrets_in_serve: None
) -> None:
    out = tmp_path / "hook-env.json"
    hook = models.Hook(command=[sys.executable, "-c", DUMP, str(out), "0"], env={"MINE": "2"})
    platform = make_platform()
    await platform.start()
    await platform.start_hook(rollout="chat", hook_id="pre-2", hook=hook)
    await wait_for(out.exists, what="the hook's environment")
    assert_base_only(read_env(out), {"MINE": "2", "CHANGEOVER_HOOK_ID": "pre-2"})


async def test_a_job_metric_gets_the_base_environment_and_its_own(
    tmp_path: Path, secrets_in_serve: None
) -> None:
    out = tmp_path / "job-env.json"
    ctx = providers.MeasureContext(
        rollout="web", namespace="default", stable_revision=1, canary_revision=2, now=0.0
    )
    config = {"command": [sys.executable, "-c", DUMP, str(out), "0"], "env": {"MINE": "3"}}
    result = await job.JobProvider().measure(config, args={}, context=ctx)
    assert result.phase == "Successful", result.message
    assert_base_only(read_env(out), {"MINE": "3", "CANARY_REVISION": "2"})


async def test_pass_env_names_what_else_serve_passes_on(
    make_platform: Platforms,
    tmp_path: Path,
    secrets_in_serve: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(childenv.PASS_VAR, "SHARED_PROXY")
    out = tmp_path / "hook-env.json"
    hook = models.Hook(command=[sys.executable, "-c", DUMP, str(out), "0"])
    platform = make_platform()
    await platform.start()
    await platform.start_hook(rollout="chat", hook_id="pre-2", hook=hook)
    await wait_for(out.exists, what="the hook's environment")
    env = read_env(out)
    assert env["SHARED_PROXY"] == "http://proxy:3128"
    assert "CHANGEOVER_TOKEN" not in env


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_an_existing_state_dir_is_made_private_and_stays_so(
    make_platform: Platforms, tmp_path: Path, restore_umask: None
) -> None:
    state = make_platform.state_dir
    (state / "logs" / "chat").mkdir(parents=True)
    os.umask(0o022)  # a typical login umask, as serve inherits it
    for name in ("changeover.db", "token", "logs/chat/old.log"):
        (state / name).write_text("secret")
        (state / name).chmod(0o644)
    state.chmod(0o755)
    (state / "logs").chmod(0o755)
    script = state / "hook.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)

    statedir.secure(state)  # what serve does first

    assert mode(state) == 0o700 and mode(state / "logs") == 0o700
    for name in ("changeover.db", "token", "logs/chat/old.log"):
        assert mode(state / name) == 0o600, name
    assert mode(script) == 0o700  # still executable by its owner
    # What serve creates from now on is private from the start: logs of a new replica.
    out = tmp_path / "own" / "env.json"
    out.parent.mkdir()
    platform = make_platform()
    await platform.start()
    template = models.ProcessTemplate(command=[sys.executable, "-c", DUMP, str(out), "60"])
    await platform.ensure_revision(rollout="chat", revision=1, template=template)
    await platform.scale(rollout="chat", revision=1, replicas=1)
    await wait_for(out.exists, what="the replica's environment")
    logs = list((state / "logs" / "chat" / "1").iterdir())
    assert logs and all(mode(p) == 0o600 for p in logs)
    state_files = [p for p in state.rglob("*") if p.is_file()]
    assert all(mode(p) & 0o077 == 0 for p in state_files), [
        (p, oct(mode(p))) for p in state_files if mode(p) & 0o077
    ]
    # ... while the replica's own files keep the umask serve was started with.
    assert mode(Path(str(out) + ".own")) == 0o644
