"""The API over a service whose reads are awaited (as ``KubeService`` reads the Kubernetes
API server): every read route answers what a service answering at once would, and the live
pages share one read while it is under way instead of each asking the service."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from api_helpers import AUTH, ROLLOUT, TOKEN

from changeover import errors
from changeover.api import event_streams
from changeover.api.server import ApiServer, start_api
from changeover.testing.fake_service import FakeService

JSON = dict[str, Any]


class AwaitedService(FakeService):
    """``FakeService`` with every read a coroutine that yields to the loop first, and
    ``gate``: while it is clear, list reads wait (a slow API server)."""

    def __init__(self) -> None:
        super().__init__()
        self.list_reads = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.failing = 0  # how many status reads fail next (the API server unreachable)

    async def list_rollouts(self) -> list[JSON]:  # type: ignore[override]
        self.list_reads += 1
        await self.gate.wait()
        return [FakeService.status(self, name) for name in sorted(self.rollouts)]

    async def status(self, name: str) -> JSON:  # type: ignore[override]
        await asyncio.sleep(0)
        if self.failing > 0:
            self.failing -= 1
            raise errors.TemporaryBackendError("the API server did not answer")
        return super().status(name)

    async def events(self, name: str, *, limit: int = 50) -> list[JSON]:  # type: ignore[override]
        await asyncio.sleep(0)
        return super().events(name, limit=limit)

    async def history(self, name: str) -> list[JSON]:  # type: ignore[override]
        await asyncio.sleep(0)
        return super().history(name)

    async def spec(self, name: str) -> JSON:  # type: ignore[override]
        await asyncio.sleep(0)
        return super().spec(name)

    async def analysis(self, name: str) -> list[JSON]:  # type: ignore[override]
        await asyncio.sleep(0)
        return super().analysis(name)


@pytest.fixture
async def api() -> AsyncIterator[tuple[ApiServer, FakeService]]:
    plain = FakeService()
    await plain.apply([ROLLOUT], source="r.yaml")
    server = await start_api(AwaitedService(), "127.0.0.1", 0, TOKEN)
    yield server, plain
    await server.close()


async def test_every_read_route_awaits_the_service(api: tuple[ApiServer, FakeService]) -> None:
    server, plain = api
    async with httpx.AsyncClient(base_url=server.url, timeout=10.0) as client:
        applied = await client.post("/api/v1/apply", json={"documents": [ROLLOUT]}, headers=AUTH)
        assert applied.status_code == 200, applied.text
        one = "/api/v1/rollouts/chat"
        expected = {
            "/api/v1/rollouts": {"rollouts": [plain.status("chat")]},
            one: plain.status("chat"),
            one + "/events": {"events": plain.events("chat")},
            one + "/history": {"revisions": plain.history("chat")},
            one + "/spec": plain.spec("chat"),
            one + "/analysis": {"runs": []},
        }
        for path, doc in expected.items():
            reply = await client.get(path)
            assert reply.status_code == 200, (path, reply.text)
            got = reply.json()
            for item in [got, doc]:  # the two services were made at different times
                for status in item.get("rollouts", [item]):
                    status.pop("updatedAt", None)
                for event in item.get("events", []):
                    event.pop("time", None)
                for revision in item.get("revisions", []):
                    revision.pop("createdAt", None)
            assert got == doc, path
        assert (await client.get("/api/v1/rollouts/nope")).status_code == 404
        metrics = await client.get("/metrics")
        assert metrics.status_code == 200 and 'rollout="chat"' in metrics.text


async def test_open_pages_share_one_read_under_way() -> None:
    service = AwaitedService()
    await service.apply([ROLLOUT], source="r.yaml")
    service.gate.clear()  # the read hangs until every page waits for it
    # A long tick: however slowly this machine runs the pages, they ask within one.
    hub = event_streams.Streams(service, tick=120)
    pages = [hub.lists() for _ in range(5)]
    for page in pages:
        assert await anext(page) == b"retry: 2000\n\n"
    waiting = [asyncio.ensure_future(anext(page)) for page in pages]
    await asyncio.sleep(0.2)  # every page has had its turns to ask (none can finish yet)
    assert not any(w.done() for w in waiting) and service.list_reads == 1
    service.gate.set()
    first = await asyncio.gather(*waiting)
    assert len(set(first)) == 1 and first[0].startswith(b"event: rollouts\ndata: {")
    assert b'"name":"chat"' in first[0]
    assert service.list_reads == 1
    for page in pages:
        await page.aclose()


async def test_a_failing_read_is_said_once_not_every_tick() -> None:
    service = AwaitedService()
    await service.apply([ROLLOUT], source="r.yaml")
    page = await event_streams.Streams(service, tick=0.01).rollout("chat")
    service.failing = 20
    kinds: list[str] = []
    async for chunk in page:
        kinds.append(chunk.decode().partition("\n")[0].removeprefix("event: "))
        if kinds[-1] == "status":
            break
    await page.aclose()  # type: ignore[attr-defined]
    assert service.failing == 0
    assert kinds.count("problem") == 1, kinds
