"""``aio.cancel_and_wait``: a close() that is itself cancelled stops, instead of carrying
on into work that never ends (the hang behind a 300 s test timeout under load)."""

from __future__ import annotations

import asyncio

import pytest

from changeover import aio


async def test_the_callers_cancellation_is_not_swallowed() -> None:
    inner = asyncio.create_task(asyncio.sleep(60))
    carried_on = asyncio.Event()

    async def stop() -> None:
        await aio.cancel_and_wait(inner)  # cancelled while waiting here...
        carried_on.set()  # ...so this must never run
        await asyncio.Event().wait()

    outer = asyncio.create_task(stop())
    await asyncio.sleep(0)  # stop() has cancelled inner and waits for it
    outer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(outer, 5)
    assert inner.cancelled() and not carried_on.is_set()


async def test_the_tasks_own_cancellation_is_absorbed() -> None:
    inner = asyncio.create_task(asyncio.sleep(60))
    await asyncio.sleep(0)
    await aio.cancel_and_wait(inner)
    await aio.cancel_and_wait(None)
    assert inner.cancelled()
