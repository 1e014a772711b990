"""A warning, with the stack it is stuck in, when a server's event loop stops turning.

``serve`` and each router process run everything on one event loop: the API, the
controller, every proxied request and stream. A call that blocks it (a wait for a process,
a lock, a slow disk) stops all of them at once, and from outside it looks like a server
that accepts connections and never answers. ``LoopWatchdog`` makes that visible: the loop
beats every ``interval`` seconds; a thread notices when the beats stop for ``threshold``
seconds and logs where the loop thread is, then how long it was stuck once it turns again.

    async def serve_forever() -> None:
        with LoopWatchdog(name="serve's event loop"):
            await stop.wait()  # a time.sleep(9) anywhere on the loop is now logged
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import traceback
from types import TracebackType

log = logging.getLogger(__name__)

THRESHOLD_SECONDS = 5.0
INTERVAL_SECONDS = 0.5
STACK_LINES = 30


class LoopWatchdog:
    """Watches the running loop while the ``with`` block (inside it) lasts."""

    def __init__(
        self,
        *,
        threshold: float = THRESHOLD_SECONDS,
        interval: float = INTERVAL_SECONDS,
        name: str = "event loop",
    ) -> None:
        self._threshold = threshold
        self._interval = interval
        self._name = name
        self._last = time.monotonic()
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._beat_handle: asyncio.TimerHandle | None = None
        self._loop_thread = 0
        self._thread: threading.Thread | None = None

    def __enter__(self) -> LoopWatchdog:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._beat()
        self._thread = threading.Thread(target=self._watch, name="loop-watchdog", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._beat_handle is not None:
            self._beat_handle.cancel()
        if self._thread is not None:
            self._thread.join(self._interval * 4)

    def _beat(self) -> None:
        self._last = time.monotonic()
        assert self._loop is not None
        self._beat_handle = self._loop.call_later(self._interval, self._beat)

    def _watch(self) -> None:
        stuck_since: float | None = None
        while not self._stop.wait(self._interval):
            last = self._last
            stuck = time.monotonic() - last
            if stuck_since is None and stuck >= self._threshold:
                stuck_since = last
                log.warning(
                    "%s blocked for %.1fs: every request and stream of this process waits;"
                    " it is in:\n%s",
                    self._name,
                    stuck,
                    self._stack(),
                )
            elif stuck_since is not None and last > stuck_since:
                log.warning("%s turns again after %.1fs blocked", self._name, last - stuck_since)
                stuck_since = None

    def _stack(self) -> str:
        frame = sys._current_frames().get(self._loop_thread)
        if frame is None:
            return "  (the loop thread has ended)"
        lines = "".join(traceback.format_stack(frame)).rstrip().splitlines()
        return "\n".join(lines[-STACK_LINES:])
