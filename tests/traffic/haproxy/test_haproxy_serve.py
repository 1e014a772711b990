"""End to end: ``changeover serve`` runs a canary on ``traffic: {haproxy: {}}`` under load.

Given a real ``changeover serve`` and examples/app.py v1 Healthy behind a managed HAProxy,
and a loopback client sending steady load to the service port, when v2 is applied with a
canary (20% → 50% → promote), then no request failed, both versions answered, HAProxy (not
changeover) was the process listening on the service port, its worker never reloaded, the
per-revision metrics in ``/metrics`` come from it; stopping serve leaves HAProxy serving,
``changeover down`` stops it.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import router_helpers
import yaml
from serve_helpers import APP, MARK, Serve, serving, wait

from changeover.loadgen import LoadGenerator

pytestmark = pytest.mark.slow


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    with serving(tmp_path) as server:
        yield server


def rollout(version: str, port: int, mark: str) -> dict[str, Any]:
    return {
        "apiVersion": "changeover.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "hap"},
        "spec": {
            "replicas": 2,
            "template": {
                "command": [sys.executable, str(APP), "--port", "$(PORT)", "--version", version],
                "env": {MARK: mark, "LATENCY_MS": "2"},
                "readinessProbe": {"httpGet": {"path": "/healthz"}, "periodSeconds": 0.2},
                "terminationGracePeriodSeconds": 5,
            },
            "service": {"port": port},
            "traffic": {"haproxy": {}},
            "strategy": {
                "canary": {
                    "maxSurge": "50%",
                    "maxUnavailable": 0,
                    "steps": [
                        {"setWeight": 20},
                        {"pause": {"duration": "2s"}},
                        {"setWeight": 50},
                        {"pause": {}},
                    ],
                }
            },
        },
    }


def listener_of(port: int) -> psutil.Process | None:
    for conn in psutil.net_connections("tcp4"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid:
            return psutil.Process(conn.pid)
    return None


async def test_canary_on_haproxy_under_load_loses_nothing(serve: Serve, tmp_path: Path) -> None:
    port = router_helpers.free_port()
    spec = tmp_path / "rollout.yaml"
    spec.write_text(yaml.safe_dump(rollout("v1", port, serve.mark)))
    applied = await asyncio.to_thread(serve.cli, "apply", "-f", str(spec))
    assert applied.returncode == 0, applied.stdout + applied.stderr

    def healthy(rev: int) -> Callable[[], bool]:
        def check() -> bool:
            doc = serve.status("hap")
            return doc.get("phase") == "Healthy" and doc.get("stableRevision") == rev

        return check

    await asyncio.to_thread(wait, healthy(1), 60, "v1 Healthy", serve)
    haproxy = listener_of(port)
    assert haproxy is not None and haproxy.name() == "haproxy", haproxy
    worker = haproxy.pid

    gen = LoadGenerator(
        f"http://127.0.0.1:{port}/",
        200,
        concurrency=16,
        max_requests=40_000,
        max_seconds=120,
    )
    await gen.start()
    try:
        await asyncio.sleep(1)
        spec.write_text(yaml.safe_dump(rollout("v2", port, serve.mark)))
        applied = await asyncio.to_thread(serve.cli, "apply", "-f", str(spec))
        assert applied.returncode == 0, applied.stdout + applied.stderr

        def at_50() -> bool:
            doc = serve.status("hap")
            return doc.get("phase") == "Paused" and doc.get("weights") == {"1": 50, "2": 50}

        await asyncio.to_thread(wait, at_50, 90, "the canary paused at 50%", serve)
        await asyncio.sleep(1)
        promoted = await asyncio.to_thread(serve.cli, "promote", "hap")
        assert promoted.returncode == 0, promoted.stdout + promoted.stderr
        await asyncio.to_thread(wait, healthy(2), 90, "v2 Healthy", serve)
        await asyncio.sleep(1.5)  # v2 alone, while v1's replicas drain away
    finally:
        report = await gen.stop()

    print(f"load: {report.total} requests, {report.rate_per_s:.0f}/s, {report.by_revision}")
    assert report.failures == 0, (report.failure_examples, report.status_counts)
    assert report.rate_per_s >= 150, report.rate_per_s
    assert report.by_revision.get("1", 0) > 100 and report.by_revision.get("2", 0) > 100
    assert report.timeline[-1].keys() == {"2"}, report.timeline[-3:]
    assert listener_of(port) is not None and listener_of(port).pid == worker  # type: ignore[union-attr]
    status = serve.status("hap")
    assert status["weights"] == {"2": 100}

    metrics = await asyncio.to_thread(serve.get, "/metrics")
    assert 'changeover_requests_total{rollout="hap",revision="2",code="2xx"}' in metrics

    def gone() -> bool:
        return not psutil.pid_exists(worker) or psutil.Process(worker).status() == "zombie"

    serve.stop()
    await asyncio.sleep(0.5)
    assert not gone() and listener_of(port) is not None  # the data plane outlives serve
    assert (await asyncio.to_thread(serve.down)).returncode == 0
    await asyncio.sleep(0.5)
    assert gone()
