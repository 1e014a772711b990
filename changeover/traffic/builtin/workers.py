"""N router worker processes on one port (``SO_REUSEPORT``), driven by one ``BuiltinRouter``.

``BuiltinRouter(..., workers=N)`` with N > 1 does not serve connections itself: it reserves
the port (a bound, non-listening ``SO_REUSEPORT`` socket, so port 0 works), starts N
processes (multiprocessing, spawn) that each run a single-process ``BuiltinRouter`` on that
port with ``reuse_port=True``, and the kernel spreads new connections over them.

Routing state: every setter the controller calls (``set_weight``, ``set_backends``,
``drain``...) is applied to the parent's own table (so ``weights()``/``verify_weight`` answer
from it) and sent to every worker over its pipe; the setter returns when all workers have
applied it, so "after ``set_weight`` returns, no new request goes to the old split" holds
for the whole group. Metrics: ``collect`` asks each worker for its ``RolloutMetrics`` and
sums them into the parent's (which ``/metrics`` renders); the router does so every second
and on demand (``BuiltinRouter.collect_metrics``).

    router = BuiltinRouter("web", port=8080, workers=2)
    await router.start()
    await router.set_backends(1, [Endpoint("127.0.0.1", 9001)])
    await router.set_weight({1: 100})   # applied in both workers when it returns
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import multiprocessing
import multiprocessing.connection
import signal
import socket
from collections.abc import Callable
from typing import Any

from changeover.loop_watchdog import LoopWatchdog
from changeover.traffic.builtin import metrics as metrics_mod
from changeover.traffic.builtin import state as state_mod

log = logging.getLogger(__name__)

START_TIMEOUT = 30.0
CALL_TIMEOUT = 30.0


def reserve_port(host: str, port: int) -> socket.socket:
    """A bound, non-listening SO_REUSEPORT socket: fixes the port for the workers."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


class Worker:
    """One worker process and its command pipe (one command at a time)."""

    def __init__(self, index: int, proc: Any, conn: multiprocessing.connection.Connection):
        self.index = index
        self.proc = proc
        self.conn = conn
        self.lock = asyncio.Lock()

    async def _recv(self, limit: float) -> Any:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        fd = self.conn.fileno()

        def readable() -> None:
            if not fut.done():
                try:
                    fut.set_result(self.conn.recv())
                except (EOFError, OSError) as exc:
                    fut.set_exception(ConnectionError(f"router worker {self.index} gone: {exc}"))

        loop.add_reader(fd, readable)
        try:
            return await asyncio.wait_for(fut, limit)
        finally:
            loop.remove_reader(fd)

    async def call(self, message: tuple[Any, ...], limit: float = CALL_TIMEOUT) -> Any:
        async with self.lock:
            self.conn.send(message)
            kind, value = await self._recv(limit)
        if kind == "err":
            raise RuntimeError(f"router worker {self.index}: {value}")
        return value


async def start(
    rollout: str,
    host: str,
    port: int,
    settings: state_mod.Settings,
    n: int,
    preset: list[tuple[str, tuple[object, ...]]] | None = None,
    *,
    router_class: Callable[..., Any],
) -> list[Worker]:
    """N workers on ``port``; each builds a ``router_class`` (the builtin router, passed in
    and pickled by name, so that this module does not import the router that imports it),
    applies the setter calls ``preset`` and listens."""
    ctx = multiprocessing.get_context("spawn")
    workers: list[Worker] = []
    try:
        for i in range(n):
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=_main,
                # As a dict: the compiled (mypyc) frozen dataclass does not unpickle.
                args=(
                    child,
                    router_class,
                    rollout,
                    host,
                    port,
                    dataclasses.asdict(settings),
                    preset or [],
                ),
                name=f"changeover-router-{rollout}-{i}",
                daemon=True,
            )
            proc.start()
            child.close()
            workers.append(Worker(i, proc, parent))
        for w in workers:
            kind, value = await w._recv(START_TIMEOUT)
            if kind != "ready":
                raise OSError(f"router worker {w.index} failed to start: {value}")
    except BaseException:
        await stop(workers)
        raise
    return workers


