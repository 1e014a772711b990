"""Fixtures for the examples' tests: ``start_app`` runs examples/app.py (or another example
service, ``script="model_service.py"``) for a test."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from example_procs import EXAMPLES, AppProcess, StartApp, free_port


@pytest.fixture
def start_app() -> Iterator[StartApp]:
    """``start_app("--version", "v2", env={"ERROR_RATE": "1"})``: started, listening."""
    started: list[AppProcess] = []

    def start(*args: str, env: dict[str, str] | None = None, script: str = "app.py") -> AppProcess:
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, str(EXAMPLES / script), "--port", str(port), *args],
            env={**os.environ, **(env or {})},
            stderr=subprocess.PIPE,
            text=True,
        )
        app = AppProcess(proc, port)
        started.append(app)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return app
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"examples/{script} did not start") from None
                time.sleep(0.05)

    yield start
    for app in started:
        if app.proc.poll() is None:
            app.proc.kill()
        app.proc.wait(timeout=10)
        if app.proc.stderr:
            app.proc.stderr.close()
