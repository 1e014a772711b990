"""Where the time between a spec change and the operator's first action goes.

For a rollout whose spec the operator has not acted on yet (``metadata.generation`` ahead
of ``status.observedGeneration``) it keeps one wall-clock stamp per stage, per generation,
the first time the stage is reached:

    received   the watch event reached the informer callback
    queued     the key entered the work queue (later than received when the key was being
               reconciled at that moment, or already queued for a routine look)
    dequeued   a worker took it
    acted      the reconcile's first API write for it returned (the new revision's ReplicaSet)
    planned    ``engine.plan`` returned
    written    the status with the new ``observedGeneration`` is in

Only spec changes are traced (a handful of dict operations each), not every event, so
it stays on in production; the scale benchmark (bench/k8s_scale.py) subtracts the stamps
from the time its own PUT returned. Records of finished generations are kept in a
bounded list.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Final

Key = tuple[str, str]
STAGES: Final = ("received", "queued", "dequeued", "acted", "planned", "written")


class SpecTrace:
    def __init__(self, keep: int = 20_000) -> None:
        self._open: dict[Key, tuple[int, dict[str, float]]] = {}
        self.finished: deque[tuple[Key, int, dict[str, float]]] = deque(maxlen=keep)

    def received(self, key: Key, generation: int) -> None:
        """A watch event showed ``generation`` not yet observed by the operator."""
        current = self._open.get(key)
        if current is not None and current[0] == generation:
            return
        if current is not None:
            self.finished.append((key, *current))
        self._open[key] = (generation, {"received": time.time()})

    def pending(self, key: Key) -> bool:
        return key in self._open

    def mark(
        self, key: Key, stage: str, *, generation: int | None = None, at: float | None = None
    ) -> None:
        """Stamp ``stage`` for the open generation of ``key`` (the first time only). With
        ``generation``, only if that is the open one: a reconcile that started before the
        spec changed is not the one acting on it."""
        current = self._open.get(key)
        if current is None or stage in current[1]:
            return
        if generation is None or generation == current[0]:
            current[1][stage] = time.time() if at is None else at

    def close(self, key: Key, generation: int) -> None:
        """The status for ``generation`` is written: the record is complete."""
        current = self._open.get(key)
        if current is None or current[0] > generation:
            return
        current[1].setdefault("written", time.time())
        del self._open[key]
        self.finished.append((key, *current))

    def records(self) -> list[dict[str, object]]:
        """Every record, finished first: namespace, name, generation and the stamps."""
        out: list[dict[str, object]] = []
        for items in (self.finished, [(k, *v) for k, v in self._open.items()]):
            for key, generation, stamps in items:
                out.append(
                    {"namespace": key[0], "name": key[1], "generation": generation, **stamps}
                )
        return out
