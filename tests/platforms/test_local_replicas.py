"""LocalPlatform with real processes: scaling, readiness, draining, crashes, bad commands."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from pathlib import Path

import httpx
import pytest
from platform_helpers import (
    ECHO_APP,
    FAST_PROBE,
    Platforms,
    echo_template,
    pid_alive,
    ready,
    wait_for,
)

from changeover import errors
from changeover.endpoints import Endpoint
from changeover.platforms import base
from changeover.platforms.local import ports
from changeover.spec import models

pytestmark = pytest.mark.slow


async def get_json(endpoint: Endpoint, path: str = "/") -> dict[str, object]:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://{endpoint}{path}", timeout=5)
        response.raise_for_status()
        body: dict[str, object] = response.json()
        return body


async def test_scale_up_three_replicas_become_ready_on_distinct_ports(
    make_platform: Platforms,
) -> None:
    changes: list[int] = []
    platform = make_platform(on_change=lambda: changes.append(1))
    await platform.start()
    await platform.ensure_revision(rollout="chat", revision=1, template=echo_template())

    await platform.scale(rollout="chat", revision=1, replicas=3)

    assert platform.observe("chat")[1].desired == 3  # scale returned before anything is ready
    await wait_for(lambda: len(ready(platform, "chat", 1)) == 3, what="3 ready replicas")
    replicas = ready(platform, "chat", 1)
    endpoints = [r.endpoint for r in replicas]
    assert None not in endpoints
    assert len({e.port for e in endpoints if e is not None}) == 3
    for replica in replicas:
        assert replica.endpoint is not None
        assert replica.ready_since is not None
        body = await get_json(replica.endpoint)
        assert body["version"] == "v1"
        assert body["pid"] == replica.pid
        assert body["port"] == replica.endpoint.port
    assert changes, "on_change was never called"
    log_dir = platform.state_dir / "logs" / "chat" / "1"
    assert sorted(p.name for p in log_dir.iterdir()) == sorted(f"{r.id}.log" for r in replicas)


async def test_scale_down_drains_each_victim_before_stopping_it(make_platform: Platforms) -> None:
    drained: list[tuple[Endpoint, bool]] = []
    pids_by_port: dict[int, int] = {}

    async def drainer(endpoint: Endpoint, grace_seconds: float) -> None:
        drained.append((endpoint, pid_alive(pids_by_port[endpoint.port])))
        await asyncio.sleep(0.05)  # in-flight requests finishing

    platform = make_platform(drainer=drainer)
    await platform.start()
    await platform.ensure_revision(rollout="chat", revision=1, template=echo_template())
    await platform.scale(rollout="chat", revision=1, replicas=3)
    await wait_for(lambda: len(ready(platform, "chat", 1)) == 3)
    oldest, *newer = sorted(ready(platform, "chat", 1), key=lambda r: int(r.id.rsplit("-")[-1]))
    for r in ready(platform, "chat", 1):
        assert r.endpoint is not None and r.pid is not None
        pids_by_port[r.endpoint.port] = r.pid

    await platform.scale(rollout="chat", revision=1, replicas=1)

    await wait_for(lambda: len(platform.observe("chat")[1].replicas) == 1, what="scale down")
    assert sorted(e for e, _ in drained) == sorted(r.endpoint for r in newer if r.endpoint)
    assert all(alive for _, alive in drained), "drainer must run before the process stops"
    assert [r.id for r in platform.observe("chat")[1].replicas] == [oldest.id]  # newest go
    for pid in [r.pid for r in newer if r.pid is not None]:
        assert not pid_alive(pid)


async def test_scale_down_shows_terminating_while_draining(make_platform: Platforms) -> None:
    release = asyncio.Event()

    async def drainer(endpoint: Endpoint, grace_seconds: float) -> None:
        await release.wait()

    platform = make_platform(drainer=drainer)
    await platform.start()
    await platform.ensure_revision(rollout="chat", revision=1, template=echo_template())
    await platform.scale(rollout="chat", revision=1, replicas=2)
    await wait_for(lambda: len(ready(platform, "chat", 1)) == 2)

    await platform.scale(rollout="chat", revision=1, replicas=1)
    await wait_for(
        lambda: any(
            r.state is base.ReplicaState.TERMINATING for r in platform.observe("chat")[1].replicas
        )
    )
    # A terminating replica does not count: scaling back up starts a new one beside it.
    await platform.scale(rollout="chat", revision=1, replicas=2)
    await wait_for(lambda: len(ready(platform, "chat", 1)) == 2)
    assert len(platform.observe("chat")[1].replicas) == 3
    release.set()
    await wait_for(lambda: len(platform.observe("chat")[1].replicas) == 2)


async def test_victims_are_not_ready_replicas_first(
    make_platform: Platforms, tmp_path: Path
) -> None:
    flags = tmp_path / "flags"
    flags.mkdir()
    template = echo_template(env={"ECHO_HEALTHZ_FILE": str(flags / "$(PORT)")})
    platform = make_platform()
    await platform.start()
    await platform.ensure_revision(rollout="chat", revision=1, template=template)
    await platform.scale(rollout="chat", revision=1, replicas=3)
    await wait_for(lambda: len(ready(platform, "chat", 1)) == 3)
    oldest = min(ready(platform, "chat", 1), key=lambda r: int(r.id.rsplit("-")[-1]))
    assert oldest.endpoint is not None
    (flags / str(oldest.endpoint.port)).touch()  # the oldest fails its probe
    await wait_for(lambda: len(ready(platform, "chat", 1)) == 2, what="oldest NotReady")

    await platform.scale(rollout="chat", revision=1, replicas=2)

    await wait_for(lambda: len(platform.observe("chat")[1].replicas) == 2)
    assert oldest.id not in {r.id for r in platform.observe("chat")[1].replicas}


async def test_killed_replica_is_restarted_and_counted(make_platform: Platforms) -> None:
    platform = make_platform()
    await platform.start()
    await platform.ensure_revision(rollout="chat", revision=1, template=echo_template())
    await platform.scale(rollout="chat", revision=1, replicas=1)
    await wait_for(lambda: len(ready(platform, "chat", 1)) == 1)
    (before,) = ready(platform, "chat", 1)
    assert before.pid is not None

    os.kill(before.pid, signal.SIGKILL)

    await wait_for(
        lambda: platform.observe("chat")[1].replicas[0].restarts == 1, what="restart counted"
    )
    await wait_for(lambda: len(ready(platform, "chat", 1)) == 1, what="ready again")
    (after,) = ready(platform, "chat", 1)
    assert after.id == before.id
    assert after.pid != before.pid
    assert after.restarts == 1
    assert platform.observe("chat")[1].restarts == 1
    log_text = (platform.state_dir / "logs" / "chat" / "1" / f"{before.id}.log").read_text()
    assert log_text.count("starting replica") == 2


async def test_failing_probe_keeps_replica_out_and_flips_back(
    make_platform: Platforms, tmp_path: Path
) -> None:
    flag = tmp_path / "unhealthy"
    flag.touch()
    template = echo_template(env={"ECHO_HEALTHZ_FILE": str(flag)})
    platform = make_platform()
    await platform.start()
    await platform.ensure_revision(rollout="chat", revision=1, template=template)
    await platform.scale(rollout="chat", revision=1, replicas=1)

    await wait_for(lambda: "HTTP 503" in platform.observe("chat")[1].replicas[0].message)
    await asyncio.sleep(0.5)  # several more failing probes
    (replica,) = platform.observe("chat")[1].replicas
    assert replica.state is base.ReplicaState.STARTING
    assert replica.restarts == 0  # readiness failures never restart a process

    flag.unlink()
    await wait_for(lambda: len(ready(platform, "chat", 1)) == 1, what="ready once healthy")
    flag.touch()
    await wait_for(
        lambda: platform.observe("chat")[1].replicas[0].state is base.ReplicaState.NOT_READY,
        what="NotReady after failureThreshold failures",
    )
    assert platform.observe("chat")[1].replicas[0].ready_since is None


async def test_without_http_probe_ready_when_port_accepts(
    make_platform: Platforms,
) -> None:
    template = echo_template(readiness_probe=None, env={"ECHO_STARTUP_DELAY": "0.3"})
    platform = make_platform()
    await platform.start()
    await platform.ensure_revision(rollout="chat", revision=1, template=template)
    await platform.scale(rollout="chat", revision=1, replicas=1)
    await asyncio.sleep(0.15)
    assert not ready(platform, "chat", 1)  # not listening yet
    await wait_for(lambda: len(ready(platform, "chat", 1)) == 1)


async def test_port_is_expanded_in_command_and_env(make_platform: Platforms) -> None:
    template = echo_template(
        command=[sys.executable, ECHO_APP, "--port", "$(PORT)"],
        env={"VERSION": "v-$(PORT)-$(MISSING)", "ECHO_HEALTHZ": "$$(PORT)"},
    )
    platform = make_platform()
    await platform.start()
    await platform.ensure_revision(rollout="chat", revision=1, template=template)
    await platform.scale(rollout="chat", revision=1, replicas=1)
    await wait_for(lambda: len(ready(platform, "chat", 1)) == 1)
    (replica,) = ready(platform, "chat", 1)
    assert replica.endpoint is not None
    body = await get_json(replica.endpoint)
    assert body["version"] == f"v-{replica.endpoint.port}-$(MISSING)"


async def test_working_dir_is_honoured(make_platform: Platforms, tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    template = echo_template(working_dir=str(workdir))
    platform = make_platform()
    await platform.start()
    await platform.ensure_revision(rollout="chat", revision=1, template=template)
    await platform.scale(rollout="chat", revision=1, replicas=1)
    await wait_for(lambda: len(ready(platform, "chat", 1)) == 1)
    (replica,) = ready(platform, "chat", 1)
    assert replica.endpoint is not None
    assert (await get_json(replica.endpoint))["cwd"] == str(workdir)


async def test_bad_command_is_crashed_with_a_message_not_an_exception(
    make_platform: Platforms,
) -> None:
    template = models.ProcessTemplate(command=["/nonexistent/server", "--port", "$(PORT)"])
    platform = make_platform()
    await platform.start()
    await platform.ensure_revision(rollout="chat", revision=1, template=template)
    await platform.scale(rollout="chat", revision=1, replicas=1)

    await wait_for(lambda: platform.observe("chat")[1].replicas[0].restarts >= 2)
    revision = platform.observe("chat")[1]
    (replica,) = revision.replicas
    assert replica.state in (base.ReplicaState.CRASHED, base.ReplicaState.STARTING)
    assert "cannot execute '/nonexistent/server'" in replica.message
    assert "No such file" in revision.message
    # The reason is in the replica's log too, where `changeover logs` reads it.
    (log_file,) = (platform.state_dir / "logs" / "chat" / "1").glob("*.log")
    assert "cannot execute '/nonexistent/server'" in log_file.read_text()
    await platform.scale(rollout="chat", revision=1, replicas=0)  # still controllable
    await wait_for(lambda: not platform.observe("chat")[1].replicas)


async def test_process_that_exits_is_crashed_with_its_exit_code_and_output(
    make_platform: Platforms,
) -> None:
    template = models.ProcessTemplate(
        command=[sys.executable, "-c", "import sys; print('boom: bad config'); sys.exit(3)"]
    )
    platform = make_platform()
    await platform.start()
    await platform.ensure_revision(rollout="chat", revision=1, template=template)
    await platform.scale(rollout="chat", revision=1, replicas=1)
    await wait_for(lambda: "exited with code 3" in platform.observe("chat")[1].message)
    assert "boom: bad config" in platform.observe("chat")[1].message


async def test_sigterm_ignored_means_sigkill_after_grace(make_platform: Platforms) -> None:
    template = echo_template(env={"ECHO_IGNORE_SIGTERM": "1"}, kill_after_seconds=0.3)
    platform = make_platform()
    await platform.start()
    await platform.ensure_revision(rollout="chat", revision=1, template=template)
    await platform.scale(rollout="chat", revision=1, replicas=1)
    await wait_for(lambda: len(ready(platform, "chat", 1)) == 1)
    (replica,) = ready(platform, "chat", 1)
    assert replica.pid is not None

    await platform.delete_revision(rollout="chat", revision=1)

    assert not pid_alive(replica.pid)
    assert platform.observe("chat") == {}


async def test_delete_rollout_stops_everything_and_scale_unknown_is_not_found(
    make_platform: Platforms,
) -> None:
    platform = make_platform()
    await platform.start()
    for revision in (1, 2):
        await platform.ensure_revision(rollout="chat", revision=revision, template=echo_template())
        await platform.scale(rollout="chat", revision=revision, replicas=1)
    await wait_for(lambda: len(ready(platform, "chat", 1)) + len(ready(platform, "chat", 2)) == 2)
    pids = [r.pid for rev in platform.observe("chat").values() for r in rev.replicas]

    await platform.delete_rollout("chat")

    assert platform.observe("chat") == {}
    assert not any(pid_alive(pid) for pid in pids if pid is not None)
    with pytest.raises(errors.NotFound):
        await platform.scale(rollout="chat", revision=1, replicas=1)
    state = json.loads((platform.state_dir / "platform" / "local.json").read_text())
    assert "chat" not in state["rollouts"]


async def test_probe_settings_are_honoured(make_platform: Platforms) -> None:
    probe = FAST_PROBE.model_copy(update={"initial_delay_seconds": 0.6, "success_threshold": 3})
    platform = make_platform()
    await platform.start()
    await platform.ensure_revision(
        rollout="chat", revision=1, template=echo_template(readiness_probe=probe)
    )
    await platform.scale(rollout="chat", revision=1, replicas=1)
    await asyncio.sleep(0.5)
    assert not ready(platform, "chat", 1)  # initialDelaySeconds not over yet
    await wait_for(lambda: len(ready(platform, "chat", 1)) == 1)


async def test_port_taken_before_the_replica_binds_moves_it_to_another_port(
    make_platform: Platforms,
) -> None:
    low = free_pair()
    template = echo_template(env={"ECHO_STARTUP_DELAY": "0.4"})
    platform = make_platform(port_range=(low, low + 1))
    await platform.start()
    await platform.ensure_revision(rollout="chat", revision=1, template=template)
    await platform.scale(rollout="chat", revision=1, replicas=1)
    await wait_for(lambda: platform.observe("chat")[1].replicas[0].endpoint is not None)
    first = platform.observe("chat")[1].replicas[0].endpoint
    assert first is not None

    with socket.socket() as squatter:  # another program grabs the port first
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", first.port))
        squatter.listen()
        await wait_for(lambda: len(ready(platform, "chat", 1)) == 1, what="ready elsewhere")

    (replica,) = ready(platform, "chat", 1)
    assert replica.endpoint is not None
    assert replica.endpoint.port == ({low, low + 1} - {first.port}).pop()
    assert replica.restarts == 1


def free_pair() -> int:
    """The lower of two adjacent free loopback ports."""
    for _ in range(100):
        with socket.socket() as probe_sock:
            probe_sock.bind(("127.0.0.1", 0))
            port = int(probe_sock.getsockname()[1])
        if port < 65535 and all(ports.port_is_free(p) for p in (port, port + 1)):
            return port
    raise AssertionError("no two adjacent free ports")
