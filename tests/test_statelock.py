"""One ``serve`` per state dir: the second one is refused with the first one's PID and URL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from changeover import errors
from changeover.statelock import StateDirLock


def test_a_second_lock_is_refused_naming_the_owner(tmp_path: Path) -> None:
    first = StateDirLock.acquire(tmp_path)
    first.record(url="http://127.0.0.1:7070")
    with pytest.raises(errors.StateError) as caught:
        StateDirLock.acquire(tmp_path)
    message = str(caught.value)
    assert f"pid {os.getpid()}" in message
    assert "http://127.0.0.1:7070" in message
    assert str(tmp_path) in message
    first.release()
    StateDirLock.acquire(tmp_path).release()  # free again once released


def test_the_lock_dies_with_its_process(tmp_path: Path) -> None:
    """A killed server never leaves a stale lock: the kernel drops it with the process."""
    code = (
        "import sys, time; from pathlib import Path;"
        "from changeover.statelock import StateDirLock;"
        "StateDirLock.acquire(Path(sys.argv[1])); print('locked', flush=True); time.sleep(60)"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "locked"
        with pytest.raises(errors.StateError, match=f"pid {child.pid}, API not listening yet"):
            StateDirLock.acquire(tmp_path)
    finally:
        child.kill()
        child.wait(10)
    StateDirLock.acquire(tmp_path).release()


def test_the_lock_file_is_private(tmp_path: Path) -> None:
    lock = StateDirLock.acquire(tmp_path)
    try:
        assert (tmp_path / "serve.lock").stat().st_mode & 0o077 == 0
    finally:
        lock.release()
