"""A private ``changeover serve`` for the demo, and the guarantee that it leaves nothing behind.

``DemoServer`` starts ``serve`` as a subprocess on a free loopback port, with its state in a
temporary directory and ``CHANGEOVER_CONFIG`` pointing at a temporary ``servers.json``, so the
user's own config and servers are never touched. It runs in a session of its own: a Ctrl-C
in the terminal reaches the demo only, and the demo stops ``serve`` with SIGTERM (``serve``
stops its replicas on the way out).

Every process the demo causes to exist inherits ``CHANGEOVER_DEMO_RUN=<random id>`` through
its environment (``serve`` passes its environment to replicas). ``stop`` waits for ``serve``
and then looks for any process still carrying that id (a replica of a ``serve`` that was
SIGKILLed, say) and ends it by PID: exactly the processes this run started, nothing else.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from changeover import errors, server_registry
from changeover.cli import api_client
from changeover.demo import rollout_docs

MARKER = "CHANGEOVER_DEMO_RUN"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0


class DemoServer:
    """``with DemoServer() as server: server.client.status(...)``."""

    def __init__(self) -> None:
        self.run_id = secrets.token_hex(8)
        self.dir = Path(tempfile.mkdtemp(prefix="changeover-demo-"))
        self.state_dir = self.dir / "state"
        self.config_file = self.dir / "servers.json"
        self.log_file = self.dir / "serve.log"
        self.url = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._client: api_client.Client | None = None
        self.keep_dir = False

    @property
    def client(self) -> api_client.Client:
        if self._client is None:
            raise RuntimeError("the demo server is not started")
        return self._client

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def __enter__(self) -> DemoServer:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- start ----------------------------------------------------------------------

    def start(self) -> None:
        env = dict(os.environ)
        for name in ("CHANGEOVER_SERVER", "CHANGEOVER_TOKEN", "CHANGEOVER_STATE_DIR"):
            env.pop(name, None)
        env.update({"CHANGEOVER_CONFIG": str(self.config_file), MARKER: self.run_id})
        argv = [sys.executable, "-m", "changeover.cli.main", "serve"]
        argv += ["--state-dir", str(self.state_dir), "--listen", "127.0.0.1:0"]
        argv += ["--down-on-exit"]  # a throw-away session: its routers and replicas go too
        with open(self.log_file, "wb") as log:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                close_fds=True,
            )
        self.url, token = self._wait_recorded()
        target = server_registry.Target(url=self.url, token=token, token_source=str(self.state_dir))
        self._client = api_client.Client(target)
        self._wait_healthy()

    def _wait_recorded(self) -> tuple[str, str]:
        """``serve`` writes its URL into our private servers.json once it listens."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            self._check_alive()
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                doc = json.loads(self.config_file.read_text())
                url = str(doc["current"])
                entry = doc["servers"][url]
                if int(entry["pid"]) == self.pid:
                    token = Path(entry["token_file"]).read_text().strip()
                    return url, token
            time.sleep(0.1)
        raise rollout_docs.DemoError(f"`changeover serve` did not start in {START_TIMEOUT:g}s")

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            self._check_alive()
            try:
                self.client.healthz()
                return
            except errors.TemporaryBackendError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def _check_alive(self) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            raise rollout_docs.DemoError(
                f"`changeover serve` exited with status {self._proc.returncode}:\n{self.log_tail()}"
            )

    def log_tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        return ""

    # --- stop -----------------------------------------------------------------------

    def stop(self) -> list[int]:
        """SIGTERM ``serve`` and wait; end any process of this run still alive. Returns
        the PIDs that had to be ended by the sweep (normally none). Idempotent."""
        if self._client is not None:
            self._client.close()
            self._client = None
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait(5)
        swept = sweep(self.run_id)
        if not self.keep_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
        return swept


def free_port() -> int:
    """A loopback port nobody listens on right now (the router binds it moments later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def survivors(run_id: str) -> list[psutil.Process]:
    """Processes whose environment carries this run's marker (never the caller itself)."""
    found = []
    me = os.getpid()
    for proc in psutil.process_iter():
        if proc.pid == me:
            continue
        try:
            if proc.environ().get(MARKER) == run_id and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


def sweep(run_id: str) -> list[int]:
    """End (SIGTERM, then SIGKILL after 5 s) every process of this run still alive."""
    procs = survivors(run_id)
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(procs, timeout=5)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=5)
    return [p.pid for p in procs]
