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


async def test_closing_many_tasks_is_cancellable_too() -> None:
    """Given tasks whose clean-up takes long, a close() waiting for them with
    ``cancel_and_wait_all`` stops when it is cancelled itself."""

    async def slow_to_stop() -> None:
        try:
            await asyncio.sleep(60)
        finally:
            await asyncio.shield(asyncio.sleep(60))  # outlives the close() below

    inner = [asyncio.create_task(slow_to_stop()) for _ in range(3)]
    carried_on = asyncio.Event()

    async def close() -> None:
        await aio.cancel_and_wait_all(inner)
        carried_on.set()

    outer = asyncio.create_task(close())
    await asyncio.sleep(0.01)  # close() has cancelled them and waits in their clean-up
    outer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(outer, 5)
    assert not carried_on.is_set()
    for task in inner:
        task.cancel()
    await asyncio.wait(inner)


async def test_closing_many_absorbs_their_errors_and_cancels_each_once() -> None:
    """Given a task that failed, one that fails on cancel, and one already being cancelled
    whose clean-up needs a moment, ``cancel_and_wait_all`` returns once all are done,
    raising nothing, and the clean-up ran to its end (a second cancel would have cut it)."""
    cleaned_up = asyncio.Event()

    async def fails() -> None:
        raise ValueError("early")

    async def fails_on_cancel() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            raise RuntimeError("late") from None

    async def cleans_up() -> None:
        try:
            await asyncio.sleep(60)
        finally:
            await asyncio.sleep(0.05)
            cleaned_up.set()

    failed, failing, cleaning = (
        asyncio.create_task(fails()),
        asyncio.create_task(fails_on_cancel()),
        asyncio.create_task(cleans_up()),
    )
    await asyncio.sleep(0)
    cleaning.cancel()  # superseded elsewhere: its clean-up has started
    await asyncio.sleep(0)
    await aio.cancel_and_wait_all([failed, failing, cleaning])
    assert failed.done() and failing.done() and cleaning.cancelled()
    assert cleaned_up.is_set()
    await aio.cancel_and_wait_all([])


async def test_a_loop_that_swallows_a_cancellation_is_still_stopped() -> None:
    """Given a poller that, like Python 3.11's wait_for when its inner await has just
    completed, swallows the first cancellation and goes round again, ``stop_loop`` still
    ends it (cancelling again), where a single cancel would wait for ever."""
    rounds = 0
    swallowed = False

    async def poller() -> None:
        nonlocal rounds, swallowed
        while True:
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed = True  # the lost cancellation
            rounds += 1

    once = asyncio.create_task(poller())
    await asyncio.sleep(0.03)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(aio.cancel_and_wait(once), 0.3)  # one cancel is not enough
    swallowed = False
    task = asyncio.create_task(poller())
    await asyncio.sleep(0.03)
    await asyncio.wait_for(aio.stop_loop(task, every=0.05), 5)
    assert task.done() and swallowed
    await aio.stop_loop(None)
