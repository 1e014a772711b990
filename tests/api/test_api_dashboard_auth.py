"""The dashboard's side of the API against an in-memory service: the session that stands
in for the token in a browser (cookie flags, CSRF, other origins), the event streams, the
rollout-level metrics and the page's own answers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from api_helpers import AUTH, ROLLOUT, TOKEN

from changeover.api import dashboard, event_streams
from changeover.api.server import ApiServer, build_router, start_api
from changeover.http_server import http as api_http
from changeover.testing.fake_service import FakeService


@pytest.fixture
async def api() -> AsyncIterator[ApiServer]:
    server = await start_api(FakeService(), "127.0.0.1", 0, TOKEN)
    yield server
    await server.close()


@pytest.fixture
async def client(api: ApiServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api.url, timeout=5.0) as c:
        await c.post("/api/v1/apply", json={"documents": [ROLLOUT]}, headers=AUTH)
        yield c


async def sign_in(client: httpx.AsyncClient, api: ApiServer) -> str:
    reply = await client.post("/api/v1/session", json={"token": TOKEN}, headers={"Origin": api.url})
    assert reply.status_code == 200, reply.text
    csrf: str = reply.json()["csrf"]
    return csrf


async def test_session_cookie_is_httponly_and_same_site_strict(
    client: httpx.AsyncClient, api: ApiServer
) -> None:
    wrong = await client.post("/api/v1/session", json={"token": "guess"})
    assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
    reply = await client.post("/api/v1/session", json={"token": TOKEN})
    cookie = reply.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert (await client.get("/api/v1/session")).json()["authenticated"] is True


async def test_an_action_needs_the_csrf_header_as_well_as_the_cookie(
    client: httpx.AsyncClient, api: ApiServer
) -> None:
    csrf = await sign_in(client, api)
    promote = "/api/v1/rollouts/chat/pause"
    assert (await client.post(promote)).status_code == 401
    wrong = await client.post(promote, headers={"X-CSRF-Token": "not-it"})
    assert wrong.status_code == 401
    ok = await client.post(promote, headers={"X-CSRF-Token": csrf, "Origin": api.url})
    assert ok.status_code == 200, ok.text


@pytest.mark.parametrize(
    "headers",
    [{"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"}],
    ids=["origin", "fetch-site"],
)
async def test_no_action_from_another_origin_even_with_cookie_and_csrf(
    client: httpx.AsyncClient, api: ApiServer, headers: dict[str, str]
) -> None:
    csrf = await sign_in(client, api)
    reply = await client.post(
        "/api/v1/rollouts/chat/abort", headers={"X-CSRF-Token": csrf, **headers}
    )
    assert reply.status_code == 401
    login = await client.post("/api/v1/session", json={"token": TOKEN}, headers=headers)
    assert login.status_code == 403


async def test_signing_out_ends_the_session(client: httpx.AsyncClient, api: ApiServer) -> None:
    csrf = await sign_in(client, api)
    assert (await client.delete("/api/v1/session")).json()["authenticated"] is False
    reply = await client.post("/api/v1/rollouts/chat/pause", headers={"X-CSRF-Token": csrf})
    assert reply.status_code == 401


async def test_session_token_field_is_named_when_wrong(client: httpx.AsyncClient) -> None:
    reply = await client.post("/api/v1/session", json={"token": 7})
    assert reply.status_code == 400
    assert reply.json()["problems"][0]["path"] == "token"


async def test_list_stream_sends_the_rollouts_then_each_change(
    client: httpx.AsyncClient,
) -> None:
    seen: list[str] = []
    async with client.stream("GET", "/api/v1/stream") as reply:
        assert reply.headers["content-type"].startswith("text/event-stream")
        async for line in reply.aiter_lines():
            seen.append(line)
            if line.startswith("data:") and '"name":"chat"' in line:
                if len([s for s in seen if s.startswith("data:")]) == 1:
                    await client.post("/api/v1/rollouts/chat/pause", headers=AUTH)
                elif '"phase":"Paused"' in line:
                    break
    assert "event: rollouts" in seen


async def test_rollout_stream_of_an_unknown_rollout_is_a_404(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/v1/rollouts/nope/stream")).status_code == 404


async def test_page_forbids_framing_and_foreign_scripts(client: httpx.AsyncClient) -> None:
    if not dashboard.built():
        pytest.fail(
            f"the dashboard bundle is missing from {dashboard.ASSETS}: run `make dashboard`"
        )
    page = await client.get("/dashboard/")
    assert page.status_code == 200 and "<title>changeover</title>" in page.text
    policy = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy and "script-src 'self'" in policy
    assert (await client.get("/dashboard/main.js")).status_code == 200
    for bad in ("/dashboard/..%2Fserver.py", "/dashboard/.hidden", "/dashboard/x.py"):
        assert (await client.get(bad)).status_code == 404, bad


async def test_metrics_carry_rollout_level_series(client: httpx.AsyncClient) -> None:
    text = (await client.get("/metrics")).text
    assert 'changeover_rollout_info{rollout="chat",strategy="canary"} 1' in text
    phases: dict[str, Any] = {
        line.split('phase="')[1].split('"')[0]: line.rsplit(" ", 1)[1]
        for line in text.splitlines()
        if line.startswith('changeover_rollout_phase{rollout="chat"')
    }
    assert sorted(v for v in phases.values()) == ["0"] * (len(phases) - 1) + ["1"]


async def test_beyond_loopback_reads_need_the_session_but_signing_in_does_not() -> None:
    """Off loopback every read needs the token; the page and the session endpoints must
    still answer, or a browser could never sign in."""
    routes = build_router(FakeService(), token=TOKEN, loopback=False)

    async def call(method: str, path: str, body: bytes = b"", **headers: str) -> Any:
        request = api_http.Request(method=method, path=path, query={}, headers=headers, body=body)
        return await routes.dispatch(request)

    assert (await call("GET", "/api/v1/rollouts")).status == 401
    assert (await call("GET", "/dashboard/")).status in (200, 503)
    assert (await call("GET", "/api/v1/session")).status == 200
    login = await call("POST", "/api/v1/session", json.dumps({"token": TOKEN}).encode())
    assert login.status == 200
    cookie = login.headers["Set-Cookie"].split(";")[0]
    assert (await call("GET", "/api/v1/rollouts", cookie=cookie)).status == 200
    assert (await call("POST", "/api/v1/session", b'{"token": "guess"}')).status == 401


async def test_pages_streaming_at_once_share_one_read_per_tick() -> None:
    service = FakeService()
    await service.apply([ROLLOUT], source="r.yaml")
    reads: list[str] = []
    original = service.list_rollouts

    def counted() -> list[dict[str, Any]]:
        reads.append("list")
        return original()

    service.list_rollouts = counted  # type: ignore[method-assign]
    hub = event_streams.Streams(service)
    pages = [hub.lists() for _ in range(5)]
    for page in pages:
        assert await anext(page) == b"retry: 2000\n\n"
    first = [await anext(page) for page in pages]
    assert len(set(first)) == 1 and first[0].startswith(b"event: rollouts\n")
    assert reads == ["list"]
    for page in pages:
        await page.aclose()


async def test_the_api_address_in_a_browser_leads_to_the_dashboard(
    client: httpx.AsyncClient,
) -> None:
    reply = await client.get("/")
    assert reply.status_code == 308 and reply.headers["location"] == "/dashboard/"


async def test_rollout_stream_sends_the_newest_runs_only() -> None:
    service = FakeService()
    await service.apply([ROLLOUT], source="r.yaml")
    runs = [{"id": f"run-{i}", "metrics": []} for i in range(30)]
    service.analysis = lambda name: runs  # type: ignore[method-assign]
    page = await event_streams.Streams(service).rollout("chat")
    sent: dict[str, Any] = {}
    async for chunk in page:
        kind, _, data = chunk.decode().partition("\ndata: ")
        sent[kind.removeprefix("event: ")] = data
        if "analysis" in sent:
            break
    await page.aclose()  # type: ignore[attr-defined]
    shown = json.loads(sent["analysis"])["runs"]
    assert [r["id"] for r in shown] == [f"run-{i}" for i in range(10, 30)]
