"""Hostile input to the HTTP API: every one a 400 with a plain message naming the field (or
the body), never a 500 carrying internal text, and the server keeps answering."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from changeover.api.server import MAX_JSON_DEPTH, ApiServer, start_api
from changeover.testing.fake_service import FakeService

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ROLLOUT = {
    "apiVersion": "changeover.dev/v1alpha1",
    "kind": "Rollout",
    "metadata": {"name": "chat"},
    "spec": {"template": {"command": ["python", "-m", "v1"]}, "strategy": {"canary": {}}},
}


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    server: ApiServer = await start_api(FakeService(), "127.0.0.1", 0, TOKEN)
    async with httpx.AsyncClient(base_url=server.url, timeout=10.0) as c:
        response = await c.post("/api/v1/apply", json={"documents": [ROLLOUT]}, headers=AUTH)
        assert response.status_code == 200
        yield c
    await server.close()


def plain(response: httpx.Response) -> dict[str, Any]:
    """The error document of a 400, checked to carry nothing internal."""
    assert response.status_code == 400, response.text
    doc: dict[str, Any] = response.json()
    for leak in ("Traceback", "Error:", "recursion", 'File "', "internal"):
        assert leak not in doc["error"]
    return doc


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"documents": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"full": ' + b'{"a": ' * 50_000 + b"1" + b"}" * 50_001,
    ],
    ids=["list", "documents", "mapping"],
)
async def test_json_nested_100000_deep_is_a_400(client: httpx.AsyncClient, body: bytes) -> None:
    for path in ("/api/v1/apply", "/api/v1/rollouts/chat/promote"):
        response = await client.post(path, content=body, headers=AUTH)
        assert plain(response)["error"] == f"request body nests more than {MAX_JSON_DEPTH} deep"
    assert (await client.get("/healthz")).status_code == 200


async def test_json_that_parses_but_nests_deeper_than_any_spec_is_a_400(
    client: httpx.AsyncClient,
) -> None:
    deep: Any = {"command": ["x"]}
    for _ in range(500):  # within Python's parser, far beyond any spec
        deep = {"template": deep}
    doc = {**ROLLOUT, "spec": deep}
    response = await client.post("/api/v1/apply", json={"documents": [doc]}, headers=AUTH)
    assert plain(response)["error"] == f"request body nests more than {MAX_JSON_DEPTH} deep"


@pytest.mark.parametrize("digits", [41, 5000])
async def test_an_integer_of_5000_digits_is_a_400(client: httpx.AsyncClient, digits: int) -> None:
    body = b'{"toRevision": 1' + b"0" * (digits - 1) + b"}"
    response = await client.post("/api/v1/rollouts/chat/undo", content=body, headers=AUTH)
    assert plain(response)["error"] == (
        "request body is not valid JSON: an integer of more than 40 digits"
    )


async def test_a_body_that_is_not_utf8_is_a_400(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/apply", content=b'{"a": "\xff\xfe"}', headers=AUTH)
    assert plain(response)["error"] == "request body is not valid JSON: not UTF-8"


@pytest.mark.parametrize("limit", ["٣", "²", "1٣", "-1", "1e3", "0x10", " 5", "5 ", "١٠"], ids=repr)
async def test_a_limit_that_is_not_ascii_digits_is_a_400_naming_it(
    client: httpx.AsyncClient, limit: str
) -> None:
    response = await client.get("/api/v1/rollouts/chat/events", params={"limit": limit})
    problem = plain(response)["problems"][0]
    assert problem["path"] == "limit"
    assert problem["message"].startswith("expected a non-negative integer, got ")


@pytest.mark.parametrize("limit", ["9" * 5000, "0" * 3000 + "7", "10"])
async def test_long_limits_are_read_and_capped(client: httpx.AsyncClient, limit: str) -> None:
    response = await client.get("/api/v1/rollouts/chat/events", params={"limit": limit})
    assert response.status_code == 200, response.text
    assert isinstance(response.json()["events"], list)
