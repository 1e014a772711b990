"""End to end: ``changeover serve --router-workers 2`` serves a rollout's port from two
router processes and ``/metrics`` counts the requests of both.

Given a real ``changeover serve --router-workers 2`` and examples/app.py v1 Healthy, when a
client makes 200 requests over many short connections to the service port, then two
processes (children of the rollout's router process, not of serve) listen on that port,
every request succeeds, and the rollout's 2xx counter in ``/metrics`` reaches exactly 200
(merged from both workers); stopping serve leaves them serving, ``changeover down`` stops
both.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import router_helpers
import yaml
from serve_helpers import APP, MARK, Serve, serving, wait

pytestmark = pytest.mark.slow
LOOPS = ("uvloop",)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    with serving(tmp_path, "--router-workers", "2") as server:
        yield server


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
    routers = [
        p
        for p in psutil.Process(serve.proc.pid).children()
        if "dataplane.host" in " ".join(p.cmdline())
    ]
    assert len(routers) == 1, routers
    children = {p.pid for p in routers[0].children(recursive=True)}
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

    def alive() -> list[int]:
        return [
            p for p in workers if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"
        ]

    serve.stop()
    await asyncio.sleep(0.5)
    assert set(alive()) == set(workers)  # still serving
    assert (await asyncio.to_thread(serve.down)).returncode == 0
    await asyncio.sleep(0.5)
    assert not alive(), alive()
