"""The operator's spec-change trace (no cluster needed): what the scale benchmark reads to
say where the time between a spec change and the first action went."""

from __future__ import annotations

import asyncio

from changeover.operator.trace import SpecTrace
from changeover.operator.workqueue import WorkQueue

KEY = ("ns", "web")


def test_stages_of_one_spec_change_in_order_once_each() -> None:
    trace = SpecTrace()
    trace.received(KEY, 2)
    trace.received(KEY, 2)  # a second event for the same generation changes nothing
    first = trace.records()[0]["received"]
    for stage in ("queued", "dequeued", "acted", "planned"):
        trace.mark(KEY, stage, generation=2)
    trace.mark(KEY, "acted", generation=2)  # a later write is not the first action
    trace.close(KEY, 2)
    (record,) = trace.records()
    assert record["received"] == first
    stamps = [record[s] for s in ("received", "queued", "dequeued", "acted", "planned", "written")]
    assert stamps == sorted(stamps)
    assert not trace.pending(KEY)


def test_a_reconcile_of_the_older_generation_does_not_count_as_acting() -> None:
    trace = SpecTrace()
    trace.received(KEY, 3)
    trace.mark(KEY, "acted", generation=2)
    trace.close(KEY, 2)
    (record,) = trace.records()
    assert record["generation"] == 3 and "acted" not in record and "written" not in record
    assert trace.pending(KEY)


def test_a_newer_spec_change_keeps_the_unfinished_record() -> None:
    trace = SpecTrace()
    trace.received(KEY, 2)
    trace.received(KEY, 3)
    assert [r["generation"] for r in trace.records()] == [2, 3]


async def test_the_queue_says_when_a_key_entered_it() -> None:
    q: WorkQueue[str] = WorkQueue()
    assert q.enqueued_at("a") is None
    q.add("a")
    since = q.enqueued_at("a")
    await asyncio.sleep(0.01)
    q.add("a")  # already waiting: it keeps its place and its stamp
    assert q.enqueued_at("a") == since
    assert await q.get() == "a"
    assert q.enqueued_at("a") == since  # still known while a worker runs it
    q.done("a")
    assert q.enqueued_at("a") is None
