"""asyncio helpers every layer shares.

``cancel_and_wait``: stop a task and wait for it to finish, *without* swallowing the
caller's own cancellation; ``cancel_and_wait_all``: the same for all the tasks a ``close()``
owns; ``stop_loop``: the same for a background loop, which may swallow a cancellation.
``run_fast``: a server's entry point on uvloop when installed; ``stop_on_signals``: the
Event a server waits on until SIGINT or SIGTERM.
The tempting ``task.cancel(); with suppress(CancelledError): await task`` also swallows
a CancelledError meant for the caller: a ``close()`` that cancelled a replica's ``stop()``
while that was waiting for its supervisor task found the stop carrying on into a
drain that never ended (seen as a 300 s hang under load).

    >>> import asyncio
    >>> async def main() -> str:
    ...     task = asyncio.create_task(asyncio.sleep(60))
    ...     await asyncio.sleep(0)
    ...     await cancel_and_wait(task)
    ...     return "cancelled" if task.cancelled() else "not cancelled"
    >>> asyncio.run(main())
    'cancelled'
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Coroutine, Iterable
from typing import Any, TypeVar

T = TypeVar("T")


async def cancel_and_wait(task: asyncio.Future[Any] | None) -> None:
    """Cancel ``task`` (if any and not done) and wait for it; its CancelledError is
    absorbed, the caller's is not. Other exceptions of the task propagate."""
    if task is None:
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise  # the caller is being cancelled too: let it


async def cancel_and_wait_all(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and wait for all of them: their CancelledErrors and other
    exceptions are absorbed (a closing owner has nobody to hand them to), the caller's
    cancellation is not. A task already being cancelled is not cancelled again: a second
    cancel would cut its clean-up short."""
    tasks = list(tasks)
    pending = [task for task in tasks if not task.done()]
    for task in pending:
        if not task.cancelling():
            task.cancel()
    if pending:
        await asyncio.wait(pending)  # raises only for the caller's own cancellation
    for task in tasks:
        if not task.cancelled():
            task.exception()  # retrieved: no "exception was never retrieved" at exit


async def stop_loop(task: asyncio.Task[Any] | None, *, every: float = 0.5) -> None:
    """Cancel a background loop (a poller, a sweep) and wait until it has ended,
    cancelling it again every ``every`` seconds while it runs on.

    A loop can swallow one cancellation: on Python 3.11 ``asyncio.wait_for`` returns the
    inner result instead of raising when the cancellation arrives as the inner await
    completes (CPython gh-86296, fixed in 3.12), and the loop goes round again. Seen as a
    ``close()`` waiting forever for HAProxy's stats poller. Only for loops: a task with
    clean-up to do after its cancellation would have it cut short (``cancel_and_wait``).
    Its exceptions are absorbed, the caller's cancellation is not.
    """
    if task is None:
        return
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=every)  # raises only for the caller's own cancel
    if not task.cancelled():
        task.exception()  # retrieved: a closing owner has nobody to hand it to


def run_fast(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on uvloop when it is installed, else on asyncio's loop: the servers'
    time goes into sockets, which uvloop's transports make cheaper."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency
        return asyncio.run(main)
    return uvloop.run(main)


def stop_on_signals() -> asyncio.Event:
    """An Event the running loop sets on SIGINT or SIGTERM (where it can take signals)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    return stop
