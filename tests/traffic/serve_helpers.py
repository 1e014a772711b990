"""A real ``changeover serve`` for end-to-end router tests (builtin workers, HAProxy).

``Serve`` runs it with its own state dir and config file; every process it starts carries
the test's mark (``MARK`` in its environment), so teardown finds and kills leftovers.
``serving`` is the fixture body: start, hand over, stop, and fail if anything outlived it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import router_helpers

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "examples" / "app.py"
MARK = "CHANGEOVER_E2E_MARK"


class Serve:
    def __init__(self, root: Path, *serve_args: str) -> None:
        self.root = root
        self.serve_args = serve_args  # e.g. ("--router-workers", "2")
        self.port = router_helpers.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.mark = uuid.uuid4().hex
        drop = ("CHANGEOVER_SERVER", "CHANGEOVER_TOKEN")
        self.env = {k: v for k, v in os.environ.items() if k not in drop}
        self.env |= {
            "CHANGEOVER_CONFIG": str(root / "servers.json"),
            "CHANGEOVER_STATE_DIR": str(root / "state"),
            MARK: self.mark,
            "CHANGEOVER_PASS_ENV": MARK,  # replicas get only a base environment otherwise
            "NO_COLOR": "1",
        }
        self.log = root / "serve.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = [
            *(sys.executable, "-m", "changeover.cli.main", "serve", "--listen", self.url[7:]),
            *self.serve_args,
        ]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                argv, env=self.env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        wait(lambda: self.get("/healthz") is not None, 30, "serve /healthz", self)

    def get(self, path: str) -> Any:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"serve exited {self.proc.returncode}: {self.tail()}")
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as resp:
                body = resp.read()
        except OSError:
            return None
        try:
            return json.loads(body)
        except ValueError:
            return body.decode()

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "changeover.cli.main", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    def status(self, name: str) -> dict[str, Any]:
        doc = self.get(f"/api/v1/rollouts/{name}")
        return doc if isinstance(doc, dict) else {}

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def down(self) -> subprocess.CompletedProcess[str]:
        """``changeover down``: stop the routers and replicas serve leaves running."""
        return self.cli("down")

    def kill_marked(self) -> list[int]:
        """Whatever this test started that outlived serve (found by the mark), killed."""
        killed = []
        for p in psutil.process_iter():
            try:
                if p.pid != os.getpid() and p.environ().get(MARK) == self.mark:
                    p.kill()
                    killed.append(p.pid)
            except psutil.Error:
                continue
        return killed


def wait(check: Callable[[], object], within: float, what: str, serve: Serve) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out after {within}s waiting for {what}\n{serve.tail()}")


@contextmanager
def serving(root: Path, *serve_args: str) -> Iterator[Serve]:
    server = Serve(root, *serve_args)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        server.down()  # serve leaves routers and replicas running; down stops them
        leftover = server.kill_marked()
        assert not leftover, f"processes outlived serve: {leftover}"
