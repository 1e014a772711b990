"""Fixtures for the end-to-end tests: ``serve`` starts a real ``changeover serve``.

Teardown stops it with SIGTERM, runs `changeover down` (serve leaves its routers and
replicas running), then kills any
process this test started that is still alive (found by the test's mark, see e2e_helpers),
so a failing test never leaves replicas behind on a shared machine.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_serve import Serve, marked_processes


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    """A started ``changeover serve`` with a tmp state dir and a tmp CHANGEOVER_CONFIG."""
    server = Serve(tmp_path / "serve")
    server.root.mkdir(parents=True)
    try:
        yield server.start()
    finally:
        leftover = server.cleanup()
        if leftover:
            print(f"killed leftover processes after SIGTERM: {leftover}", file=sys.stderr)
        alive = marked_processes(server.mark)
        assert not alive, f"processes of this test outlived it: {[p.pid for p in alive]}"
