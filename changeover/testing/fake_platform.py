"""``FakePlatform``: the Platform Protocol in memory, for fast unit tests of the controller.

Nothing runs. By default ``scale`` makes replicas Ready at once; with ``auto_ready=False``
new replicas stay Starting until the test says ``make_ready``, so a test can hold a
rollout mid-step. Hooks succeed at once unless ``auto_hooks=False``, when they stay running
until ``finish_hook``. Every call is recorded in ``calls`` for assertions::

    platform = FakePlatform(auto_ready=False)
    await platform.ensure_revision(rollout="chat", revision=2, template=template)
    await platform.scale(rollout="chat", revision=2, replicas=3)
    platform.make_ready("chat", 2, count=1)
    assert len(platform.observe("chat")[2].ready) == 1
    assert platform.calls[-1] == ("scale", "chat", 2, 3)
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable
from typing import Any

from changeover import errors
from changeover.endpoints import Endpoint
from changeover.platforms import base
from changeover.spec import models

_NOT_READY_FIRST = {
    base.ReplicaState.CRASHED: 0,
    base.ReplicaState.STARTING: 1,
    base.ReplicaState.NOT_READY: 2,
    base.ReplicaState.READY: 3,
}


@dataclasses.dataclass
class _Revision:
    template: models.ProcessTemplate
    desired: int = 0
    replicas: list[base.Replica] = dataclasses.field(default_factory=list)
    message: str = ""


class FakePlatform:
    name = "fake"
    capabilities = frozenset({"hooks"})

    def __init__(
        self,
        *,
        auto_ready: bool = True,
        auto_hooks: bool = True,
        drainer: base.Drainer | None = None,
        on_change: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.auto_ready = auto_ready
        self.auto_hooks = auto_hooks
        self.drainer = drainer
        self.on_change = on_change
        self.clock = clock
        self.calls: list[tuple[Any, ...]] = []
        self.drained: list[Endpoint] = []
        self.started = False
        self.closed = False
        self._revisions: dict[tuple[str, int], _Revision] = {}
        self._hooks: dict[tuple[str, str], base.HookStatus] = {}
        self._ids = itertools.count(1)
        self._ports = itertools.count(30000)

    # --- the Platform Protocol ---------------------------------------------------------

    async def start(self) -> None:
        self.calls.append(("start",))
        self.started = True

    async def close(self, *, stop_replicas: bool = False) -> None:
        self.calls.append(("close", stop_replicas))
        self.closed = True
        if stop_replicas:
            for rev in self._revisions.values():
                rev.replicas.clear()

    async def ensure_revision(
        self, *, rollout: str, revision: int, template: models.ProcessTemplate
    ) -> None:
        self.calls.append(("ensure_revision", rollout, revision))
        existing = self._revisions.get((rollout, revision))
        if existing is None:
            self._revisions[(rollout, revision)] = _Revision(template=template)
        else:
            existing.template = template

    async def scale(self, *, rollout: str, revision: int, replicas: int) -> None:
        self.calls.append(("scale", rollout, revision, replicas))
        rev = self._get(rollout, revision)
        rev.desired = replicas
        missing = replicas - len(rev.replicas)
        for _ in range(missing):
            rev.replicas.append(self._new_replica(rollout, revision))
        if missing < 0:
            # Same victim order as the local platform: not ready first, newest first.
            order = sorted(
                enumerate(rev.replicas), key=lambda p: (_NOT_READY_FIRST[p[1].state], -p[0])
            )
            victims = [r for _, r in order[:-missing]]
            for victim in victims:
                await self._drain(victim, rev.template)
            rev.replicas = [r for r in rev.replicas if r not in victims]
        self._changed()

    async def delete_revision(self, *, rollout: str, revision: int) -> None:
        self.calls.append(("delete_revision", rollout, revision))
        rev = self._revisions.pop((rollout, revision), None)
        if rev is not None:
            for replica in rev.replicas:
                await self._drain(replica, rev.template)
        self._changed()

    def observe(self, rollout: str) -> dict[int, base.RevisionState]:
        return {
            revision: base.RevisionState(
                revision=revision,
                desired=rev.desired,
                replicas=tuple(rev.replicas),
                message=rev.message,
            )
            for (name, revision), rev in sorted(self._revisions.items())
            if name == rollout
        }

    async def start_hook(self, *, rollout: str, hook_id: str, hook: models.Hook) -> None:
        if (rollout, hook_id) in self._hooks:
            return
        self.calls.append(("start_hook", rollout, hook_id))
        state = base.HookState.SUCCEEDED if self.auto_hooks else base.HookState.RUNNING
        self._hooks[(rollout, hook_id)] = base.HookStatus(hook_id=hook_id, state=state)

    def hook_status(self, *, rollout: str, hook_id: str) -> base.HookStatus | None:
        return self._hooks.get((rollout, hook_id))

    async def delete_rollout(self, rollout: str) -> None:
        self.calls.append(("delete_rollout", rollout))
        for key in [k for k in self._revisions if k[0] == rollout]:
            gone = self._revisions.pop(key)
            for replica in gone.replicas:
                await self._drain(replica, gone.template)
        for hook_key in [k for k in self._hooks if k[0] == rollout]:
            del self._hooks[hook_key]
        self._changed()

    # --- test controls -----------------------------------------------------------------

    def make_ready(self, rollout: str, revision: int, count: int | None = None) -> None:
        """Make ``count`` (default: all) not-ready replicas Ready, oldest first."""
        self._transition(rollout, revision, count, to=base.ReplicaState.READY)

    def make_not_ready(self, rollout: str, revision: int, count: int | None = None) -> None:
        """Make ``count`` (default: all) Ready replicas NotReady, oldest first."""
        self._transition(rollout, revision, count, to=base.ReplicaState.NOT_READY)

    def crash(self, rollout: str, revision: int, count: int = 1, message: str = "") -> None:
        """Crash ``count`` replicas: Crashed, one more restart each, revision message set."""
        rev = self._get(rollout, revision)
        for i, replica in enumerate(rev.replicas[:count]):
            rev.replicas[i] = dataclasses.replace(
                replica,
                state=base.ReplicaState.CRASHED,
                ready_since=None,
                restarts=replica.restarts + 1,
                message=message or "exited with code 1",
            )
        rev.message = message or "exited with code 1"
        self._changed()

    def finish_hook(
        self, rollout: str, hook_id: str, *, succeeded: bool = True, message: str = ""
    ) -> None:
        state = base.HookState.SUCCEEDED if succeeded else base.HookState.FAILED
        self._hooks[(rollout, hook_id)] = base.HookStatus(
            hook_id=hook_id, state=state, message=message
        )
        self._changed()

    def template_of(self, rollout: str, revision: int) -> models.ProcessTemplate:
        return self._get(rollout, revision).template

    # --- internals ---------------------------------------------------------------------

    def _get(self, rollout: str, revision: int) -> _Revision:
        rev = self._revisions.get((rollout, revision))
        if rev is None:
            raise errors.NotFound(f"revision {revision} of rollout {rollout!r} is not known")
        return rev

    def _new_replica(self, rollout: str, revision: int) -> base.Replica:
        ready = self.auto_ready
        return base.Replica(
            id=f"{rollout}-{revision}-{next(self._ids)}",
            revision=revision,
            state=base.ReplicaState.READY if ready else base.ReplicaState.STARTING,
            endpoint=Endpoint("127.0.0.1", next(self._ports)),
            ready_since=self.clock() if ready else None,
        )

    def _transition(
        self, rollout: str, revision: int, count: int | None, *, to: base.ReplicaState
    ) -> None:
        rev = self._get(rollout, revision)
        changed = 0
        for i, replica in enumerate(rev.replicas):
            if count is not None and changed >= count:
                break
            if (replica.state is base.ReplicaState.READY) == (to is base.ReplicaState.READY):
                continue
            rev.replicas[i] = dataclasses.replace(
                replica,
                state=to,
                ready_since=self.clock() if to is base.ReplicaState.READY else None,
                message="",
            )
            changed += 1
        self._changed()

    async def _drain(self, replica: base.Replica, template: models.ProcessTemplate) -> None:
        if replica.endpoint is None or replica.state not in (
            base.ReplicaState.READY,
            base.ReplicaState.NOT_READY,
        ):
            return
        self.drained.append(replica.endpoint)
        if self.drainer is not None:
            await self.drainer(replica.endpoint, template.termination_grace_period_seconds)

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()
