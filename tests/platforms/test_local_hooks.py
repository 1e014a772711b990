"""Hooks on the local platform: run once per id, time out, report output on failure."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from platform_helpers import Platforms, pid_alive, wait_for

from changeover.platforms import base
from changeover.platforms.local import LocalPlatform
from changeover.spec import models

pytestmark = pytest.mark.slow


def py(code: str, **fields: object) -> models.Hook:
    return models.Hook(command=[sys.executable, "-c", code], **fields)


def finished(platform: LocalPlatform, hook_id: str) -> bool:
    status = platform.hook_status(rollout="chat", hook_id=hook_id)
    return status is not None and status.state is not base.HookState.RUNNING


async def test_hook_succeeds_once_per_id(make_platform: Platforms, tmp_path: Path) -> None:
    counter = tmp_path / "runs"
    hook = py(
        "import os; open(os.environ['RUNS'], 'a').write(os.environ['CHANGEOVER_HOOK_ID'] + '\\n')",
        env={"RUNS": str(counter)},
    )
    platform = make_platform()
    await platform.start()
    assert platform.hook_status(rollout="chat", hook_id="pre-2") is None

    await platform.start_hook(rollout="chat", hook_id="pre-2", hook=hook)
    await platform.start_hook(rollout="chat", hook_id="pre-2", hook=hook)  # no-op

    await wait_for(lambda: finished(platform, "pre-2"))
    status = platform.hook_status(rollout="chat", hook_id="pre-2")
    assert status is not None
    assert status.state is base.HookState.SUCCEEDED
    assert status.extra["exitCode"] == "0"
    assert counter.read_text() == "pre-2\n"


async def test_failed_hook_reports_exit_code_and_last_output_lines(
    make_platform: Platforms,
) -> None:
    hook = py("import sys\nfor i in range(50): print('line', i)\nsys.exit(4)")
    platform = make_platform()
    await platform.start()

    await platform.start_hook(rollout="chat", hook_id="post-3", hook=hook)

    await wait_for(lambda: finished(platform, "post-3"))
    status = platform.hook_status(rollout="chat", hook_id="post-3")
    assert status is not None
    assert status.state is base.HookState.FAILED
    assert status.message.startswith("exited with code 4")
    assert "line 49" in status.message
    assert "line 0\n" not in status.message  # only the last lines
    assert status.extra["log"].endswith("post-3.log")


async def test_hook_timing_out_is_killed_and_failed(make_platform: Platforms) -> None:
    hook = py(
        "import os, time; print(os.getpid(), flush=True); time.sleep(60)", timeout_seconds=0.5
    )
    platform = make_platform()
    await platform.start()

    await platform.start_hook(rollout="chat", hook_id="mid-2", hook=hook)

    await wait_for(lambda: finished(platform, "mid-2"), within=5)
    status = platform.hook_status(rollout="chat", hook_id="mid-2")
    assert status is not None
    assert status.state is base.HookState.FAILED
    assert status.message.startswith("timed out after 0.5s\nlog: ")
    assert status.message.endswith("mid-2.log (`changeover logs chat`)")
    pid = int(status.extra["output"].split()[0])
    assert not pid_alive(pid)


async def test_hook_that_cannot_run_fails_with_a_message(make_platform: Platforms) -> None:
    platform = make_platform()
    await platform.start()

    await platform.start_hook(
        rollout="chat", hook_id="pre-1", hook=models.Hook(command=["/no/such/migrate"])
    )

    status = platform.hook_status(rollout="chat", hook_id="pre-1")
    assert status is not None
    await wait_for(lambda: finished(platform, "pre-1"))
    status = platform.hook_status(rollout="chat", hook_id="pre-1")
    assert status is not None and status.state is base.HookState.FAILED
    assert "cannot execute '/no/such/migrate'" in status.message
    log_file = platform.state_dir / "logs" / "chat" / "hooks" / "pre-1.log"
    assert "cannot execute '/no/such/migrate'" in log_file.read_text()


async def test_finished_hooks_are_remembered_across_restarts(make_platform: Platforms) -> None:
    first = make_platform()
    await first.start()
    await first.start_hook(rollout="chat", hook_id="pre-2", hook=py("pass"))
    await first.start_hook(rollout="chat", hook_id="post-2", hook=py("import sys; sys.exit(1)"))
    await wait_for(lambda: finished(first, "pre-2") and finished(first, "post-2"))
    await first.close()

    second = make_platform()
    await second.start()

    pre = second.hook_status(rollout="chat", hook_id="pre-2")
    post = second.hook_status(rollout="chat", hook_id="post-2")
    assert pre is not None and pre.state is base.HookState.SUCCEEDED
    assert post is not None and post.state is base.HookState.FAILED


async def test_a_hook_running_when_the_server_stops_is_killed_and_forgotten(
    make_platform: Platforms,
) -> None:
    first = make_platform()
    await first.start()
    await first.start_hook(
        rollout="chat",
        hook_id="pre-2",
        hook=py("import os, time; print(os.getpid(), flush=True); time.sleep(60)"),
    )
    log = first.state_dir / "logs" / "chat" / "hooks" / "pre-2.log"
    await wait_for(lambda: log.exists() and log.read_text().strip() != "")
    pid = int(log.read_text().split()[0])
    await first.close()  # not stopping replicas: the hook keeps running...
    assert pid_alive(pid)

    second = make_platform()
    await second.start()

    # ...but its exit code cannot be followed, so it is killed and will be re-run.
    await wait_for(lambda: not pid_alive(pid))
    assert second.hook_status(rollout="chat", hook_id="pre-2") is None
