"""The API with namespaces (as the cluster dashboard builds it, here over test doubles):
every rollout route names its namespace and acts there alone; a namespace that is not a
DNS-1123 label is refused with a 400 before any service is asked; the local routes are
not served. (tests/kubernetes/test_kube_dashboard.py runs the same against the real
kube-apiserver.)"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from api_helpers import AUTH, ROLLOUT, TOKEN

from changeover.api import namespace_scope
from changeover.api.server import start_api
from changeover.testing.fake_service import FakeService


class TwoNamespaces:
    """``a`` and ``b``, each with a service of its own; records which were asked for."""

    start = "a"

    def __init__(self) -> None:
        self.services = {"a": FakeService(), "b": FakeService()}
        self.asked: list[str] = []

    def service(self, namespace: str) -> FakeService:
        self.asked.append(namespace)
        return self.services.setdefault(namespace, FakeService())

    everywhere = False

    async def names(self) -> tuple[list[str], bool]:
        return sorted(self.services), True

    async def all_rollouts(self) -> list[dict[str, object]]:
        raise AssertionError("not offered without everywhere")


@pytest.fixture
async def api() -> AsyncIterator[tuple[httpx.AsyncClient, TwoNamespaces]]:
    spaces = TwoNamespaces()
    server = await start_api(spaces.services["a"], "127.0.0.1", 0, TOKEN, namespaces=spaces)
    async with httpx.AsyncClient(base_url=server.url, timeout=10.0) as client:
        yield client, spaces
    await server.close()


async def test_each_route_acts_in_the_namespace_it_names(
    api: tuple[httpx.AsyncClient, TwoNamespaces],
) -> None:
    client, _ = api
    applied = await client.post(
        "/api/v1/namespaces/b/apply", json={"documents": [ROLLOUT]}, headers=AUTH
    )
    assert applied.status_code == 200, applied.text
    assert (await client.get("/api/v1/namespaces/a/rollouts")).json() == {"rollouts": []}
    listed = (await client.get("/api/v1/namespaces/b/rollouts")).json()["rollouts"]
    assert [d["name"] for d in listed] == ["chat"]
    assert (await client.get("/api/v1/namespaces/a/rollouts/chat")).status_code == 404
    paused = await client.post("/api/v1/namespaces/b/rollouts/chat/pause", headers=AUTH)
    assert paused.status_code == 200, paused.text
    chosen = (await client.get("/api/v1/namespaces")).json()
    assert chosen == {"namespaces": ["a", "b"], "start": "a", "listed": True, "all": False}
    for local in ("/api/v1/rollouts", "/api/v1/rollouts/chat", "/api/v1/rollouts/chat/stream"):
        assert (await client.get(local)).status_code == 404, local


@pytest.mark.parametrize(
    "hostile",
    ["B", "a.b", "a_b", "-a", "a-", "x" * 64, "%00", "a%0Ab", "%C3%A9t%C3%A9", "%20"],
)
async def test_a_namespace_that_is_no_dns_label_is_refused(
    api: tuple[httpx.AsyncClient, TwoNamespaces], hostile: str
) -> None:
    client, spaces = api
    for method, path in (("GET", "/rollouts/chat"), ("POST", "/rollouts/chat/abort")):
        answer = await client.request(
            method, f"/api/v1/namespaces/{hostile}{path}", headers=AUTH, json={}
        )
        assert answer.status_code == 400, answer.text
        problem = answer.json()["problems"][0]
        assert problem["path"] == "namespace" and "DNS-1123 label" in problem["message"]
    assert spaces.asked == []


def test_the_longest_label_is_accepted() -> None:
    assert namespace_scope.checked("a" * 63) == "a" * 63
    assert namespace_scope.checked("0-z") == "0-z"
