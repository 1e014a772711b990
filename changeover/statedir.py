"""The state directory is private: specs, env values, the token, logs and the database are
readable by the user who runs ``serve`` and nobody else.

``secure(state_dir)`` is called once when ``serve`` starts: it creates the directory 0700,
tightens what is already there (directories to 0700, files to 0600, keeping the owner's
bits: an executable stays executable for its owner), and sets the process umask to 077 so
every file ``serve`` and its routers create afterwards (the database and its WAL, logs,
HAProxy's files, sockets) is private from its first byte.

The processes ``serve`` starts for users (replicas, hooks, ``job`` metrics) get back the
umask ``serve`` was started with (``child_umask``): their files are theirs to share.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE_UMASK = 0o077
_started_with: int | None = None


def secure(state_dir: Path) -> list[Path]:
    """Create ``state_dir`` (0700) and make it and everything in it private; set the umask
    for what comes later. Returns the paths whose mode was tightened."""
    global _started_with
    previous = os.umask(PRIVATE_UMASK)
    if _started_with is None:
        _started_with = previous
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    tightened: list[Path] = []
    for root, dirs, files in os.walk(state_dir):  # symlinks are not followed
        for name in (*dirs, *files):
            _tighten(Path(root, name), tightened)
    _tighten(state_dir, tightened)
    if tightened:
        log.info("tightened %d file modes under %s to owner-only", len(tightened), state_dir)
    return tightened


def _tighten(path: Path, tightened: list[Path]) -> None:
    try:
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode) or st.st_uid != os.geteuid():
            return
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            path.chmod(mode & ~0o077)
            tightened.append(path)
    except OSError as exc:  # gone meanwhile, or not ours: say so, keep going
        log.warning("cannot make %s private: %s", path, exc)


def child_umask() -> int:
    """The umask for processes started on a user's behalf: the one ``serve`` started with
    (or the current one when ``secure`` was never called)."""
    if _started_with is not None:
        return _started_with
    try:  # read, not set-and-restore: another thread may create a file in between
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    current = os.umask(PRIVATE_UMASK)
    os.umask(current)
    return current
