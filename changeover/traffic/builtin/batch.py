"""Socket writes batched per event-loop pass, for the builtin proxy's two kinds of socket.

A connection with bytes to send queues itself (``WriteBatch.queue``); one callback after
the current pass of the event loop hands each queued connection's bytes to its transport
(``flush_out``: one ``transport.write``). Everything read in one pass is processed first,
then written in one burst.

Why: on loopback the kernel wakes the reading process on each write. Written one by one,
spread over a pass, responses wake a waiting client (wrk, a load balancer) and requests
wake an upstream worker again and again; in a burst the woken process finds the rest
already there: less kernel time per request and more requests/s, old and new side by side
(``python -m bench.compare``). The added delay is the rest of the pass that read the bytes
(the pass is the proxy's own work, not a timer), and pipelined responses to one client
leave in one syscall.
"""

from __future__ import annotations

import asyncio
from typing import Protocol


class Writer(Protocol):
    def flush_out(self) -> None:
        """Write what was queued (the transport may have closed since: then drop it)."""


def write_out(transport: asyncio.Transport | None, out: list[bytes]) -> None:
    """Hand the queued ``out`` to ``transport`` in one ``write`` and clear it; dropped when
    the transport is gone or closing (the connection's end is being handled)."""
    if transport is not None and not transport.is_closing():
        transport.write(b"".join(out) if len(out) > 1 else out[0])
    out.clear()


class WriteBatch:
    __slots__ = ("_loop", "_pending")

    def __init__(self) -> None:
        self._pending: list[Writer] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def queue(self, writer: Writer) -> None:
        """``writer`` has bytes to send: flush them after this pass (call once per
        pass per writer: on the first bytes it queues)."""
        pending = self._pending
        if not pending:
            loop = self._loop
            if loop is None:
                loop = self._loop = asyncio.get_running_loop()
            loop.call_soon(self.flush)
        pending.append(writer)

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        for writer in pending:
            writer.flush_out()
