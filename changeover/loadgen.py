"""An open-loop HTTP load generator for loopback services: the traffic behind tests and demos.

The integration tests and ``changeover demo`` drive a rollout with it and then ask what users
saw: how many requests each revision answered, second by second, how many failed and how,
and the latency. It sends GETs at a fixed rate over pooled keep-alive connections, written
on raw asyncio streams because a client like httpx spends several times the CPU per request,
and on a 2-core box the generator, the router and the replicas share the cores.

Safety rules, enforced here rather than trusted to callers: only loopback hosts (a load
generator must never be pointed at someone else's service by a typo), and every run is
bounded by ``max_requests`` and ``max_seconds``, which have no defaults.

Example::

    gen = LoadGenerator("http://127.0.0.1:8080", 200, concurrency=16,
                        max_requests=5_000, max_seconds=30)
    await gen.start()
    await asyncio.sleep(10)
    report = await gen.stop()
    report.by_revision        # {'v1': 1604, 'v2': 396}
    report.timeline[3]        # {'v1': 160, 'v2': 40}: responses in the fourth second

Which revision answered comes from the ``x-changeover-revision`` header the builtin router
adds, else from the JSON body's ``"version"`` (talking to a replica directly), else from
``x-app-version``; otherwise it is ``"unknown"``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

REVISION_HEADER = "x-changeover-revision"
UNKNOWN = "unknown"

# Hard ceilings, so that no caller (or typo) turns a test helper into a flood.
MAX_RATE_PER_S = 10_000.0
MAX_CONCURRENCY = 1_024
MAX_SECONDS = 3_600.0
MAX_REQUESTS = 10_000_000

_MAX_HEAD = 64 * 1024
_MAX_KEPT_BODY = 64 * 1024  # only this much is kept, to read "version" from small JSON
_MAX_EXAMPLES = 10

StopReason = Literal["stopped", "max_requests", "max_seconds", "running"]
HeadersFn = Callable[[int], Mapping[str, str]]


def check_loopback(url: str) -> tuple[str, int]:
    """The (host, port) of an ``http://`` URL on a loopback host; ValueError otherwise.

    Names are not resolved (DNS could point anywhere): only ``localhost`` and literal
    loopback addresses pass.

    >>> check_loopback("http://127.0.0.1:8080/x")
    ('127.0.0.1', 8080)
    >>> check_loopback("http://example.com/")
    Traceback (most recent call last):
    ...
    ValueError: refusing to send load to 'example.com': only loopback hosts are allowed
    """
    parts = urlsplit(url)
    if parts.scheme != "http":
        raise ValueError(f"expected an http:// URL, got {url!r}")
    host = parts.hostname or ""
    loopback = host == "localhost"
    if not loopback:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
    if not loopback:
        raise ValueError(f"refusing to send load to {host!r}: only loopback hosts are allowed")
    return host, parts.port or 80


@dataclass(frozen=True)
class LoadReport:
    """What the users of a load run saw. ``timeline[i]`` is second ``i`` of the run."""

    total: int
    ok: int
    failures: int
    failure_examples: list[str]
    status_counts: dict[int, int]
    by_revision: dict[str, int]
    failures_by_revision: dict[str, int]
    timeline: list[dict[str, int]]
    failure_timeline: list[int]
    latency_p50_ms: float
    latency_p99_ms: float
    duration_s: float
    stopped_by: StopReason
    saturated: int = 0  # ticks that had to wait for a free connection: the rate was not met

    @property
    def rate_per_s(self) -> float:
        """Achieved completions per second."""
        return self.total / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def error_rate(self) -> float:
        return self.failures / self.total if self.total else 0.0

    def share(self, revision: str) -> float:
        """The fraction of all responses that ``revision`` answered (0.0 to 1.0)."""
        return self.by_revision.get(revision, 0) / self.total if self.total else 0.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["rate_per_s"] = round(self.rate_per_s, 1)
        data["error_rate"] = round(self.error_rate, 4)
        return data


@dataclass
class _Result:
    at: float  # completion time, seconds since the run started
    latency: float
    status: int | None  # None: no response (connection error, timeout)
    revision: str
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.status is not None and 200 <= self.status < 300


@dataclass
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    used: int = 0

    def close(self) -> None:
        self.writer.close()


class _StaleConnection(Exception):
    """A reused keep-alive connection died before any byte of the response: safe to retry."""


@dataclass
class _Collector:
    results: list[_Result] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)


class LoadGenerator:
    """Send ``rate_per_s`` GETs per second to ``url`` + ``path`` until stopped or a limit hits.

    At most ``concurrency`` requests are in flight; when all are busy the schedule waits (and
    ``LoadReport.saturated`` counts it) instead of queueing without bound. ``headers_fn(i)``
    gives extra headers for request ``i`` (say a ``x-user-id`` for sticky A/B tests).
    """

    def __init__(
        self,
        url: str,
        rate_per_s: float,
        *,
        concurrency: int,
        max_requests: int,
        max_seconds: float,
        headers_fn: HeadersFn | None = None,
        path: str | None = None,
        timeout_s: float = 10.0,
        body_fn: Callable[[int], bytes] | None = None,
    ) -> None:
        self.host, self.port = check_loopback(url)
        if not 0 < rate_per_s <= MAX_RATE_PER_S:
            raise ValueError(f"rate_per_s must be in (0, {MAX_RATE_PER_S:g}], got {rate_per_s}")
        if not 1 <= concurrency <= MAX_CONCURRENCY:
            raise ValueError(f"concurrency must be in [1, {MAX_CONCURRENCY}], got {concurrency}")
        if not 1 <= max_requests <= MAX_REQUESTS:
            raise ValueError(f"max_requests must be in [1, {MAX_REQUESTS}], got {max_requests}")
        if not 0 < max_seconds <= MAX_SECONDS:
            raise ValueError(f"max_seconds must be in (0, {MAX_SECONDS:g}], got {max_seconds}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        url_path = urlsplit(url).path
        self.path = path or url_path or "/"
        if not self.path.startswith("/"):
            raise ValueError(f"path must start with '/', got {self.path!r}")
        self.rate_per_s = rate_per_s
        self.concurrency = concurrency
        self.max_requests = max_requests
        self.max_seconds = max_seconds
        self.headers_fn = headers_fn
        self.timeout_s = timeout_s
        # With ``body_fn``: POSTs of ``body_fn(i)`` as JSON (a chat completion request).
        self.body_fn = body_fn

        method = "GET" if body_fn is None else "POST"
        self._base_head = (
            f"{method} {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            "User-Agent: changeover-loadgen\r\nAccept: */*\r\n"
        ).encode("latin-1")
        self._idle: list[_Connection] = []
        self._collected = _Collector()
        self._in_flight: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(concurrency)
        self._stopping = asyncio.Event()
        self._ticker: asyncio.Task[None] | None = None
        self._started_at = 0.0
        self._ended_at: float | None = None
        self._stopped_by: StopReason = "running"
        self._saturated = 0
        self._report: LoadReport | None = None

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        if self._ticker is not None:
            raise RuntimeError("this LoadGenerator was already started")
        self._started_at = time.monotonic()
        self._ticker = asyncio.create_task(self._tick(), name="loadgen-ticker")

    async def wait(self) -> LoadReport:
        """Run until ``max_requests`` or ``max_seconds`` ends it; then the report."""
        if self._ticker is None:
            raise RuntimeError("start() first")
        await asyncio.shield(self._ticker)
        return await self.stop()

    async def run(self) -> LoadReport:
        """``start()`` then ``wait()``: one bounded run."""
        await self.start()
        return await self.wait()

    async def stop(self) -> LoadReport:
        """Stop sending, let in-flight requests finish (up to ``timeout_s``), report.

        Idempotent: a second call returns the same report.
        """
        if self._report is not None:
            return self._report
        if self._ticker is None:
            raise RuntimeError("start() first")
        self._stopping.set()
        await self._ticker
        if self._in_flight:
            await asyncio.wait(set(self._in_flight), timeout=self.timeout_s)
        for task in list(self._in_flight):
            task.cancel()
        if self._in_flight:
            await asyncio.wait(set(self._in_flight))
        for conn in self._idle:
            conn.close()
        self._idle.clear()
        if self._stopped_by == "running":
            self._stopped_by = "stopped"
        self._ended_at = time.monotonic()
        self._report = self.snapshot()
        return self._report

    async def __aenter__(self) -> LoadGenerator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- the schedule ------------------------------------------------------------------

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        interval = 1.0 / self.rate_per_s
        due = start
        sent = 0
        while not self._stopping.is_set():
            if sent >= self.max_requests:
                self._stopped_by = "max_requests"
                return
            now = loop.time()
            if now - start >= self.max_seconds:
                self._stopped_by = "max_seconds"
                return
            if due > now:
                # Sleep until the next request is due, but wake at once on stop().
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), due - now)
                continue
            if self._slots.locked():
                self._saturated += 1
            await self._slots.acquire()
            task = asyncio.create_task(self._one(sent))
            self._in_flight.add(task)
            task.add_done_callback(self._done)
            sent += 1
            due += interval
            # After a stall (a saturated pool, a paused event loop) resume the rate rather
            # than firing a burst to catch up: the burst would measure our backlog, not them.
            if loop.time() - due > 1.0:
                due = loop.time()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._slots.release()

    # --- one request -------------------------------------------------------------------

    async def _one(self, index: int) -> None:
        head = self._base_head
        if self.headers_fn is not None:
            extra = "".join(f"{k}: {v}\r\n" for k, v in self.headers_fn(index).items())
            head += extra.encode("latin-1")
        request = head + b"\r\n"
        if self.body_fn is not None:
            body = self.body_fn(index)
            request = head + b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
                len(body),
                body,
            )
        t0 = time.monotonic()
        result: _Result
        try:
            async with asyncio.timeout(self.timeout_s):
                try:
                    result = await self._exchange(request, fresh=False)
                except _StaleConnection:
                    result = await self._exchange(request, fresh=True)
        except TimeoutError:
            result = _Result(0, 0, None, UNKNOWN, f"timeout after {self.timeout_s:g}s")
        except (OSError, asyncio.IncompleteReadError, ValueError, _StaleConnection) as exc:
            result = _Result(0, 0, None, UNKNOWN, f"{type(exc).__name__}: {exc}".rstrip(": "))
        end = time.monotonic()
        result.at = end - self._started_at
        result.latency = end - t0
        self._record(result)

    async def _exchange(self, request: bytes, *, fresh: bool) -> _Result:
        conn = None if fresh or not self._idle else self._idle.pop()
        reused = conn is not None
        if conn is None:
            reader, writer = await asyncio.open_connection(self.host, self.port, limit=_MAX_HEAD)
            conn = _Connection(reader, writer)
        keep = False
        try:
            conn.writer.write(request)
            await conn.writer.drain()
            try:
                raw_head = await conn.reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                partial = getattr(exc, "partial", b"")
                if reused and not partial:
                    raise _StaleConnection("keep-alive connection closed by peer") from exc
                raise
            status, version, headers = _parse_head(raw_head)
            body, complete = await _read_body(conn.reader, status, headers)
            keep = complete and _keeps_alive(version, headers)
            conn.used += 1
            return _Result(0, 0, status, _revision(headers, body))
        except ConnectionError as exc:
            if reused and not fresh:
                raise _StaleConnection(str(exc)) from exc
            raise
        finally:
            if keep and not self._stopping.is_set():
                self._idle.append(conn)
            else:
                conn.close()

    def _record(self, result: _Result) -> None:
        self._collected.results.append(result)
        if not result.ok and len(self._collected.examples) < _MAX_EXAMPLES:
            what = result.error or f"HTTP {result.status}"
            self._collected.examples.append(
                f"t={result.at:.2f}s revision={result.revision}: {what}"
            )

    # --- reporting ---------------------------------------------------------------------

    def snapshot(self) -> LoadReport:
        """The report so far; safe to call while running (for live displays)."""
        results = self._collected.results
        end = self._ended_at if self._ended_at is not None else time.monotonic()
        duration = max(0.0, end - self._started_at) if self._started_at else 0.0
        seconds = max((int(r.at) for r in results), default=-1) + 1
        timeline: list[Counter[str]] = [Counter() for _ in range(seconds)]
        failure_timeline = [0] * seconds
        by_revision: Counter[str] = Counter()
        failures_by_revision: Counter[str] = Counter()
        statuses: Counter[int] = Counter()
        failures = 0
        for r in results:
            second = int(r.at)
            by_revision[r.revision] += 1
            timeline[second][r.revision] += 1
            if r.status is not None:
                statuses[r.status] += 1
            if not r.ok:
                failures += 1
                failures_by_revision[r.revision] += 1
                failure_timeline[second] += 1
        latencies = sorted(r.latency for r in results if r.status is not None)
        return LoadReport(
            total=len(results),
            ok=len(results) - failures,
            failures=failures,
            failure_examples=list(self._collected.examples),
            status_counts=dict(sorted(statuses.items())),
            by_revision=dict(sorted(by_revision.items())),
            failures_by_revision=dict(sorted(failures_by_revision.items())),
            timeline=[dict(sorted(c.items())) for c in timeline],
            failure_timeline=failure_timeline,
            latency_p50_ms=_percentile(latencies, 50) * 1000,
            latency_p99_ms=_percentile(latencies, 99) * 1000,
            duration_s=duration,
            stopped_by=self._stopped_by,
            saturated=self._saturated,
        )


# --- HTTP/1.1 response parsing (just enough for GET) -----------------------------------


def _parse_head(raw: bytes) -> tuple[int, str, dict[str, str]]:
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ValueError(f"malformed status line {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return int(parts[1]), parts[0], headers


async def _read_body(
    reader: asyncio.StreamReader, status: int, headers: Mapping[str, str]
) -> tuple[bytes, bool]:
    """The body's first bytes (up to a cap) and whether the connection can be reused."""
    if status in (204, 304) or 100 <= status < 200:
        return b"", True
    if "chunked" in headers.get("transfer-encoding", "").lower():
        kept = bytearray()
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                    pass
                return bytes(kept), True
            chunk = await reader.readexactly(size + 2)
            if len(kept) < _MAX_KEPT_BODY:
                kept += chunk[:-2]
    if "content-length" in headers:
        length = int(headers["content-length"])
        body = await reader.readexactly(length)
        return body[:_MAX_KEPT_BODY], True
    # No framing: the body runs to EOF, and the connection is spent.
    kept = bytearray()
    while chunk := await reader.read(65536):
        if len(kept) < _MAX_KEPT_BODY:
            kept += chunk
    return bytes(kept), False


