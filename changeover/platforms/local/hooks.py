"""One-shot hook commands (recreate's pre/mid/post): run once, with a timeout, and report.

``LocalPlatform.start_hook`` creates a ``HookRunner`` per hook id; ``hook_status`` reads its
``record``. Output goes to ``state_dir/logs/<rollout>/hooks/<hook_id>.log``; on failure the
last lines become the status message, so ``changeover status`` shows why without a trip to
the log. Finished results are persisted with the rest of the platform state.

A hook still running when the server dies cannot be followed after a restart (it is no
longer our child, so its exit code is lost): ``LocalPlatform.start`` kills it and forgets
it, and the controller starts it again. Hooks should therefore be idempotent, as Argo's and
Helm's are expected to be.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable
from pathlib import Path

from changeover import aio, childenv, errors
from changeover.platforms import base
from changeover.platforms.local import process, replica, state_file
from changeover.spec import models

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def log_name(hook_id: str) -> str:
    """A file name for ``hook_id``: ``"pre/2"`` → ``"pre_2.log"``."""
    return _UNSAFE.sub("_", hook_id) + ".log"


def to_status(hook_id: str, record: state_file.HookRecord) -> base.HookStatus:
    return base.HookStatus(
        hook_id=hook_id,
        state=base.HookState(record.state),
        message=record.message,
        extra=dict(record.extra),
    )


class HookRunner:
    def __init__(
        self,
        *,
        rollout: str,
        hook_id: str,
        hook: models.Hook,
        log_dir: Path,
        record: state_file.HookRecord,
        on_change: Callable[[], None],
    ) -> None:
        self.rollout = rollout
        self.hook_id = hook_id
        self.hook = hook
        self.record = record
        self.log_path = log_dir / log_name(hook_id)
        self._on_change = on_change
        self._handle: process.ProcessHandle | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"hook {self.rollout}/{self.hook_id}")

    async def _run(self) -> None:
        env = childenv.base()
        env.update(CHANGEOVER_ROLLOUT=self.rollout, CHANGEOVER_HOOK_ID=self.hook_id)
        user_env = process.expand_env(self.hook.env, {})
        env.update(user_env)
        argv = [process.expand(arg, user_env) for arg in self.hook.command]
        with contextlib.suppress(FileNotFoundError):
            self.log_path.unlink()  # a re-run after a restart starts a fresh log
        try:
            handle = process.spawn(argv, env=env, cwd=self.hook.working_dir, log_path=self.log_path)
        except errors.BackendError as exc:
            replica.note_in_log(self.log_path, str(exc))
            self._finish(base.HookState.FAILED, str(exc), {})
            return
        self._handle = handle
        self.record.pid, self.record.create_time = handle.pid, handle.create_time
        self._on_change()
        timeout = self.hook.timeout_seconds
        try:
            code = await asyncio.wait_for(handle.wait(), timeout=timeout)
        except TimeoutError:
            handle.kill_group()
            await handle.wait()
            self._finish(
                base.HookState.FAILED,
                f"timed out after {timeout:g}s",
                {"output": process.tail(self.log_path)},
            )
            return
        finally:
            self._handle = None
        extra = {"exitCode": str(code)}
        if code == 0:
            self._finish(base.HookState.SUCCEEDED, "", extra)
        else:
            output = process.tail(self.log_path)
            message = f"exited with code {code}" + (f"\n{output}" if output else "")
            self._finish(base.HookState.FAILED, message, {**extra, "output": output})

    def _finish(self, new: base.HookState, message: str, extra: dict[str, str]) -> None:
        if new is base.HookState.FAILED:
            # Where the whole output is: the message carries only its last lines.
            message += f"\nlog: {self.log_path} (`changeover logs {self.rollout}`)"
        self.record.state = new.value
        self.record.message = message
        self.record.extra = {**extra, "log": str(self.log_path)}
        self.record.pid = self.record.create_time = None
        log.info("hook %s/%s %s %s", self.rollout, self.hook_id, new.value, message)
        self._on_change()

    async def cancel(self, *, kill: bool) -> None:
        """Stop following the hook; ``kill`` also kills its process group."""
        if kill and self._handle is not None:
            self._handle.kill_group()
        if self._task is not None:
            await aio.cancel_and_wait(self._task)
            self._task = None
