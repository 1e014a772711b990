"""Faults of the state store (issue 11 §3), with a real serve, router process and replicas.

Given a rollout serving under steady load, when the state database is locked by another
process, truncated, or its disk is full, then the CLI says what is wrong in a line (no
traceback), nothing stored is lost, every request to the rollout's port still succeeds
(the routers and replicas do not need the database), and serve recovers once the fault is
gone.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from e2e_load import BackgroundLoad, describe
from e2e_serve import CliResult, Serve, marked_processes
from e2e_specs import example_rollout, with_version, write_rollout

pytestmark = pytest.mark.slow

# Holds an exclusive lock on the database for LOCK_SECONDS once it has printed "locked".
_LOCKER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=10)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("COMMIT")
"""


def _paused_canary(serve: Serve, tmp_path: Path, name: str) -> tuple[Path, str]:
    """A canary at 50% between v1 and v2, paused; its spec file and endpoint."""
    v1 = example_rollout(
        "canary",
        name=name,
        version="v1",
        mark=serve.mark,
        replicas=1,
        strategy_patch={"steps": [{"setWeight": 50}, {"pause": {}}]},
    )
    spec = write_rollout(tmp_path / f"{name}.yaml", v1)
    assert serve.apply(spec).code == 0, serve.log()
    serve.wait_phase(name, "Healthy", stableRevision=1)
    write_rollout(spec, with_version(v1, "v2"))
    assert serve.apply(spec).code == 0
    status = serve.wait_status(name, lambda d: d["phase"] == "Paused")
    return spec, str(status["endpoint"])


def _assert_clean_error(result: CliResult, code: int, *words: str) -> None:
    text = str(result)
    assert result.code == code, text
    assert "Traceback" not in text, text
    for word in words:
        assert word in text, f"{word!r} not in:\n{text}"


def test_database_locked_by_another_process(serve: Serve, tmp_path: Path) -> None:
    _, endpoint = _paused_canary(serve, tmp_path, "locked")
    db = serve.state_dir / "changeover.db"
    with BackgroundLoad(endpoint, rate=150) as load:
        load.wait_for("2", 30)
        locker = subprocess.Popen(
            [sys.executable, "-c", _LOCKER, str(db), "3"], stdout=subprocess.PIPE, text=True
        )
        try:
            assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
            # Writes wait for the lock (bounded by the store's busy timeout), then go through.
            promoted = serve.cli("promote", "locked")
        finally:
            locker.wait(10)
        assert promoted.code == 0, f"{promoted}\n{serve.log()}"
        serve.wait_phase("locked", "Healthy", stableRevision=2)
        load.wait_for("2", 50)
        report = load.stop()
    assert report.failures == 0, describe(report)
    assert [h["revision"] for h in serve.history("locked")][-2:] == [1, 2]
    assert "Traceback" not in serve.log(), serve.log()


def test_truncated_database_refuses_to_start_and_traffic_goes_on(
    serve: Serve, tmp_path: Path
) -> None:
    _, endpoint = _paused_canary(serve, tmp_path, "trunc")
    db = serve.state_dir / "changeover.db"
    with BackgroundLoad(endpoint, rate=150) as load:
        load.wait_for("2", 30)
        serve.stop()
        size = db.stat().st_size
        os.truncate(db, size // 2)
        started = subprocess.run(
            [sys.executable, "-m", "changeover.cli.main", "serve", "--listen", "127.0.0.1:0"],
            env=serve.env,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        load.wait_for("2", 50)
        load.wait_for("1", 50)
        report = load.stop()
    result = CliResult(started.returncode, started.stdout, started.stderr, ["serve"])
    _assert_clean_error(result, 1, str(db), "damaged", "backup")
    assert report.failures == 0, describe(report)


@contextlib.contextmanager
def _tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True)
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("a full disk needs a small tmpfs: mounting one needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def _fill(directory: Path) -> Path:
    """Write a file until the disk is full; the file."""
    filler = directory / "filler"
    chunk = b"\0" * 4096
    with filler.open("wb", buffering=0) as out:
        try:
            while True:
                out.write(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    return filler


def test_disk_full_apply_fails_clearly_and_recovers(tmp_path: Path) -> None:
    with _tmpfs(tmp_path / "disk", "4m") as disk:
        serve = Serve(tmp_path / "serve", mark=uuid.uuid4().hex)
        serve.root.mkdir(parents=True)
        serve.state_dir = disk / "state"
        serve.env["CHANGEOVER_STATE_DIR"] = str(serve.state_dir)
        try:
            serve.start()
            _disk_full_scenario(serve, tmp_path, disk)
        finally:
            serve.cleanup()
            assert not marked_processes(serve.mark)


def _disk_full_scenario(serve: Serve, tmp_path: Path, disk: Path) -> None:
    spec, endpoint = _paused_canary(serve, tmp_path, "full")
    assert serve.cli("promote", "full").code == 0
    serve.wait_phase("full", "Healthy", stableRevision=2)
    v3 = with_version(yaml.safe_load(spec.read_text()), "v3")
    with BackgroundLoad(endpoint, rate=150) as load:
        load.wait_for("2", 30)
        filler = _fill(disk)
        write_rollout(spec, v3)
        refused = serve.apply(spec)
        _assert_clean_error(refused, 1, "no space")
        status = serve.api_status("full")
        assert (status["phase"], status["stableRevision"]) == ("Healthy", 2), status
        load.wait_for("2", 50)
        filler.unlink()
        applied = serve.apply(spec)
        assert applied.code == 0, f"{applied}\n{serve.log()}"
        serve.wait_status("full", lambda d: d["phase"] == "Paused")
        load.wait_for("3", 30)
        report = load.stop()
    assert report.failures == 0, describe(report)
    assert [h["revision"] for h in serve.history("full")][-2:] == [2, 3]
    assert "Traceback" not in serve.log(), serve.log()
