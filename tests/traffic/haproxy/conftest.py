"""Fixtures for the haproxy router's tests: a real HAProxy (Debian's, installed by
``make deps-haproxy``) started by ``make_haproxy`` on a free loopback port with its state in
a short temporary directory, stopped by PID at teardown.

The upstreams are ``router_helpers.Upstream`` servers (tests/traffic), the same ones the
builtin router is tested against.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable

import pytest
import uvloop
from haproxy_helpers import HAProxyFactory

from changeover.traffic.builtin import Registry
from changeover.traffic.haproxy import HAProxyRouter


@pytest.fixture
async def make_haproxy() -> AsyncIterator[HAProxyFactory]:
    routers: list[HAProxyRouter] = []
    dirs: list[str] = []

    async def make(**kwargs: object) -> HAProxyRouter:
        # Not pytest's tmp_path: Unix socket paths must stay short.
        root = tempfile.mkdtemp(prefix="co-hap-")
        dirs.append(root)
        kwargs.setdefault("port", 0)
        kwargs.setdefault("metrics", Registry())
        kwargs.setdefault("state_dir", root)
        kwargs.setdefault("stats_interval", 0.2)
        router = HAProxyRouter("web", **kwargs)  # type: ignore[arg-type]
        await router.start()
        routers.append(router)
        return router

    yield make
    for r in routers:
        await r.close()
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """uvloop only (what ``changeover serve`` runs): HAProxy, not the loop, carries traffic,
    and these tests run real processes under load, so running them twice buys little."""
    return {"uvloop": uvloop.new_event_loop}
