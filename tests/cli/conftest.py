"""Fixtures: a real API server on a thread of its own (so the synchronous CliRunner can
talk to it), a CLI runner, and a private servers.json per test."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import TOKEN, Cli, LiveServer

from changeover.api.server import start_api
from changeover.testing.fake_service import FakeService


@pytest.fixture
def live() -> Iterator[LiveServer]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    service = FakeService(polls_to_finish=1)
    started = asyncio.run_coroutine_threadsafe(start_api(service, "127.0.0.1", 0, TOKEN), loop)
    api = started.result(5)
    yield LiveServer(service=service, api=api, loop=loop)
    asyncio.run_coroutine_threadsafe(api.close(), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


@pytest.fixture(autouse=True)
def isolated_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own servers.json and no inherited server/token."""
    path = tmp_path / "config" / "servers.json"
    monkeypatch.setenv("CHANGEOVER_CONFIG", str(path))
    for var in ("CHANGEOVER_SERVER", "CHANGEOVER_TOKEN", "CHANGEOVER_DEBUG"):
        monkeypatch.delenv(var, raising=False)
    return path


@pytest.fixture
def cli() -> Cli:
    return Cli()
