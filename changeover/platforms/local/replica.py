"""One supervised replica: start it, probe it, restart it when it dies, stop it gracefully.

``LocalPlatform`` creates a ``ReplicaRunner`` per replica and reads ``snapshot()`` in
``observe``. Each runner is one asyncio task that loops::

    spawn on its port ─► probe every periodSeconds ─► (process exits) ─► Crashed,
        ▲                                                              backoff 0.5s→30s
        └──────────────────────────────────────────────────────────────────┘

An adopted replica (found alive by ``start()`` after a server restart) enters the loop at
the probe step, so it keeps its pid and port. ``stop`` cancels the loop, drains the
endpoint, then SIGTERM → grace → SIGKILL. Nothing here raises into the platform: a command
that cannot be executed is a crash with a message, retried with the same backoff.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from changeover import aio, childenv, errors
from changeover.endpoints import Endpoint
from changeover.platforms import base
from changeover.platforms.local import ports as ports_mod
from changeover.platforms.local import probe, process, state_file
from changeover.spec import models

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Backoff:
    """Restart delays: ``initial`` doubling to ``cap``; forgotten after ``reset_after``
    seconds of continuous readiness.

    >>> [Backoff().delay(n) for n in (1, 2, 3, 8, 9)]
    [0.5, 1.0, 2.0, 30.0, 30.0]
    """

    initial: float = 0.5
    cap: float = 30.0
    reset_after: float = 60.0

    def delay(self, failures: int) -> float:
        return float(min(self.cap, self.initial * 2 ** max(0, failures - 1)))


_WAS_SERVING = (base.ReplicaState.READY, base.ReplicaState.NOT_READY)
_BANNER = "--- changeover "


def note_in_log(log_path: Path, message: str) -> None:
    """Append ``message`` as a changeover line, so ``changeover logs`` shows a start that
    failed before the process could write anything (cannot execute, no such directory)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    try:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "a", encoding="utf-8") as f:
            f.write(f"{_BANNER}{stamp}: {message}\n")
    except OSError:
        log.debug("cannot note %r in %s", message, log_path)


def last_output(log_path: Path, *, lines: int = 3, max_chars: int = 300) -> str:
    """The last ``lines`` lines the latest run wrote to ``log_path`` (stdout and stderr
    share it), joined with `` | ``; earlier runs' output (before the last banner) is not
    this crash's story."""
    text = process.tail(log_path, lines=40, max_chars=4000)
    kept: list[str] = []
    for line in text.splitlines():
        if line.startswith(_BANNER):
            kept = []
        elif line.strip():
            kept.append(line.strip())
    return " | ".join(kept[-lines:])[-max_chars:]


