"""Ending a process a test started: SIGTERM, a grace period, then SIGKILL, always reaped."""

from __future__ import annotations

import subprocess


def stop(proc: subprocess.Popen[bytes] | subprocess.Popen[str], grace: float = 10.0) -> None:
    """Stop ``proc`` (started by the caller, so its PID is ours) and wait for it."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
