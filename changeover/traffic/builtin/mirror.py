"""Mirroring (shadow traffic): copies of sampled requests, sent off the hot path.

The proxy decides per request which mirror routes apply (``table.MirrorRoute.sample``) and,
once the request body is complete, calls ``Mirror.offer``; that is a ``put_nowait`` on a
bounded queue and nothing more, so a slow or dead shadow never slows real traffic: when the
queue is full the copy is dropped and counted. A few worker tasks send the copies through
the same connection pool as real traffic, read each answer and throw it away, recording
the shadow's status class and latency under ``changeover_mirror_*``.

Copies carry ``x-changeover-shadow: 1`` so a shadow service can tell (and, say, skip
side effects such as sending e-mail).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from changeover.traffic.builtin import pool, upstream, wire
from changeover.traffic.builtin import state as state_mod

log = logging.getLogger(__name__)

_Job = tuple[int, bytes, bytes, bytes]  # revision, the client's raw head, body, client IP


class _Discard:
    """An ``upstream.Sink`` that reads the shadow's answer and keeps only its status."""

    __slots__ = ("done", "status")

    def __init__(self, done: asyncio.Future[bool]) -> None:
        self.done = done
        self.status = 0

    def on_head(
        self,
        conn: upstream.UpstreamConnection,
        status: int,
        head: bytes,
        fields: list[wire.Field],
        framing: int,
    ) -> None:
        self.status = status

    def on_raw(self, data: bytes) -> None:
        pass

    def on_body(self, data: bytes) -> None:
        pass

    def on_complete(self, conn: upstream.UpstreamConnection, keep_alive: bool) -> None:
        if not self.done.done():
            self.done.set_result(keep_alive)

    def on_lost(self, conn: upstream.UpstreamConnection, bad_response: bool) -> None:
        if not self.done.done():
            self.done.set_exception(ConnectionError("shadow connection lost"))

    def flush(self) -> None:
        pass

    def pause_source(self) -> None:
        pass

    def resume_source(self) -> None:
        pass


class Mirror:
    def __init__(
        self,
        state: state_mod.ProxyState,
        *,
        workers: int = 4,
        queue_size: int = 1024,
        timeout: float = 30.0,
    ) -> None:
        self._state = state
        self._queue: asyncio.Queue[_Job] = asyncio.Queue(queue_size)
        self._workers_n = workers
        self._workers: list[asyncio.Task[None]] = []
        self._timeout = timeout

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._workers = [loop.create_task(self._work()) for _ in range(self._workers_n)]

    async def close(self) -> None:
        for task in self._workers:
            task.cancel()
        for task in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._workers = []

    def offer(self, revision: int, head: bytes, body: bytes, client_ip: bytes) -> None:
        """Queue a copy of a request (its raw head as the client sent it, and its body);
        the head is parsed by the worker, off the hot path."""
        try:
            self._queue.put_nowait((revision, head, body, client_ip))
        except asyncio.QueueFull:
            self._state.metrics.revision(revision).mirror_dropped += 1

    async def idle(self) -> None:
        """Wait until every queued copy has been sent (tests and shutdown)."""
        await self._queue.join()

    async def _work(self) -> None:
        while True:
            job = await self._queue.get()
            try:
                await self._send(job)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug here must not kill the worker
                log.exception("builtin router: mirror copy failed")
            finally:
                self._queue.task_done()

    async def _send(self, job: _Job) -> None:
        revision, head, body, client_ip = job
        start, headers = wire.parse_head(head)
        method, url = start.split(b" ", 2)[:2]
        st = self._state
        rm = st.metrics.revision(revision)
        loop = asyncio.get_running_loop()
        now = loop.time()
        ep = st.pool.pick(revision, now)
        if ep is None or (ep.down_until > now and not ep.idle):
            # No shadow, or it refused a connection within the last second: fail the copy
            # at once instead of spending a connect (and the primary's CPU) on each one.
            rm.mirror_failed += 1
            return
        framing = b"content-length: %d\r\n" % len(body) if body or method in _BODY else b""
        data = wire.request_head(
            method,
            url,
            [*headers, (b"x-changeover-shadow", b"1")],
            client_ip=client_ip,
            framing=framing,
        )
        t0 = loop.time()
        ep.enter()
        conn: upstream.UpstreamConnection | None = None
        try:
            conn = await self._connection(ep)
            done: asyncio.Future[bool] = loop.create_future()
            sink = _Discard(done)
            conn.bind(sink, head_only=method == b"HEAD")
            conn.write(data + body if body else data)
            keep_alive = await asyncio.wait_for(done, self._timeout)
        except (OSError, TimeoutError, ConnectionError):
            rm.mirror_failed += 1
            if conn is not None:
                conn.abort()
            else:
                ep.down_until = loop.time() + pool.DOWN_SECONDS
            return
        finally:
            ep.leave()
        rm.mirror_sent += 1
        rm.mirror_codes[sink.status // 100 if 100 <= sink.status < 600 else 5] += 1
        rm.mirror_latency.observe(loop.time() - t0)
        if keep_alive:
            ep.release(conn)
        else:
            conn.close()

    async def _connection(self, ep: pool.EndpointState) -> upstream.UpstreamConnection:
        idle = ep.take_idle()
        if idle is not None:
            assert isinstance(idle, upstream.UpstreamConnection)
            return idle
        loop = asyncio.get_running_loop()
        _, conn = await asyncio.wait_for(
            loop.create_connection(
                lambda: upstream.UpstreamConnection(ep), ep.endpoint.host, ep.endpoint.port
            ),
            self._timeout,
        )
        return conn


_BODY = frozenset({b"POST", b"PUT", b"PATCH"})
