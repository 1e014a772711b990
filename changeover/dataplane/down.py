"""``changeover down``: stop everything one state dir runs, and say what was stopped.

In order: the ``serve`` holding the state dir (SIGTERM, as Ctrl-C would; it leaves the
services running), then, holding the state dir's lock so no ``serve`` starts meanwhile,
every router process (it stops listening and finishes its requests), every replica (SIGTERM,
its grace period, SIGKILL: the process group, as the platform stops them) and any running
hook. Every process is recognised by its recorded PID *and* create time, so a recycled PID
is never signalled. The rollouts stay stored; the next ``serve`` starts them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from changeover import errors
from changeover.dataplane import records, remote
from changeover.platforms.local import process, state_file
from changeover.statelock import LOCK_FILE, StateDirLock

SERVE_WAIT = 30.0


@dataclass
class Report:
    state_dir: Path
    serve_pid: int | None = None
    routers: list[str] = field(default_factory=list)
    replicas: int = 0
    hooks: int = 0

    def lines(self) -> list[str]:
        out = []
        if self.serve_pid is not None:
            out.append(f"stopped serve (pid {self.serve_pid})")
        for line in self.routers:
            out.append(f"stopped the router of {line}")
        out.append(f"stopped {self.replicas} replica(s) and {self.hooks} hook(s)")
        if self.serve_pid is None and not self.routers and not self.replicas and not self.hooks:
            out = [f"nothing was running for {self.state_dir}"]
        return out


def run(state_dir: Path) -> Report:
    """Stop serve, routers, replicas and hooks of ``state_dir``; StateError if serve
    would not stop."""
    if not Path(state_dir).is_dir():
        return Report(Path(state_dir))
    return asyncio.run(_down(Path(state_dir)))


async def _down(state_dir: Path) -> Report:
    report = Report(state_dir)
    lock = await _stop_serve(state_dir, report)
    try:
        await _stop_routers(state_dir, report)
        await _stop_platform(state_dir, report)
    finally:
        lock.release()
    return report


async def _stop_serve(state_dir: Path, report: Report) -> StateDirLock:
    try:
        return StateDirLock.acquire(state_dir)
    except errors.StateError:
        pass
    pid = _lock_owner(state_dir)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + SERVE_WAIT
    while time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        try:
            lock = StateDirLock.acquire(state_dir)
        except errors.StateError:
            continue
        report.serve_pid = pid
        return lock
    raise errors.StateError(
        f"serve (pid {pid}) still holds {state_dir / LOCK_FILE} after {SERVE_WAIT:g}s; "
        "stop it, then run `changeover down` again"
    )


def _lock_owner(state_dir: Path) -> int | None:
    try:
        data = json.loads((state_dir / LOCK_FILE).read_text() or "{}")
    except (OSError, ValueError):
        return None
    pid = data.get("pid") if isinstance(data, dict) else None
    return pid if isinstance(pid, int) and pid > 1 else None


async def _stop_routers(state_dir: Path, report: Report) -> None:
    async def one(paths: records.RouterPaths) -> None:
        found = remote.adopt(paths)
        if found is None:
            return
        handle, _ = found
        config = records.read_json(paths.config)
        name = config.get("rollout") if isinstance(config, dict) else None
        await remote.stop_process(paths, handle)
        report.routers.append(f"{name or paths.root.name} (pid {handle.pid})")

    await asyncio.gather(*(one(p) for p in records.all_paths(state_dir)))


async def _stop_platform(state_dir: Path, report: Report) -> None:
    try:
        platform = state_file.StateFile(state_dir / "platform" / "local.json").load()
    except errors.BackendError:
        return
    stops = []
    for rec in platform.revisions.values():
        grace = rec.template.termination_grace_period_seconds
        for replica in rec.replicas:
            handle = _adopt(replica.pid, replica.create_time)
            if handle is not None:
                report.replicas += 1
                stops.append(handle.terminate(grace))  # SIGTERM, grace, SIGKILL the group
    for hook in platform.hooks.values():
        handle = _adopt(hook.pid, hook.create_time)
        if handle is not None:
            report.hooks += 1
            handle.kill_group()
    await asyncio.gather(*stops)


def _adopt(pid: int | None, create_time: float | None) -> process.ProcessHandle | None:
    if pid is None or create_time is None:
        return None
    return process.ProcessHandle.adopt(pid, create_time)
