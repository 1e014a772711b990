"""The recording router: a faithful in-memory fake of the TrafficRouter contract."""

from __future__ import annotations

import subprocess
import sys

import pytest

from changeover import errors
from changeover.endpoints import Endpoint
from changeover.spec import models
from changeover.testing import recording_router
from changeover.traffic import base


async def test_records_calls_and_keeps_state() -> None:
    router = base.factory_of("recording")("web", port=1)
    assert isinstance(router, recording_router.RecordingRouter)
    match = [models.RouteMatch(header_name="x", header_value=models.StringMatch(exact="1"))]
    await router.set_weight({1: 80, 2: 20})
    await router.set_header_route("h", 2, match)
    await router.set_mirror_route("m", 2, 10, [])
    await router.set_sticky_split(2, models.UserKey(cookie="u"), 50)
    await router.set_backends(2, [Endpoint("127.0.0.1", 9)])
    assert await router.verify_weight({1: 80, 2: 20, 3: 0})
    await router.remove_managed_routes()
    await router.drain(Endpoint("127.0.0.1", 9), 1.0)
    assert router.header_routes == {} and router.mirrors == {} and router.sticky is None
    assert router.backends == {} and router.drained == [Endpoint("127.0.0.1", 9)]
    assert router.methods() == [
        "set_weight",
        "set_header_route",
        "set_mirror_route",
        "set_sticky_split",
        "set_backends",
        "verify_weight",
        "remove_managed_routes",
        "drain",
    ]


async def test_injected_failure_raises_once() -> None:
    router = recording_router.RecordingRouter("web")
    router.fail("set_weight", errors.TemporaryBackendError("router unreachable"))
    with pytest.raises(errors.TemporaryBackendError):
        await router.set_weight({1: 100})
    await router.set_weight({1: 100})
    assert router.weights == {1: 100} and len(router.calls) == 2


def test_registry_knows_both_routers() -> None:
    assert {"builtin", "recording"} <= set(base.registered())
    assert base.capabilities_of("builtin") == frozenset(base.Capability)


def test_users_are_not_offered_the_recording_router() -> None:
    # A fresh interpreter, as the CLI and serve start: only a test that imports
    # changeover.testing can name the fake.
    code = (
        "import changeover.cli.main, changeover.local_server\n"
        "from changeover.traffic import base\n"
        "print(','.join(base.registered()))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    names = out.strip().split(",")
    assert "builtin" in names and "haproxy" in names
    assert "recording" not in names
