"""End to end: ``changeover serve --router-workers 2`` serves a rollout's port from two
router processes and ``/metrics`` counts the requests of both.

Given a real ``changeover serve --router-workers 2`` and examples/app.py v1 Healthy, when a
client makes 200 requests over many short connections to the service port, then two
processes (children of serve) listen on that port, every request succeeds, and the
rollout's 2xx counter in ``/metrics`` reaches exactly 200 (merged from both workers);
stopping serve stops both.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import router_helpers
import yaml

pytestmark = pytest.mark.slow
LOOPS = ("uvloop",)

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "examples" / "app.py"
MARK = "CHANGEOVER_E2E_MARK"


class Serve:
    """``changeover serve --router-workers 2`` with its own state dir and config file; every
    process it starts carries this test's mark, so teardown can find leftovers."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = router_helpers.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.mark = uuid.uuid4().hex
        drop = ("CHANGEOVER_SERVER", "CHANGEOVER_TOKEN")
        self.env = {k: v for k, v in os.environ.items() if k not in drop}
        self.env |= {
            "CHANGEOVER_CONFIG": str(root / "servers.json"),
            "CHANGEOVER_STATE_DIR": str(root / "state"),
            MARK: self.mark,
            "NO_COLOR": "1",
        }
        self.log = root / "serve.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = [
            *(sys.executable, "-m", "changeover.cli.main", "serve"),
            *("--listen", self.url[7:], "--router-workers", "2"),
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


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    server = Serve(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        leftover = server.kill_marked()
        assert not leftover, f"processes outlived serve: {leftover}"


def rollout(port: int, mark: str) -> dict[str, Any]:
    return {
        "apiVersion": "changeover.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "multi"},
        "spec": {
            "replicas": 1,
            "template": {
                "command": [sys.executable, str(APP), "--port", "$(PORT)", "--version", "v1"],
                "env": {MARK: mark},
                "readinessProbe": {"httpGet": {"path": "/healthz"}, "periodSeconds": 0.2},
            },
            "service": {"port": port},
            "strategy": {"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}},
        },
    }


def listeners_of(port: int) -> set[int]:
    return {
        c.pid
        for c in psutil.net_connections("tcp4")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port and c.pid
    }


def requests_2xx(metrics: object) -> float:
    prefix = 'changeover_requests_total{rollout="multi",revision="1",code="2xx"} '
    for line in str(metrics).splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix) :])
    return 0.0


async def test_two_router_workers_serve_one_port_with_merged_metrics(
    serve: Serve, tmp_path: Path
) -> None:
    port = router_helpers.free_port()
    spec = tmp_path / "rollout.yaml"
    spec.write_text(yaml.safe_dump(rollout(port, serve.mark)))
    applied = await asyncio.to_thread(serve.cli, "apply", "-f", str(spec))
    assert applied.returncode == 0, applied.stdout + applied.stderr

    def healthy() -> bool:
        doc = serve.get("/api/v1/rollouts/multi")
        return isinstance(doc, dict) and doc.get("phase") == "Healthy"

    await asyncio.to_thread(wait, healthy, 60, "v1 Healthy", serve)
    assert serve.proc is not None
    workers = listeners_of(port)
    children = {p.pid for p in psutil.Process(serve.proc.pid).children(recursive=True)}
    assert len(workers) == 2 and workers <= children, (workers, children)

    # 50 connections of 4 requests each: the kernel spreads connections over the workers.
    replies = await asyncio.gather(
        *(router_helpers.load(port, 4, concurrency=1) for _ in range(50))
    )
    ok = [r for rs in replies for r in rs if isinstance(r, router_helpers.Reply)]
    assert len(ok) == 200 and all(r.status == 200 for r in ok)

    def merged() -> bool:
        return requests_2xx(serve.get("/metrics")) == 200

    await asyncio.to_thread(wait, merged, 10, "200 requests in /metrics", serve)

    serve.stop()
    await asyncio.sleep(0.5)
    alive = [p for p in workers if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
    assert not alive, alive
