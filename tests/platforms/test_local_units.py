"""The local platform's pure helpers: $(VAR) expansion, backoff, ports, the state file."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import sys
import threading
from pathlib import Path

import psutil
import pytest

from changeover import errors
from changeover.platforms.local import Backoff, ports, process, state_file
from changeover.spec import models


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("$(PORT)", "20001"),
        ("--port=$(PORT)", "--port=20001"),
        ("$(UNKNOWN)", "$(UNKNOWN)"),  # left as written, like Kubernetes
        ("$$(PORT)", "$(PORT)"),  # $$ escapes
        ("cost: $$5", "cost: $5"),
        ("$PORT", "$PORT"),  # only the $(...) form expands
        ("$(PORT)$(PORT)", "2000120001"),
    ],
)
def test_expand_follows_kubernetes(value: str, expected: str) -> None:
    assert process.expand(value, {"PORT": "20001"}) == expected


def test_env_values_see_earlier_entries_only() -> None:
    env = {"A": "$(PORT)", "B": "http://127.0.0.1:$(A)/", "C": "$(D)", "D": "late"}
    assert process.expand_env(env, {"PORT": "1"}) == {
        "A": "1",
        "B": "http://127.0.0.1:1/",
        "C": "$(D)",
        "D": "late",
    }


def test_backoff_doubles_to_the_cap() -> None:
    backoff = Backoff(initial=0.5, cap=30.0)
    assert [backoff.delay(n) for n in range(1, 9)] == [0.5, 1, 2, 4, 8, 16, 30, 30]


def _three_free_ports() -> int:
    """The first of three consecutive free ports outside both the ephemeral range (where
    outgoing connections of other tests land) and the local platform's own range."""
    for _ in range(200):
        port = random.randrange(10000, 19990)
        if all(ports.port_is_free(p) for p in (port, port + 1, port + 2)):
            return port
    raise AssertionError("no three consecutive free ports in 10000-19999")


def test_port_allocator_skips_assigned_and_busy_ports() -> None:
    port = _three_free_ports()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        allocator = ports.PortAllocator((port, port + 2))
        got = {allocator.allocate() for _ in range(2)}
        assert port not in got
        assert got == {port + 1, port + 2}
        with pytest.raises(errors.TemporaryBackendError):
            allocator.allocate()
        allocator.release(port + 1)
        assert allocator.allocate(prefer=port + 1) == port + 1


def test_state_file_round_trips(tmp_path: Path) -> None:
    file = state_file.StateFile(tmp_path / "platform" / "local.json")
    assert file.load().revisions == {}
    template = models.ProcessTemplate(command=["srv", "$(PORT)"], env={"A": "b"})
    saved = state_file.PlatformState(next_seq=3)
    saved.revisions[("chat", 2)] = state_file.RevisionRecord(
        desired=2,
        template=template,
        replicas=[
            state_file.ReplicaRecord(id="chat-2-1", seq=1, port=20001, pid=42, create_time=1.5)
        ],
    )
    saved.hooks[("chat", "pre-2")] = state_file.HookRecord(state="failed", message="exited 1")

    file.save(saved)
    loaded = file.load()

    assert loaded == saved
    assert not list((tmp_path / "platform").glob("*.tmp"))


def test_corrupt_state_file_is_a_permanent_backend_error(tmp_path: Path) -> None:
    path = tmp_path / "local.json"
    path.write_text("{not json")
    with pytest.raises(errors.PermanentBackendError, match="corrupt platform state"):
        state_file.StateFile(path).load()


def test_spawn_rejects_a_missing_working_dir(tmp_path: Path) -> None:
    with pytest.raises(errors.PermanentBackendError, match="does not exist"):
        process.spawn(["true"], env={}, cwd=str(tmp_path / "nope"), log_path=tmp_path / "x.log")


def test_adopt_refuses_a_reused_pid() -> None:
    stamp = process.start_stamp(os.getpid())
    assert process.ProcessHandle.adopt(os.getpid(), stamp) is not None
    assert process.ProcessHandle.adopt(os.getpid(), stamp - 100) is None


def test_adopt_still_knows_a_wall_clock_stamp_from_an_older_state_file() -> None:
    wall = psutil.Process(os.getpid()).create_time()
    assert process.ProcessHandle.adopt(os.getpid(), wall) is not None
    assert process.ProcessHandle.adopt(os.getpid(), wall - 100) is None


def test_the_start_stamp_is_not_the_wall_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """A step of the system clock (NTP, a VM resumed) moves the boot time psutil adds to
    a process's create time; the identity of a running replica must not move with it."""
    stamp = process.start_stamp(os.getpid())
    real_boot = psutil.boot_time()
    monkeypatch.setattr(psutil._pslinux, "boot_time", lambda: real_boot + 7.0)  # the step
    assert process.start_stamp(os.getpid()) == stamp
    assert process.ProcessHandle.adopt(os.getpid(), stamp) is not None


def test_a_child_whose_stamp_no_longer_matches_is_still_stopped(tmp_path: Path) -> None:
    """Our own child is ours until reaped, whatever its stamp says: terminate() signals
    it and returns. It used to look gone, got no signal, and a blocking wait() for it
    froze the whole event loop (serve stopped answering)."""
    child = process.spawn(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        env={},
        cwd=None,
        log_path=tmp_path / "child.log",
    )
    handle = process.ProcessHandle(
        pid=child.pid, create_time=child.create_time + 3, popen=child._popen
    )
    assert handle.alive()
    done = threading.Event()

    def stop() -> None:
        asyncio.run(handle.terminate(5))
        done.set()

    threading.Thread(target=stop, daemon=True).start()
    try:
        assert done.wait(20), "terminate() hung on a child it took for gone"
        assert handle.returncode == -signal.SIGTERM
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signal.SIGKILL)
