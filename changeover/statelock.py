"""One ``changeover serve`` per state dir: an exclusive ``flock`` on ``state_dir/serve.lock``.

Two servers on one state dir would both supervise (and stop) the same replicas and fight
over the same routers. ``StateDirLock.acquire`` takes the lock without waiting; the file
holds the owner's PID and, once its API listens, its address, so a second ``serve`` can
say who is already there. The kernel drops the lock when the process dies (even by
``kill -9``), so a crashed server never leaves a stale lock behind. The descriptor is
close-on-exec: replicas and router processes never inherit (and so never keep) the lock.

    lock = StateDirLock.acquire(state_dir)      # StateError naming the other PID + URL
    lock.record(url="http://127.0.0.1:7070")
    ...
    lock.release()
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path

from changeover import errors

LOCK_FILE = "serve.lock"


class StateDirLock:
    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, state_dir: Path) -> StateDirLock:
        """Lock ``state_dir`` for this process, or raise ``StateError`` naming its owner."""
        path = Path(state_dir) / LOCK_FILE
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise errors.StateError(f"cannot open the state dir lock {path}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            owner = _describe(path)
            os.close(fd)
            raise errors.StateError(
                f"another `changeover serve` ({owner}) already uses the state dir "
                f"{state_dir}; stop it first, or give this one its own --state-dir"
            ) from None
        lock = cls(path, fd)
        lock.record(url=None)
        return lock

    def record(self, *, url: str | None) -> None:
        """Write the owner's PID (and API address once known) for a second ``serve`` to name."""
        if self._fd is None:
            return
        data = json.dumps({"pid": os.getpid(), "url": url}).encode()
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, data, 0)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)  # closing the last descriptor drops the flock


def _describe(path: Path) -> str:
    """``pid 4242, API http://127.0.0.1:7070`` from the lock file, as far as it says."""
    try:
        data = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        data = {}
    if not isinstance(data, dict):
        data = {}
    pid, url = data.get("pid"), data.get("url")
    parts = [f"pid {pid}" if isinstance(pid, int) else "pid unknown"]
    parts.append(f"API {url}" if isinstance(url, str) else "API not listening yet")
    return ", ".join(parts)
