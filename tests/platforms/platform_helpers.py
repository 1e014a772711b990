"""Helpers for platform tests: the echo app template, waiting, and leak-proof platforms.

``Platforms`` builds LocalPlatforms on a shared state dir with fast backoff and remembers
every pid they ran; the ``make_platform`` fixture (conftest.py) closes them with
``stop_replicas=True`` and then kills any recorded pid that is still the same process
(pid + create time), so a failing test cannot leave replicas behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from changeover.platforms import base
from changeover.platforms.local import Backoff, LocalPlatform, process
from changeover.spec import models

ECHO_APP = str(Path(__file__).resolve().parents[1] / "apps" / "echo_app.py")

FAST_PROBE = models.ReadinessProbe(
    http_get=models.HttpGetAction(path="/healthz"),
    period_seconds=0.1,
    timeout_seconds=1.0,
    failure_threshold=2,
)


def echo_template(**overrides: Any) -> models.ProcessTemplate:
    env = {"VERSION": "v1", **overrides.pop("env", {})}
    fields: dict[str, Any] = {
        "command": [sys.executable, ECHO_APP],
        "env": env,
        "readiness_probe": FAST_PROBE,
        "termination_grace_period_seconds": 2.0,
    }
    fields.update(overrides)
    return models.ProcessTemplate(**fields)


async def wait_for(
    predicate: Callable[[], object], *, within: float = 10.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.02)


def ready(platform: LocalPlatform, rollout: str, revision: int) -> tuple[base.Replica, ...]:
    rev = platform.observe(rollout).get(revision)
    return rev.ready if rev is not None else ()


def pid_alive(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def kill_recorded(state_dir: Path, extra: set[tuple[int, float]]) -> None:
    """SIGKILL every process recorded in the state file or in ``extra`` that is still the
    same process (pid + create time)."""
    recorded = set(extra)
    path = state_dir / "platform" / "local.json"
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(path.read_text())
        for entry in data.get("rollouts", {}).values():
            for rev in entry.get("revisions", {}).values():
                for r in rev.get("replicas", []):
                    if r.get("pid") and r.get("createTime"):
                        recorded.add((r["pid"], r["createTime"]))
    for pid, created in recorded:
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if process.ProcessHandle.adopt(pid, created) is not None:
                os.kill(pid, signal.SIGKILL)


class Platforms:
    """Builds platforms and remembers every pid they ran, for cleanup."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.made: list[LocalPlatform] = []
        self.pids: set[tuple[int, float]] = set()

    def __call__(self, **kwargs: Any) -> LocalPlatform:
        kwargs.setdefault("backoff", Backoff(initial=0.1, cap=0.4, reset_after=60.0))
        user_on_change = kwargs.pop("on_change", None)
        platform: LocalPlatform

        def on_change() -> None:
            for r in platform._runners.values():
                for runner in r:
                    if runner.handle is not None:
                        self.pids.add((runner.handle.pid, runner.handle.create_time))
            if user_on_change is not None:
                user_on_change()

        platform = LocalPlatform(
            kwargs.pop("state_dir", self.state_dir), on_change=on_change, **kwargs
        )
        self.made.append(platform)
        return platform

    def track(self, pid: int) -> None:
        with contextlib.suppress(psutil.Error):
            self.pids.add((pid, process.start_stamp(pid)))
