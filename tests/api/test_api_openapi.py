"""The OpenAPI document served at /api/openapi.json: valid OpenAPI 3.1, generated from the
route table (every API route in it, each answer's schema the model's), and the API fuzzed
from it with schemathesis: no generated request gets a 500, and every 200 answer matches
its documented schema."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from api_helpers import AUTH, ROLLOUT, TOKEN
from hypothesis import HealthCheck, given, settings
from openapi_spec_validator import validate

from changeover.api.server import build_router, start_api
from changeover.testing.fake_service import FakeService


@pytest.fixture(scope="module")
def api_url() -> Iterator[str]:
    """A real API server (on a fake service) on a loop of its own thread, for sync clients."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: dict[str, Any] = {}

    async def main() -> None:
        holder["api"] = await start_api(FakeService(), "127.0.0.1", 0, TOKEN)
        started.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(main(), loop)
    assert started.wait(10)
    url: str = holder["api"].url
    httpx.post(f"{url}/api/v1/apply", json={"documents": [ROLLOUT]}, headers=AUTH)
    try:
        yield url
    finally:
        asyncio.run_coroutine_threadsafe(holder["api"].close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def test_document_is_valid_openapi_and_lists_every_route(api_url: str) -> None:
    doc = httpx.get(f"{api_url}/api/openapi.json").json()
    validate(doc)
    routes = build_router(FakeService(), token=TOKEN, loopback=True).routes
    documented = {(r.template, r.method.lower()) for r in routes if r.documented}
    listed = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    assert listed == documented
    promote = doc["paths"]["/api/v1/rollouts/{name}/promote"]["post"]
    body = promote["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert doc["components"]["schemas"][body.rsplit("/", 1)[1]]["properties"]["full"] == {
        "default": False,
        "description": "Skip every remaining step and analysis.",
        "title": "Full",
        "type": "boolean",
    }
    assert promote["security"] == [{"bearer": []}, {"session": [], "csrf": []}]


def test_a_null_metadata_is_a_400_naming_the_field(api_url: str) -> None:
    """Found by the fuzzer below in CI: ``metadata: null`` was a 500."""
    doc = {"apiVersion": "changeover.dev/v1alpha1", "kind": "Rollout", "metadata": None}
    r = httpx.post(f"{api_url}/api/v1/apply", json={"documents": [doc]}, headers=AUTH)
    assert r.status_code == 400 and "metadata.name" in r.text, r.text


def test_fuzzed_requests_never_get_a_500(api_url: str) -> None:
    doc = httpx.get(f"{api_url}/api/openapi.json").json()
    # The event streams never end by design: not something a fuzzer can wait for.
    schema = schemathesis.openapi.from_dict(doc).exclude(path_regex="stream$")
    tried = 0
    for found in schema.get_all_operations():
        operation = found.ok()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=15,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def one(case: Any) -> None:
            response = case.call(base_url=api_url, headers=AUTH, timeout=10)
            assert response.status_code < 500, (case.method, case.path, response.text[:300])
            if response.status_code == 200:
                case.operation.validate_response(response)

        one()
        tried += 1
    assert tried >= 18
