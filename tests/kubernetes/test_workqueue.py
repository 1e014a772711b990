"""The operator's work queue (no cluster needed): de-duplication, one worker per key,
urgent keys first, delayed looks."""

from __future__ import annotations

import asyncio

from changeover.operator.workqueue import WorkQueue


async def test_dedupes_and_serves_urgent_first_in_arrival_order() -> None:
    q: WorkQueue[str] = WorkQueue()
    for key in ("a", "b", "a", "c"):
        q.add(key)
    q.add("c", urgent=True)
    q.add("d", urgent=True)
    assert len(q) == 4
    assert [await q.get() for _ in range(4)] == ["c", "d", "a", "b"]


async def test_a_key_queued_while_running_runs_again_after() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    key = await q.get()
    q.add("a")  # a change while "a" is being reconciled
    assert len(q) == 0
    q.done(key)
    assert await asyncio.wait_for(q.get(), 1) == "a"


async def test_add_after_keeps_the_earliest_timer() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add_after("a", 5.0)
    q.add_after("a", 0.05)
    q.add_after("a", 3.0)
    assert await asyncio.wait_for(q.get(), 1) == "a"
    q.close()


async def test_a_closed_queue_hands_out_nothing_and_drains_the_running_keys() -> None:
    q: WorkQueue[str] = WorkQueue()
    await asyncio.wait_for(q.drained(), 1)  # nothing running
    q.add("a")
    q.add("b")
    key = await q.get()
    q.close()
    q.add_after("c", 0.01)
    drained = asyncio.create_task(q.drained())
    later = asyncio.create_task(q.get())
    await asyncio.sleep(0.1)
    assert not drained.done() and not later.done()  # "a" still running; "b" is not handed out
    q.done(key)
    await asyncio.wait_for(drained, 1)
    assert not later.done()
    later.cancel()
