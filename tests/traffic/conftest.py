"""Fixtures for builtin-router tests: real upstream servers and a router on port 0."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
import router_helpers
import uvloop
from router_helpers import RouterFactory, UpstreamFactory
from websocket_helpers import EchoServer

from changeover.traffic.builtin import BuiltinRouter, Registry, Settings


@pytest.fixture
async def upstream() -> AsyncIterator[UpstreamFactory]:
    started: list[router_helpers.Upstream] = []

    async def make(name: str) -> router_helpers.Upstream:
        up = await router_helpers.Upstream(name).start()
        started.append(up)
        return up

    yield make
    for up in started:
        await up.stop()


@pytest.fixture(scope="module")
def echoes() -> Iterator[dict[int, EchoServer]]:
    """Two ``examples/websocket_echo.py`` processes, revisions 1 (v1) and 2 (v2)."""
    servers = {1: EchoServer("v1"), 2: EchoServer("v2")}
    yield servers
    for s in servers.values():
        s.stop()


@pytest.fixture
async def make_router() -> AsyncIterator[RouterFactory]:
    routers: list[BuiltinRouter] = []

    async def make(**kwargs: object) -> BuiltinRouter:
        kwargs.setdefault("port", 0)
        kwargs.setdefault("metrics", Registry())
        kwargs.setdefault("settings", Settings(drain_grace=1.0))
        router = BuiltinRouter("web", **kwargs)  # type: ignore[arg-type]
        await router.start()
        routers.append(router)
        return router

    yield make
    for r in routers:
        await r.close()


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Every router test runs on both loops: ``changeover serve`` uses uvloop when present.

    A module can narrow that with ``LOOPS = ("uvloop",)`` (slow load tests: once is enough).
    """
    loops = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
    only = getattr(getattr(item, "module", None), "LOOPS", None)
    return {k: v for k, v in loops.items() if k in only} if only else loops
