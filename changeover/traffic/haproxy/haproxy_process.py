"""Supervision of one managed HAProxy: start from an argv list, reload, stop by PID.

``HAProxyRouter`` owns one ``HAProxyProcess``. HAProxy runs in master-worker mode (``-W``)
as a direct child of changeover, with its master CLI (``-S``) and its pidfile in the
router's state directory. Safety rules:

- the master gets ``PR_SET_PDEATHSIG``: if changeover dies, even by SIGKILL, HAProxy is
  told to stop instead of holding the service port forever;
- a master left by an earlier run (found through the pidfile, and only if its command line
  names this state directory's config) is stopped before a new one starts;
- every wait is bounded; the process is stopped by its PID, soft (SIGUSR1: stop listening,
  finish in-flight requests) then hard (SIGTERM, SIGKILL).

A reload (only when the configuration's layout must grow; weights never need one) goes
through the master CLI: the master re-executes itself, starts a new worker that takes over
the listening sockets (``expose-fd listeners``), and the old worker finishes its requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import subprocess

import psutil

from changeover import errors
from changeover.traffic.haproxy import config, runtime_api

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def find_binary() -> str:
    """The ``haproxy`` executable (Debian installs it in /usr/sbin, often not on PATH)."""
    found = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise errors.PermanentBackendError(
            "the haproxy router needs HAProxy: install the Debian package 'haproxy' "
            "(apt-get install haproxy, or `make deps`)"
        )
    return found


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class HAProxyProcess:
    def __init__(self, paths: config.Paths, *, binary: str | None = None) -> None:
        self.paths = paths
        self.binary = binary
        self.proc: subprocess.Popen[bytes] | None = None
        self.api = runtime_api.RuntimeAPI(paths.admin_socket)
        self.master = runtime_api.RuntimeAPI(paths.master_socket)

    @property
    def pid(self) -> int | None:
        """The master's PID (it does not change across reloads)."""
        return self.proc.pid if self.proc is not None else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    async def check(self, text: str) -> None:
        """Write ``text`` to the config file and have HAProxy validate it (``-c``)."""
        binary = self.binary = self.binary or find_binary()
        await asyncio.to_thread(self.paths.config.write_text, text)
        proc = await asyncio.create_subprocess_exec(
            binary,
            "-c",
            "-f",
            str(self.paths.config),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL,
        )
        try:
            async with asyncio.timeout(30):  # not wait_for: see runtime_api.RuntimeAPI.command
                out, _ = await proc.communicate()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            raise errors.TemporaryBackendError(
                f"HAProxy did not check {self.paths.config} within 30s"
            ) from None
        if proc.returncode != 0:
            raise errors.PermanentBackendError(
                f"HAProxy rejected the rendered configuration {self.paths.config}: "
                f"{out.decode(errors='replace').strip()}"
            )

    async def start(self, text: str, *, within: float = 10.0) -> None:
        """Validate ``text``, start HAProxy on it and wait until its runtime API answers."""
        await self._stop_stale()
        await self.check(text)
        assert self.binary is not None
        for sock in (self.paths.admin_socket, self.paths.master_socket):
            sock.unlink(missing_ok=True)
        argv = [
            self.binary,
            "-W",
            "-S",
            f"{self.paths.master_socket},mode,600",
            "-f",
            str(self.paths.config),
            "-p",
            str(self.paths.pidfile),
        ]
        self.proc = self._spawn(argv)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            if not self.running():
                raise errors.PermanentBackendError(
                    f"HAProxy exited at start (code {self.proc.returncode}): {self._tail()}"
                )
            with contextlib.suppress(OSError):
                if self.paths.admin_socket.exists():
                    info = await runtime_api.RuntimeAPI(
                        self.paths.admin_socket, timeout=1
                    ).show_info()
                    if info.get("Pid"):
                        return
            if loop.time() >= deadline:
                await self.stop(grace=1.0)
                raise errors.PermanentBackendError(
                    f"HAProxy did not answer on {self.paths.admin_socket} within {within}s: "
                    f"{self._tail()}"
                )
            await asyncio.sleep(0.02)

    def _spawn(self, argv: list[str]) -> subprocess.Popen[bytes]:
        # Popen returns as soon as the child is exec'd: fine to call from the event loop,
        # and it must run on the loop's thread: PR_SET_PDEATHSIG follows the forking thread.
        with open(self.paths.output, "ab") as out:
            return subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.paths.root,
                preexec_fn=_die_with_parent,
            )

    async def worker_pid(self) -> int:
        return int((await self.api.show_info())["Pid"])

    async def reload(self, text: str, *, within: float = 10.0) -> None:
        """Validate ``text`` and reload onto it; returns when the new worker answers."""
        await self.check(text)
        before = await self.worker_pid()
        await self.master.command("reload")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            with contextlib.suppress(errors.BackendError, KeyError, ValueError):
                if await self.worker_pid() != before:
                    return
            if loop.time() >= deadline or not self.running():
                raise errors.TemporaryBackendError(
                    f"HAProxy did not reload within {within}s: {self._tail()}"
                )
            await asyncio.sleep(0.02)

    async def stop(self, *, grace: float = 10.0) -> None:
        """Soft stop (in-flight requests finish, up to ``grace`` seconds), then hard."""
        proc = self.proc
        if proc is None:
            return
        steps = ((signal.SIGUSR1, grace), (signal.SIGTERM, 2.0), (signal.SIGKILL, 5.0))
        try:
            for sig, wait in steps:
                if proc.poll() is not None:
                    break
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, sig)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    await asyncio.to_thread(proc.wait, wait)
        except BaseException:
            self.terminate()  # cancelled while waiting: not left holding the port
            raise
        self.proc = None
        self.paths.pidfile.unlink(missing_ok=True)

    def terminate(self) -> None:
        """Stop it hard (SIGTERM to the master, which stops its workers), without waiting."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)

    async def _stop_stale(self) -> None:
        """Stop a master an earlier run left behind (its command line names our config),
        and its workers: the port is free only once every one of them has exited."""
        procs = await asyncio.to_thread(self._stale_processes)
        if not procs:
            return
        log.warning("stopping HAProxy (pids %s) left by an earlier run", [p.pid for p in procs])

        def stop() -> None:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                for p in procs:
                    with contextlib.suppress(psutil.Error):
                        p.send_signal(sig)
                _gone, alive = psutil.wait_procs(procs, timeout=5)
                if not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]:
                    return

        await asyncio.to_thread(stop)

    def _stale_processes(self) -> list[psutil.Process]:
        try:
            pid = int(self.paths.pidfile.read_text().split()[0])
            master = psutil.Process(pid)
            if str(self.paths.config) not in master.cmdline():
                return []
            return [master, *master.children(recursive=True)]
        except (OSError, ValueError, IndexError, psutil.Error):
            return []

    def _tail(self, lines: int = 8) -> str:
        try:
            text = self.paths.output.read_text(errors="replace")
        except OSError:
            return "(no output)"
        return " | ".join(text.strip().splitlines()[-lines:]) or "(no output)"
