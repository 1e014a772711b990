"""``LocalPlatform``: every replica of a revision is a supervised OS process on this machine.

The controller owns one instance (built by ``changeover serve``) and calls it through the
``platforms.base.Platform`` Protocol. Desired counts and templates come in through
``ensure_revision``/``scale``; one ``local.replica.ReplicaRunner`` per replica keeps its
process running and probed; ``observe`` reads their in-memory state. Everything needed to
re-adopt replicas after a ``kill -9`` of the server (pid, process create time, port) is
written to ``state_dir/platform/local.json`` on every change; logs go to
``state_dir/logs/<rollout>/<revision>/<replica>.log``.

    platform = LocalPlatform(state_dir, drainer=router.drain, on_change=wake_controller)
    await platform.start()                       # re-adopts what an earlier run left
    await platform.ensure_revision(rollout="chat", revision=2, template=spec.template)
    await platform.scale(rollout="chat", revision=2, replicas=3)   # returns at once
    platform.observe("chat")[2].ready            # → the Ready replicas, with endpoints
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

from changeover import errors
from changeover.platforms import base
from changeover.platforms.local import hooks as hooks_mod
from changeover.platforms.local import ports as ports_mod
from changeover.platforms.local import process, replica, state_file
from changeover.spec import models

log = logging.getLogger(__name__)

Key = tuple[str, int]


class LocalPlatform:
    name = "local"
    capabilities = frozenset({"processes", "hooks", "adoption"})

    def __init__(
        self,
        state_dir: Path,
        *,
        drainer: base.Drainer | None = None,
        on_change: Callable[[], None] | None = None,
        port_range: tuple[int, int] = ports_mod.DEFAULT_RANGE,
        clock: Callable[[], float] = time.time,
        backoff: replica.Backoff | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        # Public and assignable: the controller may wire the router's drain after building us.
        self.drainer = drainer
        self.on_change = on_change
        self._clock = clock
        self._backoff = backoff or replica.Backoff()
        self._ports = ports_mod.PortAllocator(port_range)
        self._file = state_file.StateFile(self.state_dir / "platform" / "local.json")
        self._state = state_file.PlatformState()
        self._runners: dict[Key, list[replica.ReplicaRunner]] = {}
        self._stops: dict[Key, set[asyncio.Task[None]]] = {}
        self._hooks: dict[tuple[str, str], hooks_mod.HookRunner] = {}
        self._started = False
        self._closed = False

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Load the state file, re-adopt live replicas, replace dead ones, converge."""
        if self._started:
            return
        loaded = self._file.load()
        # Anything declared before start() (unusual) wins over the file.
        loaded.revisions.update(self._state.revisions)
        loaded.hooks.update(self._state.hooks)
        self._state = loaded
        for key, rec in self._state.revisions.items():
            self._runners.setdefault(key, [])
            for r in list(rec.replicas):
                self._restore(key, rec, r)
        self._restore_hooks()
        self._started = True
        for key in list(self._state.revisions):
            self._reconcile(key)
        self._changed()

    def _restore(
        self, key: Key, rec: state_file.RevisionRecord, r: state_file.ReplicaRecord
    ) -> None:
        handle = None
        if r.pid is not None and r.create_time is not None:
            handle = process.ProcessHandle.adopt(r.pid, r.create_time)
        if handle is not None and r.port is not None:
            self._ports.reserve(r.port)
            log.info("adopted replica %s pid %d port %d", r.id, r.pid, r.port)
        else:
            handle = None
            r.pid = r.create_time = r.ready_since = None
            try:
                r.port = self._ports.allocate(prefer=r.port)
            except errors.BackendError:
                r.port = None  # the runner retries allocation and reports the failure
        runner = self._new_runner(key, r, adopted=handle)
        if r.terminating:
            # It was being scaled down when the server died: finish the job. The routers
            # (they outlive serve) are not adopted yet, so the rest of its drain is not waited for.
            self._schedule_stop(key, runner, drain=False)
        else:
            runner.start()

    def _restore_hooks(self) -> None:
        for key, rec in list(self._state.hooks.items()):
            if rec.state != base.HookState.RUNNING.value:
                continue
            # Its exit code is lost with its parent; kill the orphan so a re-run never
            # overlaps it, and forget it so the controller starts it again.
            if rec.pid is not None and rec.create_time is not None:
                orphan = process.ProcessHandle.adopt(rec.pid, rec.create_time)
                if orphan is not None:
                    orphan.kill_group()
            del self._state.hooks[key]

    def running_replicas(self) -> int:
        """How many replica processes run now (for what ``serve`` says when it stops)."""
        return sum(1 for rs in self._runners.values() for r in rs if r.handle is not None)

    async def close(self, *, stop_replicas: bool = False) -> None:
        """Stop supervising. With ``stop_replicas`` every process we run is stopped (no
        drain: the router is going away too); otherwise they keep running for adoption."""
        if self._closed:
            return
        self._closed = True
        runners = [r for rs in self._runners.values() for r in rs if not r.terminating]
        pending = [t for ts in self._stops.values() for t in ts]
        if stop_replicas:
            await asyncio.gather(
                *(self._stop(r.rollout, r.revision, r, drain=False) for r in runners),
                *pending,
                return_exceptions=True,
            )
        else:
            for task in pending:
                task.cancel()
            await asyncio.gather(*(r.abandon() for r in runners), *pending, return_exceptions=True)
        await asyncio.gather(
            *(h.cancel(kill=stop_replicas) for h in self._hooks.values()), return_exceptions=True
        )
        self._save()

    # --- the Platform Protocol ---------------------------------------------------------

    async def ensure_revision(
        self, *, rollout: str, revision: int, template: models.ProcessTemplate
    ) -> None:
        key = (rollout, revision)
        rec = self._state.revisions.get(key)
        if rec is None:
            self._state.revisions[key] = state_file.RevisionRecord(desired=0, template=template)
            self._runners[key] = []
        elif rec.template == template:
            return
        else:
            rec.template = template  # takes effect as replicas are (re)started
        self._changed()

    async def scale(self, *, rollout: str, revision: int, replicas: int) -> None:
        if replicas < 0:
            raise ValueError(f"replicas must be >= 0, got {replicas}")
        rec = self._revision(rollout, revision)
        if rec.desired == replicas:
            return
        rec.desired = replicas
        if self._started and not self._closed:
            self._reconcile((rollout, revision))
        self._changed()

    async def delete_revision(self, *, rollout: str, revision: int) -> None:
        key = (rollout, revision)
        rec = self._state.revisions.get(key)
        if rec is None:
            return
        rec.desired = 0
        for runner in self._runners.get(key, []):
            if not runner.terminating:
                self._schedule_stop(key, runner, drain=True)
        await asyncio.gather(*self._stops.get(key, set()), return_exceptions=True)
        self._state.revisions.pop(key, None)
        self._runners.pop(key, None)
        self._stops.pop(key, None)
        self._changed()

    async def delete_rollout(self, rollout: str) -> None:
        revisions = [rev for (name, rev) in self._state.revisions if name == rollout]
        await asyncio.gather(
            *(self.delete_revision(rollout=rollout, revision=rev) for rev in revisions)
        )
        for key in [k for k in self._state.hooks if k[0] == rollout]:
            runner = self._hooks.pop(key, None)
            if runner is not None:
                await runner.cancel(kill=True)
            del self._state.hooks[key]
        self._changed()

    def observe(self, rollout: str) -> dict[int, base.RevisionState]:
        out: dict[int, base.RevisionState] = {}
        for (name, revision), rec in self._state.revisions.items():
            if name != rollout:
                continue
            runners = self._runners.get((name, revision), [])
            snapshots = tuple(r.snapshot() for r in sorted(runners, key=lambda r: r.record.seq))
            errors_seen = [r.last_error for r in runners if r.last_error]
            out[revision] = base.RevisionState(
                revision=revision,
                desired=rec.desired,
                replicas=snapshots,
                message=errors_seen[-1] if errors_seen else "",
            )
        return out

    async def start_hook(self, *, rollout: str, hook_id: str, hook: models.Hook) -> None:
        key = (rollout, hook_id)
        if key in self._state.hooks:
            return
        record = state_file.HookRecord(state=base.HookState.RUNNING.value)
        self._state.hooks[key] = record
        runner = hooks_mod.HookRunner(
            rollout=rollout,
            hook_id=hook_id,
            hook=hook,
            log_dir=self.state_dir / "logs" / rollout / "hooks",
            record=record,
            on_change=self._changed,
        )
        self._hooks[key] = runner
        runner.start()
        self._changed()

    def hook_status(self, *, rollout: str, hook_id: str) -> base.HookStatus | None:
        record = self._state.hooks.get((rollout, hook_id))
        return None if record is None else hooks_mod.to_status(hook_id, record)

    # --- convergence -------------------------------------------------------------------

    def _revision(self, rollout: str, revision: int) -> state_file.RevisionRecord:
        rec = self._state.revisions.get((rollout, revision))
        if rec is None:
            raise errors.NotFound(f"revision {revision} of rollout {rollout!r} is not known")
        return rec

    def _reconcile(self, key: Key) -> None:
        """Start missing replicas, or pick victims (not-ready first, newest first)."""
        rec = self._state.revisions[key]
        active = [r for r in self._runners.setdefault(key, []) if not r.terminating]
        missing = rec.desired - len(active)
        for _ in range(missing):
            seq = self._state.next_seq
            self._state.next_seq += 1
            record = state_file.ReplicaRecord(id=f"{key[0]}-{key[1]}-{seq}", seq=seq)
            rec.replicas.append(record)
            self._new_runner(key, record, adopted=None).start()
        if missing < 0:
            victims = sorted(
                active, key=lambda r: (r.state is base.ReplicaState.READY, -r.record.seq)
            )
            for runner in victims[:-missing]:
                self._schedule_stop(key, runner, drain=True)

    def _new_runner(
        self, key: Key, record: state_file.ReplicaRecord, *, adopted: process.ProcessHandle | None
    ) -> replica.ReplicaRunner:
        rollout, revision = key
        runner = replica.ReplicaRunner(
            rollout=rollout,
            revision=revision,
            record=record,
            template=lambda: self._state.revisions[key].template,
            ports=self._ports,
            log_dir=self.state_dir / "logs" / rollout / str(revision),
            on_change=self._changed,
            clock=self._clock,
            backoff=self._backoff,
            adopted=adopted,
        )
        self._runners.setdefault(key, []).append(runner)
        return runner

    def _schedule_stop(self, key: Key, runner: replica.ReplicaRunner, *, drain: bool) -> None:
        runner.record.terminating = True  # so a concurrent reconcile does not count it
        task = asyncio.create_task(
            self._stop(key[0], key[1], runner, drain=drain), name=f"stop {runner.id}"
        )
        tasks = self._stops.setdefault(key, set())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _stop(
        self, rollout: str, revision: int, runner: replica.ReplicaRunner, *, drain: bool
    ) -> None:
        key = (rollout, revision)
        rec = self._state.revisions.get(key)
        template = rec.template if rec is not None else None
        try:
            await runner.stop(
                drainer=self.drainer if drain else None,
                grace_seconds=template.termination_grace_period_seconds if template else 30.0,
                kill_after_seconds=template.kill_after_seconds if template else 10.0,
            )
        except asyncio.CancelledError:
            # close() without stopping replicas: keep the record (marked terminating) so the
            # next start() finishes this stop instead of orphaning the process.
            raise
        except Exception:
            log.exception("stopping replica %s failed", runner.id)
        runners = self._runners.get(key, [])
        if runner in runners:
            runners.remove(runner)
        if rec is not None and runner.record in rec.replicas:
            rec.replicas.remove(runner.record)
        self._changed()

    # --- persistence and notification --------------------------------------------------

    def _save(self) -> None:
        try:
            self._file.save(self._state)
        except OSError:
            # Losing one write only costs adoption after a crash; keep supervising.
            log.exception("cannot write %s", self._file.path)

    def _changed(self) -> None:
        self._save()
        if self.on_change is not None:
            try:
                self.on_change()
            except Exception:
                log.exception("on_change callback failed")
