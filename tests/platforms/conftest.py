"""Fixtures for platform tests (helpers live in platform_helpers.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from platform_helpers import Platforms, kill_recorded


@pytest.fixture
async def make_platform(tmp_path: Path) -> AsyncIterator[Platforms]:
    platforms = Platforms(tmp_path / "state")
    try:
        yield platforms
    finally:
        for platform in platforms.made:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(platform.close(stop_replicas=True), timeout=15)
        kill_recorded(platforms.state_dir, platforms.pids)
