"""The operator's /healthz, /readyz and /metrics over real HTTP: what probes and a scrape
see, and what a hostile Rollout status or client cannot do to them."""

from __future__ import annotations

import asyncio
from typing import Any

from changeover.operator.health_server import HealthServer, OperatorView


def view(*, leading: bool = True, ready: bool = True, rollouts: Any = ()) -> OperatorView:
    return OperatorView(
        leading=lambda: leading,
        ready=lambda: ready,
        counters=lambda: {"reconciles": 7, "reconcile_errors": 1},
        queue_depth=lambda: 3,
        rollouts=lambda: list(rollouts),
    )


async def request(server: HealthServer, raw: bytes) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(raw)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body.decode()


async def serve(v: OperatorView) -> HealthServer:
    server = HealthServer(v, "127.0.0.1", 0)
    await server.start()
    return server


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()


async def test_probes_follow_leadership_and_sync() -> None:
    syncing = await serve(view(leading=True, ready=False))
    standby = await serve(view(leading=False, ready=False))
    try:
        assert (await request(syncing, get("/healthz")))[0] == 200
        assert (await request(syncing, get("/readyz")))[0] == 503
        assert await request(standby, get("/readyz")) == (200, "ready: standby\n")
    finally:
        await syncing.close()
        await standby.close()


async def test_metrics_per_rollout_and_hostile_status() -> None:
    rollouts = [
        {
            "metadata": {"namespace": "apps", "name": "web"},
            "status": {
                "phase": "Paused",
                "currentStepIndex": 1,
                "traffic": {"weights": {"1": 75, "2": 25}},
            },
        },
        {  # written by anyone allowed to patch status: nothing here may break the page
            "metadata": {"namespace": "apps", "name": 'evil"}\nx 1'},
            "status": {"phase": ["x"], "currentStepIndex": "2", "traffic": {"weights": "all"}},
        },
    ]
    server = await serve(view(rollouts=rollouts))
    try:
        code, text = await request(server, get("/metrics"))
    finally:
        await server.close()
    assert code == 200
    assert 'changeover_rollout_phase{namespace="apps",rollout="web",phase="Paused"} 1' in text
    web = 'namespace="apps",rollout="web"'
    assert f'changeover_rollout_weight_percent{{{web},revision="2"}} 25' in text
    assert 'changeover_rollout_step{namespace="apps",rollout="web"} 1' in text
    assert "changeover_operator_reconciles_total 7" in text
    assert "changeover_operator_queue_depth 3" in text
    # The hostile name is escaped onto one line; its non-numeric fields give no series.
    assert "\nx 1" not in text and 'rollout="evil\\"}\\nx 1"' in text
    assert text.count("changeover_rollout_step{") == 1


async def test_standby_exports_no_rollouts() -> None:
    ro = [{"metadata": {"namespace": "a", "name": "w"}, "status": {"phase": "Healthy"}}]
    server = await serve(view(leading=False, rollouts=ro))
    try:
        _, text = await request(server, get("/metrics"))
    finally:
        await server.close()
    assert "changeover_operator_leader 0" in text and 'rollout="w"' not in text


async def test_bad_requests_are_refused() -> None:
    server = await serve(view())
    try:
        assert (await request(server, b"POST /metrics HTTP/1.1\r\n\r\n"))[0] == 405
        assert (await request(server, get("/nope")))[0] == 404
        assert (await request(server, b"GARBAGE\r\n\r\n"))[0] == 400
        huge = b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n"
        assert (await request(server, huge))[0] == 400
        code, body = await request(server, b"HEAD /healthz HTTP/1.1\r\n\r\n")
        assert code == 200 and body == ""
    finally:
        await server.close()
