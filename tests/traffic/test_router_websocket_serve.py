"""End to end: a WebSocket held across a canary's promotion is drained, then closed.

Given a real ``changeover serve`` running ``examples/websocket_echo.py`` v1 behind the
builtin router process with ``websocketDrainSeconds: 3``, a client holding a WebSocket to
v1 while v2 is rolled out and promoted: the connection keeps working after all traffic
has moved to v2 (drained, not cut), is closed by the router about 3 s later, a new
connection lands on v2, and ``/metrics`` (from the router process) counts one drained
connection on revision 1.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import router_helpers
import yaml
from serve_helpers import MARK, Serve, serving, wait
from websocket_helpers import ECHO, version, ws_connect
from websockets.exceptions import ConnectionClosed

pytestmark = pytest.mark.slow
LOOPS = ("uvloop",)
GRACE = 3.0


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    with serving(tmp_path) as server:
        yield server


def rollout(port: int, mark: str, app_version: str) -> dict[str, Any]:
    command = [sys.executable, str(ECHO), "--port", "$(PORT)", "--version", app_version]
    return {
        "apiVersion": "changeover.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "realtime"},
        "spec": {
            "replicas": 1,
            "template": {
                "command": command,
                "env": {MARK: mark},
                "readinessProbe": {"httpGet": {"path": "/healthz"}, "periodSeconds": 0.2},
            },
            "service": {"port": port},
            "traffic": {"builtin": {"websocketDrainSeconds": GRACE}},
            "strategy": {"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}},
        },
    }


def metric(text: object, line_prefix: str) -> float:
    for line in str(text).splitlines():
        if line.startswith(line_prefix):
            return float(line[len(line_prefix) :])
    return 0.0


async def apply(serve: Serve, spec: Path, doc: dict[str, Any]) -> None:
    await asyncio.to_thread(spec.write_text, yaml.safe_dump(doc))
    done = await asyncio.to_thread(serve.cli, "apply", "-f", str(spec))
    assert done.returncode == 0, done.stdout + done.stderr


async def test_a_websocket_held_across_a_promotion_is_drained_then_closed(
    serve: Serve, tmp_path: Path
) -> None:
    port = router_helpers.free_port()
    spec = tmp_path / "rollout.yaml"

    def phase(want: str) -> bool:
        return serve.status("realtime").get("phase") == want

    await apply(serve, spec, rollout(port, serve.mark, "v1"))
    await asyncio.to_thread(wait, lambda: phase("Healthy"), 60, "v1 Healthy", serve)
    async with ws_connect(port) as old:
        assert await version(old) == "v1"
        await apply(serve, spec, rollout(port, serve.mark, "v2"))
        await asyncio.to_thread(wait, lambda: phase("Paused"), 60, "the canary paused", serve)
        assert await version(old) == "v1"  # 50% of new connections go to v2; this one stays
        asked = time.monotonic()
        promoted = await asyncio.to_thread(serve.cli, "promote", "realtime", "--full")
        assert promoted.returncode == 0, promoted.stdout + promoted.stderr
        t0 = time.monotonic()
        while True:  # until new connections land on v2 only
            async with ws_connect(port) as probe:
                if await version(probe) == "v2":
                    break
            assert time.monotonic() - t0 < 30, "v2 never took all traffic"
            await asyncio.sleep(0.1)
        switched = time.monotonic()
        async with ws_connect(port) as new:
            assert await version(old) == "v1"  # drained, not cut
            with pytest.raises(ConnectionClosed):
                while True:
                    await version(old)
                    await asyncio.sleep(0.1)
            assert time.monotonic() - asked >= GRACE  # the whole grace period, no less
            assert time.monotonic() - switched < GRACE + 3  # and then not much more
            assert await version(new) == "v2"

    drained = 'changeover_upgraded_connections_drained_total{rollout="realtime",revision="1"} '
    await asyncio.to_thread(
        wait, lambda: metric(serve.get("/metrics"), drained) == 1, 10, "1 drained", serve
    )