class ReplicaRunner:
    def __init__(
        self,
        *,
        rollout: str,
        revision: int,
        record: state_file.ReplicaRecord,
        template: Callable[[], models.ProcessTemplate],
        ports: ports_mod.PortAllocator,
        log_dir: Path,
        on_change: Callable[[], None],
        clock: Callable[[], float],
        backoff: Backoff,
        adopted: process.ProcessHandle | None = None,
    ) -> None:
        self.rollout = rollout
        self.revision = revision
        self.record = record
        self._template = template
        self._ports = ports
        self._log_path = log_dir / f"{record.id}.log"
        self._on_change = on_change
        self._clock = clock
        self._backoff = backoff
        self.handle = adopted
        # Adopted after a server restart and Ready when last seen: Ready until a probe says
        # otherwise, so the router keeps its endpoints while serve restarts.
        adopted_ready = adopted is not None and record.ready_since is not None
        self.state = base.ReplicaState.READY if adopted_ready else base.ReplicaState.STARTING
        self.message = ""
        self.last_error = ""  # the latest crash, kept until the replica is Ready again
        # The latest crash and its time, kept for good: `get` and `status` show it.
        self.last_failure = ""
        self.last_failure_at: float | None = None
        self.probe_failures = 0
        self._failures = 0  # consecutive crashes, drives the backoff
        self._task: asyncio.Task[None] | None = None

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def terminating(self) -> bool:
        return self.record.terminating

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"replica {self.id}")

    def snapshot(self) -> base.Replica:
        running = self.handle is not None and self.record.port is not None
        return base.Replica(
            id=self.id,
            revision=self.revision,
            state=self.state,
            endpoint=Endpoint(probe.HOST, self.record.port)
            if running and self.record.port is not None
            else None,
            ready_since=self.record.ready_since if self.state is base.ReplicaState.READY else None,
            restarts=self.record.restarts,
            pid=self.handle.pid if self.handle is not None else None,
            # A replica starting again after a crash says why it crashed.
            message=self.message
            or (self.last_error if self.state is not base.ReplicaState.READY else ""),
            failures=self._failures,
            last_failure=self.last_failure,
            last_failure_at=self.last_failure_at,
            probe_failures=self.probe_failures,
        )

    # --- the supervision loop ----------------------------------------------------------

    async def _run(self) -> None:
        while True:
            restored_ready_since: float | None = None
            if self.handle is None:
                try:
                    self.handle = self._spawn()
                except errors.BackendError as exc:
                    note_in_log(self._log_path, str(exc))
                    self._crashed(str(exc))
                    await asyncio.sleep(self._backoff.delay(self._failures))
                    continue
                self._set(base.ReplicaState.STARTING, "")
                probe_cfg = self._template().readiness_probe
                delay = probe_cfg.initial_delay_seconds if probe_cfg is not None else 0.0
            else:
                # Adopted after a server restart: it has been up all along, so probe at once
                # and keep its readySince (minReadySeconds should not start over).
                restored_ready_since = self.record.ready_since
                delay = 0.0
            code = await self._supervise(self.handle, delay, restored_ready_since)
            ever_ready = self.record.ready_since is not None
            self.handle = None
            self.record.pid = self.record.create_time = None
            self._crashed(self._exit_message(code) + self._maybe_move_port(ever_ready))
            await asyncio.sleep(self._backoff.delay(self._failures))

    def _spawn(self) -> process.ProcessHandle:
        if self.record.port is None:
            self.record.port = self._ports.allocate()
        port = str(self.record.port)
        template = self._template()
        env = childenv.base()
        env.update(
            CHANGEOVER_ROLLOUT=self.rollout,
            CHANGEOVER_REVISION=str(self.revision),
            CHANGEOVER_REPLICA=self.id,
        )
        user_env = process.expand_env(template.env, {"PORT": port})
        env.update(user_env)
        env["PORT"] = port  # ours wins: the router sends traffic to this port only
        variables = {**user_env, "PORT": port}
        argv = [process.expand(arg, variables) for arg in template.command]
        handle = process.spawn(
            argv,
            env=env,
            cwd=template.working_dir,
            log_path=self._log_path,
            banner=f"starting replica {self.id} on port {port}: {argv}",
        )
        self.record.pid = handle.pid
        self.record.create_time = handle.create_time
        self.record.ready_since = None
        log.info("started replica %s pid %d port %s", self.id, handle.pid, port)
        return handle

    async def _supervise(
        self, handle: process.ProcessHandle, delay: float, restored_ready_since: float | None
    ) -> int | None:
        """Probe until the process exits; returns its exit code (None if adopted)."""
        loop = asyncio.get_running_loop()
        exited = asyncio.ensure_future(handle.wait())
        try:
            if delay > 0:
                await asyncio.wait({exited}, timeout=delay)
            successes = failures = 0
            ready_at = loop.time()
            while not exited.done():
                cfg = self._template().readiness_probe
                assert self.record.port is not None
                # Race the probe against the exit: a probe stuck until its timeout must not
                # delay noticing (and restarting) a crash.
                checking = asyncio.ensure_future(probe.check(self.record.port, cfg))
                try:
                    await asyncio.wait({checking, exited}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    if not checking.done():
                        await aio.cancel_and_wait(checking)
                if exited.done() or checking.cancelled():
                    break
                result = checking.result()
                success_threshold = cfg.success_threshold if cfg is not None else 1
                failure_threshold = cfg.failure_threshold if cfg is not None else 3
                self.probe_failures = 0 if result.ok else failures + 1
                if result.ok:
                    successes, failures = successes + 1, 0
                    needed = 1 if restored_ready_since is not None else success_threshold
                    if self.state is not base.ReplicaState.READY and successes >= needed:
                        self.record.ready_since = restored_ready_since or self._clock()
                        restored_ready_since = None
                        ready_at = loop.time()
                        self.last_error = ""
                        self._set(base.ReplicaState.READY, "")
                    elif (
                        self.state is base.ReplicaState.READY
                        and loop.time() - ready_at >= self._backoff.reset_after
                    ):
                        self._failures = 0
                else:
                    successes, failures = 0, failures + 1
                    restored_ready_since = None
                    self.message = f"readiness probe failed: {result.detail}"
                    if self.state is base.ReplicaState.READY and failures >= failure_threshold:
                        self.record.ready_since = None
                        self._set(base.ReplicaState.NOT_READY, self.message)
                period = cfg.period_seconds if cfg is not None else 1.0
                await asyncio.wait({exited}, timeout=period)
            return exited.result()
        finally:
            if not exited.done():
                await aio.cancel_and_wait(exited)

    def _exit_message(self, code: int | None) -> str:
        """``exited with code 1: <its last output lines>``, ``killed by SIGKILL``..."""
        if code is None:
            return "process exited"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            what = f"killed by {name}"
        elif code == 0:
            what = "exited with code 0 (a service must keep running)"
        else:
            what = f"exited with code {code}"
        tail = last_output(self._log_path)
        return what + (f": {tail}" if tail else "")

    def _maybe_move_port(self, ever_ready: bool) -> str:
        """If it died before ever becoming ready and its port is now taken by someone else,
        the likely cause is a port collision: move to a fresh port."""
        old = self.record.port
        if ever_ready or old is None or ports_mod.port_is_free(old):
            return ""
        self._ports.release(old)
        self.record.port = None
        try:
            self.record.port = self._ports.allocate()
        except errors.BackendError as exc:
            return f"; port {old} is in use and {exc}"
        return f"; port {old} is in use, moving to {self.record.port}"

    def _crashed(self, message: str) -> None:
        self.record.restarts += 1
        self.record.ready_since = None
        self._failures += 1
        self.last_error = self.last_failure = message
        self.last_failure_at = self._clock()
        log.warning("replica %s crashed: %s", self.id, message)
        self._set(base.ReplicaState.CRASHED, message)

    def _set(self, new: base.ReplicaState, message: str) -> None:
        self.state = new
        self.message = message
        self._on_change()

    # --- stopping ----------------------------------------------------------------------

    async def _cancel(self) -> None:
        if self._task is not None:
            await aio.cancel_and_wait(self._task)
            self._task = None

    async def abandon(self) -> None:
        """Stop supervising; the process keeps running for a later ``start()`` to adopt."""
        await self._cancel()

    async def stop(
        self, *, drainer: base.Drainer | None, grace_seconds: float, kill_after_seconds: float
    ) -> None:
        """Terminating → drain (if it may have had traffic): no new requests, up to
        ``grace_seconds`` for those in flight → SIGTERM → ``kill_after_seconds`` → SIGKILL."""
        was = self.state
        self.record.terminating = True
        self._set(base.ReplicaState.TERMINATING, "")
        await self._cancel()
        handle = self.handle
        if handle is not None and drainer is not None and was in _WAS_SERVING:
            assert self.record.port is not None
            try:
                await drainer(Endpoint(probe.HOST, self.record.port), grace_seconds)
            except Exception:
                # A failing drain must not keep the replica alive forever.
                log.exception("draining replica %s failed; stopping it anyway", self.id)
        if handle is not None:
            await handle.terminate(kill_after_seconds)
        self.handle = None
        self.record.pid = self.record.create_time = None
        self._ports.release(self.record.port)
