"""Secrets stay with ``serve``: through a real ``changeover serve`` started on an existing,
world-readable state dir, the dir and every file in it end private (0700/0600, the
database and replica logs included), and a replica's environment holds its spec's ``env``
and the documented base set, not ``serve``'s CHANGEOVER_CONFIG or any other secret."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import psutil
import pytest
from e2e_serve import Serve, marked_processes
from e2e_specs import example_rollout, write_rollout

pytestmark = pytest.mark.slow


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_serve_makes_its_state_private_and_keeps_secrets_from_replicas(tmp_path: Path) -> None:
    server = Serve(tmp_path / "serve")
    server.root.mkdir(parents=True)
    server.state_dir.mkdir(mode=0o755)
    server.state_dir.chmod(0o755)
    old_log = server.state_dir / "logs" / "old" / "1" / "r.log"
    old_log.parent.mkdir(parents=True)
    old_log.write_text("GET /?token=abc\n")
    old_log.chmod(0o644)
    server.env["SERVE_ONLY_SECRET"] = "s3cret"
    try:
        server.start()
        doc = example_rollout("rollingUpdate", name="private", version="v1", mark=server.mark)
        doc["spec"]["replicas"] = 1
        result = server.apply(write_rollout(tmp_path / "r.yaml", doc), "--wait")
        assert result.code == 0, result
        [pid] = server.replica_pids("private")
        env = psutil.Process(pid).environ()
        assert server.mark == env["CHANGEOVER_E2E_MARK"]  # from the spec's env
        for leaked in ("CHANGEOVER_CONFIG", "CHANGEOVER_STATE_DIR", "SERVE_ONLY_SECRET"):
            assert leaked not in env
        assert env["PATH"] == os.environ["PATH"] and env["PORT"]
        assert mode(server.state_dir) == 0o700
        files = [p for p in server.state_dir.rglob("*") if p.is_file() or p.is_dir()]
        assert server.state_dir / "changeover.db" in files
        assert any(p.suffix == ".log" and "private" in p.parts for p in files)
        assert [(str(p), oct(mode(p))) for p in files if mode(p) & 0o077] == []
    finally:
        server.cleanup()
    assert not marked_processes(server.mark)
