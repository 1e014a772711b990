"""Steady background load for the end-to-end tests: ``changeover.loadgen`` on a thread of
its own, and summaries of what users saw."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from e2e_helpers import wait_until

from changeover.loadgen import LoadGenerator, LoadReport


@dataclass
class BackgroundLoad:
    """``LoadGenerator`` on its own thread and event loop, so a synchronous test can run the
    CLI (blocking) while the load keeps its rate.

        with BackgroundLoad(url, rate=250) as load:
            ...                   # roll out
            load.wait_for("2", 200)  # until v2 has answered 200 more requests
        report = load.report
    """

    url: str
    rate: float = 250.0
    # Room for latency spikes on a shared box: 64 in flight at 250/s is 256 ms of slack.
    concurrency: int = 64
    max_seconds: float = 240.0
    headers_fn: Callable[[int], Mapping[str, str]] | None = None
    report: LoadReport | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _gen: LoadGenerator | None = None
    _thread: threading.Thread | None = None
    _stop: asyncio.Event | None = None
    _started: threading.Event = field(default_factory=threading.Event)
    _error: BaseException | None = None

    def start(self) -> BackgroundLoad:
        self._thread = threading.Thread(target=self._run, name="e2e-load", daemon=True)
        self._thread.start()
        if not self._started.wait(10):
            raise AssertionError("the load generator did not start")
        if self._error is not None:
            raise self._error
        return self

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # surfaced by start()/stop()
            self._error = exc
            self._started.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._gen = LoadGenerator(
            self.url,
            self.rate,
            concurrency=self.concurrency,
            max_requests=int(self.rate * self.max_seconds),
            max_seconds=self.max_seconds,
            headers_fn=self.headers_fn,
        )
        await self._gen.start()
        self._started.set()
        await self._stop.wait()
        self.report = await self._gen.stop()

    def snapshot(self) -> LoadReport:
        assert self._loop is not None and self._gen is not None
        gen = self._gen

        async def snap() -> LoadReport:
            return gen.snapshot()

        return asyncio.run_coroutine_threadsafe(snap(), self._loop).result(10)

    def wait_for(self, revision: str, more: int, *, within: float = 30) -> LoadReport:
        """Until ``revision`` has answered ``more`` requests beyond what it had answered now."""
        base = self.snapshot().by_revision.get(revision, 0)
        return wait_until(
            lambda: (s := self.snapshot()).by_revision.get(revision, 0) >= base + more and s,
            within=within,
            what=f"{more} more responses from revision {revision}",
        )

    def stop(self) -> LoadReport:
        if self.report is not None:
            return self.report
        assert self._loop is not None and self._stop is not None and self._thread is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        if self._error is not None:
            raise self._error
        assert self.report is not None, "the load generator did not stop"
        return self.report

    def __enter__(self) -> BackgroundLoad:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self.stop()


def describe(report: LoadReport) -> str:
    """A compact account of a load run for assertion messages."""
    return (
        f"total={report.total} failures={report.failures} by_revision={report.by_revision} "
        f"statuses={report.status_counts} rate={report.rate_per_s:.0f}/s "
        f"saturated={report.saturated} examples={report.failure_examples[:5]}"
    )


def run_load(
    url: str,
    requests: int,
    *,
    rate: float = 400.0,
    concurrency: int = 32,
    headers_fn: Callable[[int], Mapping[str, str]] | None = None,
) -> LoadReport:
    """Exactly ``requests`` GETs at ``rate``/s through the load generator; its report."""
    gen = LoadGenerator(
        url,
        rate,
        concurrency=concurrency,
        max_requests=requests,
        max_seconds=max(30.0, 4 * requests / rate),
        headers_fn=headers_fn,
    )
    report = asyncio.run(gen.run())
    assert report.total == requests, describe(report)
    return report
