"""A blocked event loop is reported with the line it is stuck on, and again once it turns.

What an operator of ``serve`` needs when the API accepts connections and never answers."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from changeover.loop_watchdog import LoopWatchdog


def _block_the_loop_for(seconds: float) -> None:
    time.sleep(seconds)


async def test_a_blocking_call_is_logged_with_its_stack(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="changeover.loop_watchdog")
    with LoopWatchdog(threshold=0.3, interval=0.05, name="test loop"):
        await asyncio.sleep(0.1)
        _block_the_loop_for(1.0)
        await asyncio.sleep(0.3)  # the loop turns again; the watchdog sees the beats
    messages = [r.getMessage() for r in caplog.records]
    blocked = [m for m in messages if "test loop blocked for" in m]
    assert len(blocked) == 1, messages
    assert "_block_the_loop_for" in blocked[0] and "time.sleep(seconds)" in blocked[0]
    resumed = [m for m in messages if "turns again after" in m]
    assert len(resumed) == 1, messages
    seconds = float(resumed[0].split("after ")[1].split("s")[0])
    assert 0.6 <= seconds <= 5, resumed


async def test_a_loop_that_keeps_turning_is_not_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="changeover.loop_watchdog")
    with LoopWatchdog(threshold=0.5, interval=0.05):
        for _ in range(20):
            _block_the_loop_for(0.02)  # short blocking calls, well under the threshold
            await asyncio.sleep(0.02)
    assert not caplog.records