def _keeps_alive(version: str, headers: Mapping[str, str]) -> bool:
    connection = headers.get("connection", "").lower()
    if version == "HTTP/1.0":
        return "keep-alive" in connection
    return "close" not in connection


def _revision(headers: Mapping[str, str], body: bytes) -> str:
    if REVISION_HEADER in headers:
        return headers[REVISION_HEADER]
    if "json" in headers.get("content-type", "") and body:
        with contextlib.suppress(ValueError):
            data = json.loads(body)
            if isinstance(data, dict) and isinstance(data.get("version"), str):
                return str(data["version"])
    return headers.get("x-app-version", UNKNOWN)


def _percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile: p50 of [1, 2, 3, 4] is 2, p99 of 1..100 is 99."""
    if not sorted_values:
        return 0.0
    rank = max(1, -(-len(sorted_values) * pct // 100))  # ceil without floats drifting
    return sorted_values[int(rank) - 1]


# --- command line: `python -m changeover.loadgen URL --rate 300 --seconds 10` -------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Send bounded GET load to a loopback URL.")
    parser.add_argument("url")
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0, help="max_seconds")
    parser.add_argument("--max-requests", type=int, default=1_000_000)
    parser.add_argument("--path", default=None)
    args = parser.parse_args(argv)
    try:
        gen = LoadGenerator(
            args.url,
            args.rate,
            concurrency=args.concurrency,
            max_requests=args.max_requests,
            max_seconds=args.seconds,
            path=args.path,
        )
    except ValueError as exc:
        print(f"loadgen: {exc}", file=sys.stderr)
        return 2
    report = asyncio.run(gen.run())
    json.dump(report.to_dict(), sys.stdout, indent=2)
    print()
    return 0 if report.failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
