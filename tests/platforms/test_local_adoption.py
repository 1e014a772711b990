"""Re-adoption: a restarted server finds its replicas still running and keeps them."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest
from platform_helpers import Platforms, echo_template, pid_alive, ready, wait_for

from changeover.platforms import base

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent


async def test_replicas_survive_a_sigkilled_server_and_are_adopted(
    make_platform: Platforms,
) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        str(HERE / "serve_platform.py"),
        str(make_platform.state_dir),
        "chat",
        "1",
        "2",
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        assert server.stdout is not None
        line = await asyncio.wait_for(server.stdout.readline(), timeout=30)
        before = {r["id"]: r for r in json.loads(line)["replicas"]}
        for r in before.values():
            make_platform.track(r["pid"])
    finally:
        server.send_signal(signal.SIGKILL)  # the server dies without any cleanup
        await server.wait()
    assert len(before) == 2
    assert all(pid_alive(r["pid"]) for r in before.values())

    platform = make_platform()
    await platform.start()

    await wait_for(lambda: len(ready(platform, "chat", 1)) == 2, what="adopted replicas ready")
    after = {r.id: r for r in ready(platform, "chat", 1)}
    assert {i: (r["pid"], r["port"]) for i, r in before.items()} == {
        i: (r.pid, r.endpoint.port if r.endpoint else None) for i, r in after.items()
    }
    assert all(r.restarts == 0 for r in after.values())

    # An adopted replica is not our child, yet its death is noticed and it is replaced.
    victim = next(iter(after.values()))
    assert victim.pid is not None
    os.kill(victim.pid, signal.SIGKILL)
    await wait_for(
        lambda: any(r.restarts == 1 for r in platform.observe("chat")[1].replicas),
        what="adopted replica's crash noticed",
    )
    await wait_for(lambda: len(ready(platform, "chat", 1)) == 2, what="replaced")

    # And adopted replicas are stopped like our own.
    survivor = next(r for r in ready(platform, "chat", 1) if r.id != victim.id)
    assert survivor.pid is not None
    await platform.scale(rollout="chat", revision=1, replicas=0)
    await wait_for(lambda: not platform.observe("chat")[1].replicas, what="scaled to zero")
    await wait_for(lambda: not pid_alive(survivor.pid or 0), what="adopted pid stopped")


async def test_close_without_stopping_leaves_replicas_for_the_next_start(
    make_platform: Platforms,
) -> None:
    first = make_platform()
    await first.start()
    await first.ensure_revision(rollout="chat", revision=1, template=echo_template())
    await first.scale(rollout="chat", revision=1, replicas=2)
    await wait_for(lambda: len(ready(first, "chat", 1)) == 2)
    before = {r.id: (r.pid, r.endpoint, r.ready_since) for r in ready(first, "chat", 1)}

    await first.close()  # a graceful server stop that leaves replicas running
    await asyncio.sleep(0.3)
    assert all(pid is not None and pid_alive(pid) for pid, _, _ in before.values())

    second = make_platform()
    await second.start()
    await wait_for(lambda: len(ready(second, "chat", 1)) == 2)
    after = {r.id: (r.pid, r.endpoint, r.ready_since) for r in ready(second, "chat", 1)}
    assert after == before  # same processes, ports, and readySince (minReadySeconds kept)


async def test_dead_replicas_are_replaced_on_start(make_platform: Platforms) -> None:
    first = make_platform()
    await first.start()
    await first.ensure_revision(rollout="chat", revision=1, template=echo_template())
    await first.scale(rollout="chat", revision=1, replicas=2)
    await wait_for(lambda: len(ready(first, "chat", 1)) == 2)
    await first.close()
    dead, alive = ready(first, "chat", 1)
    assert dead.pid is not None
    os.kill(dead.pid, signal.SIGKILL)
    await wait_for(lambda: not pid_alive(dead.pid or 0))

    second = make_platform()
    await second.start()

    await wait_for(lambda: len(ready(second, "chat", 1)) == 2)
    pids = {r.id: r.pid for r in ready(second, "chat", 1)}
    assert pids[alive.id] == alive.pid
    assert pids[dead.id] not in (None, dead.pid)


async def test_a_scale_down_interrupted_by_shutdown_is_finished_on_start(
    make_platform: Platforms,
) -> None:
    hold = asyncio.Event()

    async def drainer(endpoint: object, grace_seconds: float) -> None:
        await hold.wait()  # the server dies while this replica drains

    first = make_platform(drainer=drainer)
    await first.start()
    await first.ensure_revision(rollout="chat", revision=1, template=echo_template())
    await first.scale(rollout="chat", revision=1, replicas=2)
    await wait_for(lambda: len(ready(first, "chat", 1)) == 2)
    await first.scale(rollout="chat", revision=1, replicas=1)
    await wait_for(
        lambda: any(
            r.state is base.ReplicaState.TERMINATING for r in first.observe("chat")[1].replicas
        )
    )
    terminating = next(
        r for r in first.observe("chat")[1].replicas if r.state is base.ReplicaState.TERMINATING
    )
    await first.close()
    assert terminating.pid is not None and pid_alive(terminating.pid)

    second = make_platform()
    await second.start()

    await wait_for(lambda: len(second.observe("chat")[1].replicas) == 1)
    await wait_for(lambda: not pid_alive(terminating.pid or 0), what="interrupted stop finished")
    assert second.observe("chat")[1].desired == 1
