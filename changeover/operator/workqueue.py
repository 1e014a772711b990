"""A de-duplicating work queue of rollout keys, as client-go's: a key queued many times
while waiting is processed once; a key never runs on two workers at once (queued again
while running, it runs again afterwards); ``add_after`` schedules a later look.

``add(key, urgent=True)`` queues the key ahead of every non-urgent one (urgent keys among
themselves stay first in, first out): a spec a user just changed is acted on before the
many status-driven looks (a ReplicaSet got one more ready pod) queued before it, which is
what keeps "spec change to first action" short with 1,000 rollouts.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Generic, TypeVar

K = TypeVar("K")


class WorkQueue(Generic[K]):
    def __init__(self) -> None:
        self._urgent: deque[K] = deque()
        self._order: deque[K] = deque()
        self._ready = asyncio.Event()
        self._waiting: set[K] = set()
        self._running: set[K] = set()
        self._dirty: dict[K, bool] = {}  # key → urgent, for keys queued while running
        self._timers: dict[K, asyncio.TimerHandle] = {}
        # When each waiting or running key entered a deque (wall clock): how long the
        # queue held it, for ``operator.trace``.
        self._since: dict[K, float] = {}
        self._idle = asyncio.Event()  # set while no key is running
        self._idle.set()
        self._closed = False

    def add(self, key: K, *, urgent: bool = False) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        if key in self._running:
            self._dirty[key] = self._dirty.get(key, False) or urgent
            return
        if key in self._waiting:
            if urgent and key in self._order:
                # Promote it (rare: a spec change for a key already queued for a look).
                self._order.remove(key)
                self._urgent.append(key)
                self._since[key] = time.time()
            return
        self._waiting.add(key)
        self._since[key] = time.time()
        (self._urgent if urgent else self._order).append(key)
        self._ready.set()

    def add_after(self, key: K, delay: float) -> None:
        """Look at ``key`` again after ``delay`` seconds (an earlier timer wins)."""
        if self._closed:
            return
        loop = asyncio.get_running_loop()
        existing = self._timers.get(key)
        due = loop.time() + delay
        if existing is not None:
            if existing.when() <= due:
                return
            existing.cancel()
        self._timers[key] = loop.call_at(due, self._fire, key)

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        self.add(key)

    async def get(self) -> K:
        """The next key to process (waits; for ever once the queue is closed)."""
        while self._closed or (not self._urgent and not self._order):
            self._ready.clear()
            await self._ready.wait()
        key = self._urgent.popleft() if self._urgent else self._order.popleft()
        self._waiting.discard(key)
        self._running.add(key)
        self._idle.clear()
        return key

    def enqueued_at(self, key: K) -> float | None:
        """When a waiting or running ``key`` last entered the queue (``time.time()``)."""
        return self._since.get(key)

    def done(self, key: K) -> None:
        self._running.discard(key)
        self._since.pop(key, None)
        if key in self._dirty:
            self.add(key, urgent=self._dirty.pop(key))
        if not self._running:
            self._idle.set()

    async def drained(self) -> None:
        """Return once no key is being processed (after ``close``: the last ones done)."""
        await self._idle.wait()

    def __len__(self) -> int:
        return len(self._waiting)

    def close(self) -> None:
        """Hand out no more keys and drop the delayed looks; keys being processed go on."""
        self._closed = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