async def broadcast(
    workers: list[Worker], method: str, *args: Any, limit: float = CALL_TIMEOUT
) -> list[Any]:
    """Call ``method(*args)`` on every worker's router; their return values."""
    calls = (w.call(("call", method, args), limit) for w in workers)
    return list(await asyncio.gather(*calls))


async def collect(workers: list[Worker], into: metrics_mod.RolloutMetrics) -> None:
    """Sum every worker's metrics into ``into`` (replacing what it held)."""
    parts: list[_MetricsParts] = await asyncio.gather(*(w.call(("metrics",)) for w in workers))
    merged: dict[int, metrics_mod.RevisionMetrics] = {}
    for revisions, _, _, _ in parts:
        for rev, m in revisions.items():
            merged.setdefault(rev, metrics_mod.RevisionMetrics()).add(m)
    into.revisions.update(merged)
    into.bad_requests = sum(p[1] for p in parts)
    into.maintenance = sum(p[2] for p in parts)
    into.unrouted = sum(p[3] for p in parts)


# What a worker sends for its metrics: (revisions, bad requests, maintenance, unrouted).
# Not the RolloutMetrics itself: compiled (mypyc) classes unpickle only through a no-argument
# __init__, which RolloutMetrics (it needs its name) does not have.
_MetricsParts = tuple[dict[int, metrics_mod.RevisionMetrics], int, int, int]


async def stop(workers: list[Worker]) -> None:
    for w in workers:
        with contextlib.suppress(Exception):
            await w.call(("stop",), limit=15)
    for w in workers:
        await asyncio.to_thread(w.proc.join, 5)
        if w.proc.is_alive():
            w.proc.kill()
            await asyncio.to_thread(w.proc.join, 5)
        w.conn.close()


# -- the worker process ---------------------------------------------------------------------


def _main(
    conn: multiprocessing.connection.Connection,
    router_class: Callable[..., Any],
    rollout: str,
    host: str,
    port: int,
    fields: dict[str, Any],
    preset: list[tuple[str, tuple[Any, ...]]],
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when workers stop
    settings = state_mod.Settings(**fields)
    try:
        import uvloop

        uvloop.run(_serve(conn, router_class, rollout, host, port, settings, preset))
    except ImportError:
        asyncio.run(_serve(conn, router_class, rollout, host, port, settings, preset))


async def _serve(
    conn: multiprocessing.connection.Connection,
    router_class: Callable[..., Any],
    rollout: str,
    host: str,
    port: int,
    settings: state_mod.Settings,
    preset: list[tuple[str, tuple[Any, ...]]],
) -> None:
    router = router_class(rollout, host=host, port=port, settings=settings, reuse_port=True)
    try:
        for method, args in preset:
            await getattr(router, method)(*args)
        await router.start()
    except Exception as exc:
        conn.send(("error", str(exc)))
        return
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[Any] = asyncio.Queue()

    def readable() -> None:
        try:
            inbox.put_nowait(conn.recv())
        except (EOFError, OSError):
            loop.remove_reader(conn.fileno())
            inbox.put_nowait(("stop",))  # the parent is gone

    loop.add_reader(conn.fileno(), readable)
    conn.send(("ready", router.port))
    with LoopWatchdog(name=f"router worker of {rollout}: event loop"):
        await _answer_commands(conn, router, inbox)


async def _answer_commands(
    conn: multiprocessing.connection.Connection, router: Any, inbox: asyncio.Queue[Any]
) -> None:
    """The parent's commands, one at a time, until ``stop`` (or the parent is gone)."""
    while True:
        msg = await inbox.get()
        kind = msg[0]
        if kind == "stop":
            with contextlib.suppress(Exception):
                await router.close()
            with contextlib.suppress(OSError):
                conn.send(("ok", None))
            return
        try:
            if kind == "metrics":
                m = router.metrics
                parts: _MetricsParts = (m.revisions, m.bad_requests, m.maintenance, m.unrouted)
                conn.send(("ok", parts))
            else:
                _, method, args = msg
                conn.send(("ok", await getattr(router, method)(*args)))
        except Exception as exc:
            log.exception("router worker: %s failed", kind)
            conn.send(("err", repr(exc)))
