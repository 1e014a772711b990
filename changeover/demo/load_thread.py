"""Steady load for the demo: ``changeover.loadgen`` on an event loop in a thread of its own.

The demo's script is plain sequential code (apply, watch, promote) that redraws a Rich view;
the load generator is asyncio. Running the generator on its own loop in a daemon thread keeps
its schedule steady while the script sleeps or waits on the API, and every call into it
goes through ``run_coroutine_threadsafe`` so the generator is only ever touched by its loop.

    load = LoadThread()
    run = load.start("http://127.0.0.1:8080", rate=150)
    load.snapshot(run).by_revision   # {'1': 1200, '2': 310}
    load.stop(run); load.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from changeover import loadgen

T = TypeVar("T")

CONCURRENCY = 32
MAX_SECONDS = 900.0  # a hard bound: the demo's whole run is a few minutes
MAX_REQUESTS = 500_000


class LoadThread:
    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="changeover-demo-load", daemon=True
        )
        self._thread.start()
        self._running: list[loadgen.LoadGenerator] = []

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def start(
        self, url: str, *, rate: float, body_fn: Callable[[int], bytes] | None = None
    ) -> loadgen.LoadGenerator:
        """Start sending ``rate`` GETs per second to ``url`` (POSTs of ``body_fn(i)``)."""

        async def make() -> loadgen.LoadGenerator:
            gen = loadgen.LoadGenerator(
                url,
                rate,
                concurrency=CONCURRENCY,
                max_requests=MAX_REQUESTS,
                max_seconds=MAX_SECONDS,
                timeout_s=10.0,
                body_fn=body_fn,
            )
            await gen.start()
            return gen

        gen = self._call(make(), 10.0)
        self._running.append(gen)
        return gen

    def snapshot(self, gen: loadgen.LoadGenerator) -> loadgen.LoadReport:
        async def snap() -> loadgen.LoadReport:
            return gen.snapshot()

        return self._call(snap(), 10.0)

    def stop(self, gen: loadgen.LoadGenerator) -> loadgen.LoadReport:
        """Stop sending; in-flight requests finish; the final report."""
        report = self._call(gen.stop(), 30.0)
        if gen in self._running:
            self._running.remove(gen)
        return report

    def close(self) -> None:
        """Stop whatever still runs and end the thread. Idempotent, never raises."""
        for gen in list(self._running):
            with contextlib.suppress(Exception):
                self.stop(gen)
        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10.0)
        if not self._thread.is_alive():
            self._loop.close()
