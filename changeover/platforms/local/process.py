"""OS processes for the local platform: spawn, recognise, wait for, and stop them.

Used by ``local.replica`` (service replicas) and ``local.hooks`` (one-shot hook commands).

Why ``subprocess.Popen`` and not ``asyncio.create_subprocess_exec``: an asyncio subprocess
transport kills its child when it is closed or garbage-collected, so replicas would die
with a gracefully stopping server. Popen never kills on collection. Every process starts in
its own session (``start_new_session``) so a ``kill -9`` of the server, or a Ctrl-C sent to
its process group, leaves replicas running to be re-adopted. Output goes to a log file, not
a pipe: a pipe with no reader blocks the child once the server is gone.

Exits are awaited with a pidfd registered on the event loop (no thread per child, works for
adopted non-children too); where pidfds are unavailable we poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

import psutil

from changeover import errors, statedir

# Start stamps count clock ticks since boot: equal within a tick or two.
_CREATE_TIME_TOLERANCE = 0.05
# Stamps above this are wall-clock seconds (state files written before stamps counted
# from boot, or a system without /proc); below it, seconds since boot.
_WALL_CLOCK_STAMP = 1e9
_POLL_SECONDS = 0.2
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def expand(value: str, variables: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: unknown references stay, ``$$`` escapes ``$``.

    >>> expand("--port=$(PORT) $(NOPE) $$(PORT)", {"PORT": "20001"})
    '--port=20001 $(NOPE) $(PORT)'
    """

    def sub(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return "$"
        return variables.get(name, match.group(0))

    return _VAR.sub(sub, value)


def expand_env(env: Mapping[str, str], base: Mapping[str, str]) -> dict[str, str]:
    """Expand each value in order against ``base`` plus the entries before it, as the
    kubelet does: ``{"URL": "http://127.0.0.1:$(PORT)"}`` with base ``{"PORT": "20001"}``
    gives ``{"URL": "http://127.0.0.1:20001"}``."""
    seen = dict(base)
    out: dict[str, str] = {}
    for key, value in env.items():
        out[key] = seen[key] = expand(value, seen)
    return out


def start_stamp(pid: int) -> float:
    """When process ``pid`` started, in seconds since boot: with the pid, its identity.

    Not psutil's ``create_time``: that adds the boot time as the wall clock sees it *now*,
    so a step of the clock (NTP, a VM resumed from a snapshot) moves it by whole seconds and
    a live replica stops being recognised. Raises ``psutil.NoSuchProcess`` if it is gone.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            data = stat.read()
    except FileNotFoundError:
        raise psutil.NoSuchProcess(pid) from None
    except OSError:  # no procfs: the wall clock is all there is
        return float(psutil.Process(pid).create_time())
    # The command name (field 2) may hold spaces and parentheses: count from its end.
    fields = data[data.rindex(b")") + 2 :].split()
    return int(fields[19]) / _CLOCK_TICKS  # field 22, starttime


def _started_at(pid: int, stamp: float) -> bool:
    """True if process ``pid`` is the one that started at ``stamp`` (see ``start_stamp``)."""
    wall = stamp > _WALL_CLOCK_STAMP
    started = float(psutil.Process(pid).create_time()) if wall else start_stamp(pid)
    return abs(started - stamp) <= _CREATE_TIME_TOLERANCE


class ProcessHandle:
    """One process we started (``popen`` set) or adopted from an earlier run (``popen`` None).

    The pid plus its start stamp (``start_stamp``) is the identity: every signal is sent
    only after checking both, so a pid recycled by the OS for someone else's process is
    never touched. Our own child needs no stamp: its pid is not reused until we reap it.
    """

    def __init__(self, *, pid: int, create_time: float, popen: subprocess.Popen[bytes] | None):
        self.pid = pid
        self.create_time = create_time
        self._popen = popen
        self.returncode: int | None = None

    @property
    def adopted(self) -> bool:
        return self._popen is None

    @classmethod
    def adopt(cls, pid: int, create_time: float) -> ProcessHandle | None:
        """The live process recorded as (pid, create_time), or None if it is gone or reused."""
        handle = cls(pid=pid, create_time=create_time, popen=None)
        return handle if handle.alive() else None

    def alive(self) -> bool:
        """Still running and still the process we recorded (a zombie counts as exited)."""
        if self._popen is not None:
            self.returncode = self._popen.poll()
            return self.returncode is None
        try:
            if not _started_at(self.pid, self.create_time):
                return False
            return bool(psutil.Process(self.pid).status() != psutil.STATUS_ZOMBIE)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return False

    def signal(self, sig: int) -> bool:
        """Send ``sig`` if the process is still ours; True if sent."""
        if not self.alive():
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)
            return True
        return False

    def kill_group(self) -> None:
        """SIGKILL the process and everything in its session's process group (it is the group
        leader, since it was started with a new session), as a container runtime would."""
        if not self.alive():
            return
        try:
            if os.getpgid(self.pid) == self.pid:
                os.killpg(self.pid, signal.SIGKILL)
            else:
                os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    async def wait(self) -> int | None:
        """Return when the process has exited: its exit code if it is our child (negative for
        a signal, as subprocess reports it), None for an adopted process."""
        if not self.alive():
            return self._reap()
        fd: int | None = None
        try:
            fd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):
            fd = None
        if fd is not None and self.alive():  # re-check: the fd now pins this very process
            loop = asyncio.get_running_loop()
            exited = loop.create_future()

            def on_readable() -> None:
                if not exited.done():
                    exited.set_result(None)

            loop.add_reader(fd, on_readable)
            try:
                await exited
            finally:
                loop.remove_reader(fd)
                os.close(fd)
        else:
            if fd is not None:
                os.close(fd)
            # No pidfd (old kernel, not Linux): polling is the only portable way to watch a
            # process that is not our child.
            while self.alive():  # noqa: ASYNC110
                await asyncio.sleep(_POLL_SECONDS)
        return self._reap()

    def _reap(self) -> int | None:
        if self._popen is not None:
            # Never wait(): this runs on the event loop, and a blocking wait on a child that
            # is still running would stop the whole server with it.
            self.returncode = self._popen.poll()
        return self.returncode

    async def terminate(self, grace_seconds: float) -> None:
        """SIGTERM, wait up to ``grace_seconds``, then SIGKILL the process group."""
        if self.signal(signal.SIGTERM):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wait(), timeout=grace_seconds)
        self.kill_group()
        if self._popen is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wait(), timeout=5.0)


def spawn(
    argv: list[str],
    *,
    env: Mapping[str, str],
    cwd: str | None,
    log_path: Path,
    banner: str = "",
) -> ProcessHandle:
    """Start ``argv`` (never through a shell) with output appended to ``log_path``.

    Raises ``PermanentBackendError`` with a readable message when it cannot be executed
    (no such file, not executable, no such working directory, a NUL in an argument).
    """
    if cwd is not None and not os.path.isdir(cwd):
        raise errors.PermanentBackendError(f"working directory {cwd!r} does not exist")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        if banner:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
            log.write(f"--- changeover {stamp}: {banner}\n".encode())
            log.flush()
        try:
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=dict(env),
                start_new_session=True,
                close_fds=True,
                umask=statedir.child_umask(),
            )
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise errors.PermanentBackendError(f"cannot execute {argv[0]!r}: {reason}") from exc
        except ValueError as exc:  # a NUL in argv or env, '=' in a name: lint refuses these
            raise errors.PermanentBackendError(f"cannot execute {argv[0]!r}: {exc}") from exc
    try:
        create_time = start_stamp(popen.pid)
    except psutil.NoSuchProcess:
        # Exited (and reaped by nobody yet, so this is rare): identity no longer matters.
        create_time = 0.0
    return ProcessHandle(pid=popen.pid, create_time=create_time, popen=popen)


def tail(path: Path, *, lines: int = 20, max_chars: int = 2000) -> str:
    """The last ``lines`` lines of a log file (at most ``max_chars``), for error messages."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_chars * 2))
            data = f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    text = "\n".join(data.splitlines()[-lines:])
    return text[-max_chars:]
