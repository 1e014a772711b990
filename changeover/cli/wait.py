"""Waiting for rollouts to settle: ``apply --wait`` and ``get NAME --watch --until-done``.

The subtle part is not mistaking the *previous* rollout's terminal phase for this one's:
right after an apply the controller may not have looked yet, so the status still says
``Healthy`` (for the old revision) or ``Aborted`` (from the last attempt). A status counts
as this apply's outcome only if it is about the applied revision, or if we have seen the
rollout leave its terminal phase since::

    applied revision 3:  Healthy stable=2  → not yet (old news)
                         Progressing       → moving
                         Healthy stable=3  → done, exit 0
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from changeover import errors
from changeover.cli.backend import Backend

JSON = dict[str, Any]
TERMINAL = ("Healthy", "Aborted", "Degraded")
POLL_SECONDS = 0.5


def is_terminal(status: JSON) -> bool:
    return status.get("phase") in TERMINAL


@dataclass
class Waiter:
    """Tracks one rollout towards its outcome for ``revision``."""

    name: str
    revision: int | None
    # "unchanged" applies have nothing new to roll out: their current phase is the answer.
    unchanged: bool = False
    seen_moving: bool = False
    last: JSON = field(default_factory=dict)

    def settled(self, status: JSON) -> bool:
        self.last = status
        if not is_terminal(status):
            self.seen_moving = True
            return False
        if self.unchanged or self.seen_moving or self.revision is None:
            return True
        if status.get("phase") == "Healthy":
            return bool(status.get("stableRevision") == self.revision)
        return self.revision in (status.get("canaryRevision"), status.get("stableRevision"))


def wait_all(
    client: Backend,
    waiters: list[Waiter],
    *,
    timeout: float,
    on_change: Callable[[Waiter, JSON], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Waiter]:
    """Poll until every waiter has settled; TemporaryBackendError-tolerant (a restarting
    server is waited for), ``StateError`` when ``timeout`` runs out."""
    deadline = time.monotonic() + timeout
    pending = list(waiters)
    seen: dict[str, tuple[Any, ...]] = {}
    while pending:
        for waiter in list(pending):
            try:
                status = client.status(waiter.name)
            except errors.TemporaryBackendError:
                continue
            key = (status.get("phase"), status.get("currentStepIndex"), status.get("message"))
            if on_change is not None and seen.get(waiter.name) != key:
                on_change(waiter, status)
            seen[waiter.name] = key
            if waiter.settled(status):
                pending.remove(waiter)
        if not pending:
            break
        if time.monotonic() >= deadline:
            names = ", ".join(f"{w.name} ({w.last.get('phase', 'unknown')})" for w in pending)
            raise errors.StateError(f"timed out after {timeout:g}s waiting for {names}")
        sleep(POLL_SECONDS)
    return waiters
