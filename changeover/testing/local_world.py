"""A started local controller over test doubles, for fast tests of the controller loop and
``LocalService``: its store in a temporary directory, the ``FakePlatform`` (replicas Ready
at once) and a ``RecordingRouter`` per rollout, on the wall clock.

    async with local_world.started(tmp_path) as world:
        await world.service.apply([...], source="t")
        world.controller.parsed("web")
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from changeover.clock import SystemClock
from changeover.local_controller.local_service import LocalService
from changeover.local_controller.loop import Controller
from changeover.local_controller.rollout_store import Store
from changeover.testing.fake_platform import FakePlatform
from changeover.testing.recording_router import RecordingRouter


@dataclass(frozen=True)
class World:
    controller: Controller
    service: LocalService


@contextlib.asynccontextmanager
async def started(state_dir: Path, *, tick_seconds: float = 0.05) -> AsyncIterator[World]:
    """The controller ticking every ``tick_seconds`` until the block ends; then closed,
    its store too."""
    controller = Controller(
        store=Store(state_dir / "changeover.db"),
        platform=FakePlatform(),
        router_factory=lambda r: RecordingRouter(r.name),
        clock=SystemClock(),
        tick_seconds=tick_seconds,
    )
    service = LocalService(controller)
    await controller.start()
    try:
        yield World(controller, service)
    finally:
        await controller.close()
        controller.store.close()
