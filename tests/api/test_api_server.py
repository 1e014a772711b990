"""The HTTP API against an in-memory service: routes, auth, error mapping, limits, wire."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from changeover import errors
from changeover.api.server import ApiServer, start_api
from changeover.http_server import http as api_http
from changeover.testing.fake_service import FakeService

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def rollout(name: str = "chat", command: str = "v1", **annotations: str) -> dict[str, Any]:
    return {
        "apiVersion": "changeover.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {
            "template": {"command": ["python", "-m", command]},
            "strategy": {"canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}},
        },
    }


@pytest.fixture
def service() -> FakeService:
    return FakeService()


@pytest.fixture
async def api(service: FakeService) -> AsyncIterator[ApiServer]:
    server = await start_api(service, "127.0.0.1", 0, TOKEN)
    yield server
    await server.close()


@pytest.fixture
async def client(api: ApiServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api.url, timeout=5.0) as c:
        yield c


async def apply(client: httpx.AsyncClient, *docs: dict[str, Any]) -> httpx.Response:
    body = {"documents": list(docs), "source": "r.yaml"}
    return await client.post("/api/v1/apply", json=body, headers=AUTH)


# --- reads ---------------------------------------------------------------------------------


async def test_healthz_and_metrics_are_open(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"ok": True}
    await apply(client, rollout())
    metrics = await client.get("/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert 'rollout="chat"' in metrics.text


async def test_apply_then_read_status_list_events_history_spec(client: httpx.AsyncClient) -> None:
    response = await apply(client, rollout())
    assert response.status_code == 200
    assert response.json() == {"results": [{"name": "chat", "revision": 1, "action": "created"}]}

    status = (await client.get("/api/v1/rollouts/chat")).json()
    for key in ("name", "phase", "message", "strategy", "stableRevision", "canaryRevision"):
        assert key in status
    assert status["strategy"] == "canary"

    listed = (await client.get("/api/v1/rollouts")).json()
    assert [r["name"] for r in listed["rollouts"]] == ["chat"]

    events = (await client.get("/api/v1/rollouts/chat/events?limit=1")).json()["events"]
    assert len(events) == 1
    assert events[0]["reason"] == "RolloutCompleted"

    history = (await client.get("/api/v1/rollouts/chat/history")).json()["revisions"]
    assert [h["revision"] for h in history] == [1]

    spec = (await client.get("/api/v1/rollouts/chat/spec")).json()
    assert spec["metadata"]["name"] == "chat"


async def test_unknown_rollout_is_404_with_a_message(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/rollouts/ghost")
    assert response.status_code == 404
    assert response.json() == {"error": "rollout 'ghost' not found", "type": "NotFound"}


async def test_unknown_path_404_and_wrong_method_405(client: httpx.AsyncClient) -> None:
    assert (await client.get("/nope")).status_code == 404
    response = await client.put("/api/v1/rollouts/chat", headers=AUTH)
    assert response.status_code == 405
    assert set(response.headers["allow"].split(", ")) == {"GET", "DELETE"}


async def test_bad_limit_is_400(client: httpx.AsyncClient) -> None:
    await apply(client, rollout())
    response = await client.get("/api/v1/rollouts/chat/events?limit=lots")
    assert response.status_code == 400
    assert response.json()["problems"][0]["path"] == "limit"


# --- auth ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}, {"Authorization": "Basic x"}],
)
async def test_mutations_need_the_token(
    client: httpx.AsyncClient, service: FakeService, headers: dict[str, str]
) -> None:
    response = await client.post(
        "/api/v1/apply", json={"documents": [rollout()], "source": "r"}, headers=headers
    )
    assert response.status_code == 401
    assert "token" in response.json()["error"]
    assert service.rollouts == {}
    assert (await client.delete("/api/v1/rollouts/chat", headers=headers)).status_code == 401


async def test_reads_need_the_token_off_loopback(service: FakeService) -> None:
    # Bound to every address: reads are guarded too (but probed here over loopback).
    server = await start_api(service, "0.0.0.0", 0, TOKEN)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as c:
            assert (await c.get("/api/v1/rollouts")).status_code == 401
            assert (await c.get("/api/v1/rollouts", headers=AUTH)).status_code == 200
    finally:
        await server.close()


async def test_loopback_refuses_foreign_host_headers(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/rollouts", headers={"Host": "evil.example:7070"})
    assert response.status_code == 421
    ok = await client.get("/api/v1/rollouts", headers={"Host": "localhost:7070"})
    assert ok.status_code == 200


# --- commands and error mapping ------------------------------------------------------------


async def test_commands_reach_the_service_with_their_arguments(
    client: httpx.AsyncClient, service: FakeService
) -> None:
    await apply(client, rollout())
    await apply(client, rollout(command="v2"))
    base = "/api/v1/rollouts/chat"
    assert (await client.post(f"{base}/pause", headers=AUTH)).json()["phase"] == "Paused"
    assert (await client.post(f"{base}/resume", headers=AUTH)).status_code == 200
    promoted = await client.post(f"{base}/promote", json={"full": True}, headers=AUTH)
    assert promoted.status_code == 200
    undo = await client.post(f"{base}/undo", json={"toRevision": 1}, headers=AUTH)
    assert undo.status_code == 200
    assert (await client.post(f"{base}/abort", headers=AUTH)).json()["phase"] == "Aborted"
    assert (await client.post(f"{base}/retry", headers=AUTH)).status_code == 200
    deleted = await client.delete(base, headers=AUTH)
    assert deleted.json() == {"deleted": "chat"}
    assert [(c[0], c[2]) for c in service.calls if c[0] != "apply"] == [
        ("pause", {}),
        ("resume", {}),
        ("promote", {"full": True}),
        ("undo", {"toRevision": 1}),
        ("abort", {}),
        ("retry", {}),
        ("delete", {}),
    ]


async def test_spec_error_is_400_with_every_problem(client: httpx.AsyncClient) -> None:
    bad = {"kind": "Deployment", "metadata": {}}
    response = await apply(client, bad)
    assert response.status_code == 400
    doc = response.json()
    assert doc["type"] == "SpecError"
    assert doc["problems"] == [
        {"file": "r.yaml", "path": "[0].kind", "message": "expected Rollout"},
        {"file": "r.yaml", "path": "[0].metadata.name", "message": "required"},
    ]


async def test_state_error_is_409(client: httpx.AsyncClient) -> None:
    await apply(client, rollout())
    response = await client.post("/api/v1/rollouts/chat/resume", headers=AUTH)
    assert response.status_code == 409
    assert response.json()["error"] == "chat is not paused"


@pytest.mark.parametrize(
    ("body", "path"),
    [
        (b"{not json", ""),
        (b"[1, 2]", ""),
        (b'{"full": "yes"}', "full"),
    ],
)
async def test_bad_bodies_are_400(client: httpx.AsyncClient, body: bytes, path: str) -> None:
    await apply(client, rollout())
    response = await client.post("/api/v1/rollouts/chat/promote", content=body, headers=AUTH)
    assert response.status_code == 400
    assert response.json()["problems"][0]["path"] == path


async def test_undo_revision_must_be_an_integer(client: httpx.AsyncClient) -> None:
    await apply(client, rollout())
    body = {"toRevision": True}
    response = await client.post("/api/v1/rollouts/chat/undo", json=body, headers=AUTH)
    assert response.status_code == 400


async def test_apply_needs_a_documents_list(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/apply", json={"source": "x"}, headers=AUTH)
    assert response.status_code == 400
    response = await client.post("/api/v1/apply", json={"documents": [1]}, headers=AUTH)
    assert response.json()["problems"][0]["path"] == "documents[0]"


async def test_backend_error_is_500_with_its_message(
    client: httpx.AsyncClient, service: FakeService, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> list[dict[str, Any]]:
        raise errors.TemporaryBackendError("platform unreachable")

    monkeypatch.setattr(service, "list_rollouts", broken)
    response = await client.get("/api/v1/rollouts")
    assert response.status_code == 500
    assert response.json() == {"error": "platform unreachable", "type": "TemporaryBackendError"}


async def test_unexpected_exception_is_500_without_traceback(
    client: httpx.AsyncClient, service: FakeService, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> list[dict[str, Any]]:
        raise KeyError("boom")

    monkeypatch.setattr(service, "list_rollouts", broken)
    response = await client.get("/api/v1/rollouts")
    assert response.status_code == 500
    assert response.json() == {
        "error": "internal error; the server's log has the details",
        "type": "InternalError",
    }
    assert "boom" not in response.text and "KeyError" not in response.text
    # The connection and server survive.
    assert (await client.get("/healthz")).status_code == 200


# --- the wire ------------------------------------------------------------------------------


async def test_oversized_body_is_413(client: httpx.AsyncClient) -> None:
    big = b"x" * (api_http.MAX_BODY_BYTES + 1)
    response = await client.post("/api/v1/apply", content=big, headers=AUTH)
    assert response.status_code == 413


async def test_oversized_chunked_body_is_413(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(api_http.MAX_BODY_BYTES // 65536 + 2):
            yield b"x" * 65536

    try:
        response = await client.post("/api/v1/apply", content=chunks(), headers=AUTH)
    except httpx.HTTPError:
        return  # the server may hang up before the client finishes sending: also fine
    assert response.status_code == 413


async def raw(api: ApiServer, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
    writer.write(data)
    await writer.drain()
    out = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return out


async def test_pipelined_requests_are_answered_in_order(api: ApiServer) -> None:
    out = await raw(
        api,
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        b"GET /nope HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    )
    statuses = re.findall(rb"HTTP/1\.1 \d+ [A-Za-z ]+", out)
    assert statuses == [b"HTTP/1.1 200 OK", b"HTTP/1.1 404 Not Found", b"HTTP/1.1 200 OK"]


async def test_garbage_is_400_and_hangs_up(api: ApiServer) -> None:
    out = await raw(api, b"\x00\x01 not http at all\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 Bad Request")
    assert b"Traceback" not in out


async def test_huge_headers_are_431(api: ApiServer) -> None:
    header = b"X-Big: " + b"a" * (api_http.MAX_HEADER_BYTES + 10) + b"\r\n"
    out = await raw(api, b"GET /healthz HTTP/1.1\r\n" + header + b"\r\n")
    assert out.startswith(b"HTTP/1.1 431")


async def test_close_hangs_up_on_idle_keep_alive_clients(service: FakeService) -> None:
    server = await start_api(service, "127.0.0.1", 0, TOKEN)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    await reader.readuntil(b"\r\n\r\n")
    await asyncio.wait_for(server.close(), 5)
    writer.close()


async def test_binding_a_busy_port_is_a_backend_error(api: ApiServer, service: FakeService) -> None:
    with pytest.raises(errors.BackendError, match="cannot listen"):
        await start_api(service, "127.0.0.1", api.port, TOKEN)


def test_serves_on_uvloop_too(service: FakeService) -> None:
    """``changeover serve`` runs on uvloop, whose transports are not asyncio's classes."""
    uvloop = pytest.importorskip("uvloop")

    async def main() -> bytes:
        server = await start_api(service, "127.0.0.1", 0, TOKEN)
        try:
            return await raw(server, b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n")
        finally:
            await server.close()

    out: bytes = uvloop.run(main())
    assert out.startswith(b"HTTP/1.1 200 OK")
