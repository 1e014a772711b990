"""asyncio helpers every layer shares.

``cancel_and_wait``: stop a task and wait for it to finish, *without* swallowing the
caller's own cancellation. The tempting ``task.cancel(); with suppress(CancelledError):
await task`` also swallows a CancelledError meant for the caller: a ``close()`` that
cancelled a replica's ``stop()`` while that was waiting for its supervisor task found the
stop carrying on into a drain that never ended (seen as a 300 s hang under load).

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
from typing import Any


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
