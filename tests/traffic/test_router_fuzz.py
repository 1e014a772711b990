"""Differential HTTP fuzzing: the builtin router against nginx (``http_fuzz``).

``make test`` runs a few hundred generated cases; ``make fuzz`` runs 10,000 or more
(``CHANGEOVER_FUZZ_CASES``). Every desync found became a fixed bug with its own
regression test (tests/traffic/test_router_smuggling.py).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import http_fuzz
import pytest
from hypothesis import HealthCheck, given, settings

pytestmark = pytest.mark.skipif(
    not os.access(http_fuzz.NGINX, os.X_OK), reason="needs nginx (make deps-nginx)"
)

CASES = int(os.environ.get("CHANGEOVER_FUZZ_CASES", "200"))
STATS = {"cases": 0, "diverged": 0}


@pytest.fixture(scope="module")
def proxies() -> Iterator[http_fuzz.Proxies]:
    workdir = tempfile.mkdtemp(prefix="co-fuzz-")
    try:
        with http_fuzz.running(Path(workdir)) as running:
            yield running
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"\nhttp fuzz: {STATS['cases']} cases, {STATS['diverged']} accepted differently")


@settings(
    max_examples=CASES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=http_fuzz.stream())
def test_the_router_never_frames_differently_from_nginx(
    proxies: http_fuzz.Proxies, data: bytes
) -> None:
    STATS["cases"] += 1
    for recorder in (proxies.behind_router, proxies.behind_nginx):
        recorder.reset()
    http_fuzz.exchange(proxies.router_port, data)
    nginx_answer = http_fuzz.exchange(proxies.nginx_port, data)
    http_fuzz.settle(proxies.behind_router, proxies.behind_nginx)
    outcome = http_fuzz.compare(
        data,
        list(proxies.behind_router.seen),
        list(proxies.behind_router.problems),
        list(proxies.behind_nginx.seen),
        nginx_answer,
    )
    STATS["diverged"] += outcome.diverged
    assert outcome.desync is None, f"{outcome.desync}\nsent: {data!r}"
