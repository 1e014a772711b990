"""The local platform's pure helpers: $(VAR) expansion, backoff, ports, the state file."""

from __future__ import annotations

import os
import socket
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


def test_port_allocator_skips_assigned_and_busy_ports() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
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
    me = psutil.Process(os.getpid())
    assert process.ProcessHandle.adopt(os.getpid(), me.create_time()) is not None
    assert process.ProcessHandle.adopt(os.getpid(), me.create_time() - 100) is None
