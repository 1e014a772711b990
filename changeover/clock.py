"""Time for the controller: wall-clock seconds (they survive a restart, unlike monotonic).

The engine never reads a clock; the controller passes ``clock.now()`` into every Context,
so tests drive a 25-minute canary with a ``FakeClock`` in milliseconds.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float: ...


class SystemClock:
    def now(self) -> float:
        return time.time()


class FakeClock:
    """A clock that moves only when told: ``clock.advance(30)``."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds
