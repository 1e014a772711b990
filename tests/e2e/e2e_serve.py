"""A real ``changeover serve`` for the end-to-end tests, the real CLI against it, and the
processes a test started, found by their mark (``e2e_helpers.MARK_VAR``) so teardown kills
exactly those."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from e2e_helpers import JSON, MARK_VAR, free_port, http_get, parse_metrics, wait_until


def marked_processes(mark: str) -> list[psutil.Process]:
    """Live processes (of this user) whose environment carries ``MARK_VAR=mark``."""
    found = []
    for proc in psutil.process_iter(["pid"]):
        with contextlib.suppress(psutil.Error):
            if proc.environ().get(MARK_VAR) == mark:
                found.append(proc)
    return found


def kill_marked(mark: str) -> list[int]:
    """SIGKILL every process carrying ``mark`` (only ours: the mark is unique per test)."""
    killed = []
    for proc in marked_processes(mark):
        with contextlib.suppress(psutil.Error):
            proc.kill()
            killed.append(proc)
    psutil.wait_procs(killed, timeout=5)
    return [p.pid for p in killed]


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str
    argv: list[str]

    @property
    def json(self) -> Any:
        try:
            return json.loads(self.stdout)
        except ValueError as exc:
            raise AssertionError(
                f"not JSON from {self.argv}: {self.stdout!r}\n{self.stderr}"
            ) from exc

    def __str__(self) -> str:
        return f"$ {' '.join(self.argv)}\nexit {self.code}\n{self.stdout}\n{self.stderr}"


class Serve:
    """One ``changeover serve`` subprocess on a free loopback port with its own state dir and
    its own servers.json; ``cli(...)`` runs the CLI against it as a user would (no flags: the
    CLI finds the server and token through CHANGEOVER_CONFIG)."""

    def __init__(self, root: Path, *, mark: str | None = None) -> None:
        self.root = root
        self.mark = mark or uuid.uuid4().hex
        self.state_dir = root / "state"
        self.config = root / "config" / "servers.json"
        self.log_path = root / "serve.log"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.serve_args: list[str] = []  # more `serve` options, e.g. ["--down-on-exit"]
        self.env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("CHANGEOVER_SERVER", "CHANGEOVER_TOKEN", "CHANGEOVER_DEBUG")
        }
        self.env.update(
            {
                "CHANGEOVER_CONFIG": str(self.config),
                "CHANGEOVER_STATE_DIR": str(self.state_dir),
                MARK_VAR: self.mark,
                "CHANGEOVER_PASS_ENV": MARK_VAR,  # replicas get only a base environment
                "PYTHONUNBUFFERED": "1",
                "NO_COLOR": "1",
                "COLUMNS": "200",
            }
        )

    # --- lifecycle -----------------------------------------------------------------------

    def start(self, *, within: float = 30) -> Serve:
        argv = [
            sys.executable,
            "-m",
            "changeover.cli.main",
            "serve",
            "--listen",
            f"127.0.0.1:{self.port}",
            *self.serve_args,
        ]
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        log.close()

        def healthy() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited with {self.proc.returncode}:\n{self.log()}")
            try:
                return http_get(self.url + "/healthz", timeout=1).status == 200
            except OSError:
                return False

        wait_until(healthy, within=within, what=f"serve /healthz on {self.url}")
        return self

    def kill9(self) -> None:
        """``kill -9`` serve: no cleanup, replicas keep running (the crash under test)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self, *, within: float = 30) -> None:
        """SIGTERM (routers and replicas keep running), then SIGKILL if it hangs."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=within)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def cleanup(self) -> list[int]:
        """After ``stop`` and ``changeover down`` (serve leaves routers and replicas
        running): kill whatever this test started that is still alive: replicas in the
        platform state, router processes, and anything else carrying this test's mark.
        The PIDs killed."""
        self.stop()
        self.cli("down")
        leftover = []
        for doc in self.router_processes():
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(doc["pid"])
                if proc.environ().get(MARK_VAR) == self.mark:
                    proc.kill()
                    leftover.append(proc.pid)
        for pid in self.replica_pids():
            with contextlib.suppress(psutil.Error):
                if psutil.Process(pid).environ().get(MARK_VAR) == self.mark:
                    leftover.append(pid)
        return sorted(set(leftover) | set(kill_marked(self.mark)))

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except OSError:
            return ""

    # --- the CLI ---------------------------------------------------------------------------

    def cli(self, *args: str, timeout: float = 60, check: bool = False) -> CliResult:
        argv = [sys.executable, "-m", "changeover.cli.main", *args]
        done = subprocess.run(
            argv,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        result = CliResult(done.returncode, done.stdout, done.stderr, ["changeover", *args])
        if check and result.code != 0:
            raise AssertionError(f"CLI failed:\n{result}\n--- serve log ---\n{self.log()}")
        return result

    def cli_popen(self, *args: str) -> subprocess.Popen[str]:
        argv = [sys.executable, "-m", "changeover.cli.main", *args]
        return subprocess.Popen(
            argv,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            stdin=subprocess.DEVNULL,
        )

    def apply(self, path: Path, *extra: str) -> CliResult:
        return self.cli("apply", "-f", str(path), *extra)

    def status(self, name: str) -> JSON:
        """``changeover status NAME -o json`` through the real CLI."""
        result = self.cli("status", name, "-o", "json", check=True)
        doc: JSON = result.json
        return doc

    def history(self, name: str) -> list[JSON]:
        doc: list[JSON] = self.cli("history", name, "-o", "json", check=True).json
        return doc

    # --- cheap reads for polling (the API the CLI itself calls) ------------------------------

    def api_status(self, name: str) -> JSON:
        reply = http_get(f"{self.url}/api/v1/rollouts/{name}")
        if reply.status != 200:
            raise AssertionError(f"GET status {name}: {reply.status} {reply.body[:300]!r}")
        doc: JSON = reply.json()
        return doc

    def wait_status(
        self, name: str, predicate: Callable[[JSON], bool], *, within: float = 60, what: str = ""
    ) -> JSON:
        last: list[JSON] = []

        def probe() -> JSON | None:
            doc = self.api_status(name)
            last[:] = [doc]
            return doc if predicate(doc) else None

        try:
            return wait_until(probe, within=within, what=what or f"{name} to match", interval=0.1)
        except (AssertionError, OSError) as exc:  # OSError: serve did not answer at all
            raise AssertionError(f"{exc}\n--- serve log ---\n{self.log()}") from None

    def wait_phase(self, name: str, *phases: str, within: float = 60, **fields: Any) -> JSON:
        def ok(doc: JSON) -> bool:
            return doc.get("phase") in phases and all(doc.get(k) == v for k, v in fields.items())

        return self.wait_status(name, ok, within=within, what=f"{name} phase in {phases} {fields}")

    def api_flag(self, name: str) -> JSON:
        """The flag's status document (``GET /api/v1/flags/NAME``)."""
        doc: JSON = json.loads(http_get(f"{self.url}/api/v1/flags/{name}").body)
        return doc

    def wait_flag(self, name: str, *phases: str, within: float = 60) -> JSON:
        """The flag's status document once its phase is one of ``phases``."""

        def probe() -> JSON | None:
            doc = self.api_flag(name)
            return doc if doc.get("phase") in phases else None

        return wait_until(probe, within=within, what=f"{name} phase in {phases}", interval=0.2)

    def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        return parse_metrics(http_get(self.url + "/metrics").body.decode())

    # --- the platform's own record of replicas ------------------------------------------------

    def platform_state(self) -> JSON:
        path = self.state_dir / "platform" / "local.json"
        try:
            doc: JSON = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}
        return doc

    def router_processes(self) -> list[JSON]:
        """``process.json`` of every router process recorded in the state dir."""
        found = []
        for path in sorted((self.state_dir / "routers").glob("*/process.json")):
            with contextlib.suppress(OSError, ValueError):
                found.append(json.loads(path.read_text()))
        return found

    def router_pid(self) -> int:
        """The PID of the one router process of this state dir."""
        docs = self.router_processes()
        assert len(docs) == 1, docs
        return int(docs[0]["pid"])

    def replica_pids(self, rollout: str | None = None, revision: int | None = None) -> list[int]:
        """PIDs of (non-terminating) replicas recorded in state_dir/platform/local.json."""
        pids = []
        for name, ro in self.platform_state().get("rollouts", {}).items():
            if rollout is not None and name != rollout:
                continue
            for rev, record in ro.get("revisions", {}).items():
                if revision is not None and int(rev) != revision:
                    continue
                pids += [r["pid"] for r in record.get("replicas", []) if r.get("pid")]
        return sorted(pids)
