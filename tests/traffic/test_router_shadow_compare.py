"""Shadow answers compared with the primary's through a real router and real upstreams."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from router_helpers import RouterFactory, free_port

from changeover.endpoints import Endpoint
from changeover.spec import models
from changeover.traffic.builtin import BuiltinRouter, metrics_text
from changeover.traffic.comparison import stats as stats_mod

# path → (content type, pieces sent one by one, chunked) for one side
Answers = Callable[[str], tuple[int, str, list[bytes]]]


class App:
    """A tiny HTTP/1.1 server whose answers the test sets per path."""

    def __init__(self, answers: Answers) -> None:
        self.answers = answers
        self.port = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> App:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                if length:
                    await reader.readexactly(length)
                path = head.split(b" ")[1].decode()
                status, ctype, pieces = self.answers(path)
                if len(pieces) == 1:
                    writer.write(
                        b"HTTP/1.1 %d X\r\ncontent-type: %s\r\ncontent-length: %d\r\n\r\n%s"
                        % (status, ctype.encode(), len(pieces[0]), pieces[0])
                    )
                else:
                    writer.write(
                        b"HTTP/1.1 %d X\r\ncontent-type: %s\r\ntransfer-encoding: chunked\r\n\r\n"
                        % (status, ctype.encode())
                    )
                    for piece in pieces:
                        writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                        await writer.drain()
                        await asyncio.sleep(0.002)
                    writer.write(b"0\r\n\r\n")
                await writer.drain()
        writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()


@pytest.fixture
async def apps() -> AsyncIterator[Callable[[Answers], asyncio.Future[App]]]:
    started: list[App] = []

    async def make(answers: Answers) -> App:
        app = await App(answers).start()
        started.append(app)
        return app

    yield make  # type: ignore[misc]
    for app in started:
        await app.stop()


def chat(text: str, *, rid: str, words: bool = True) -> list[bytes]:
    """An OpenAI-style streamed chat completion of ``text``, one event per word."""
    parts = text.split(" ")
    pieces = [p + (" " if i < len(parts) - 1 else "") for i, p in enumerate(parts)]
    events = [
        {
            "id": rid,
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}],
        }
        for p in (pieces if words else [text])
    ]
    return [b"data: " + json.dumps(e).encode() + b"\n\n" for e in events] + [b"data: [DONE]\n\n"]


def v1(path: str) -> tuple[int, str, list[bytes]]:
    if path == "/json":
        return (
            200,
            "application/json",
            [b'{"id": "a1", "label": "cat", "score": 0.91, "x": [1, 2]}'],
        )
    if path == "/chat":
        return 200, "text/event-stream", chat("The answer is 42 .", rid="r1")
    return 200, "text/plain", [b"hello"]


async def setup(
    make_router: RouterFactory,
    apps: Callable[[Answers], asyncio.Future[App]],
    shadow: Answers,
    compare: models.MirrorCompare,
) -> BuiltinRouter:
    primary, other = await apps(v1), await apps(shadow)
    router = await make_router()
    await router.set_backends(1, [Endpoint("127.0.0.1", primary.port)])
    await router.set_backends(2, [Endpoint("127.0.0.1", other.port)])
    await router.set_weight({1: 100})
    await router.set_mirror_route("shadow", 2, 100, [], compare)
    return router


async def run(router: BuiltinRouter, path: str, n: int) -> stats_mod.ShadowStats:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{router.port}") as c:
        for _ in range(n):
            reply = await c.get(path)
            assert reply.status_code == 200
    await router.mirror_idle()
    found = router.metrics.revision(2).shadow
    assert isinstance(found, stats_mod.ShadowStats)
    return found


async def test_reordered_json_with_ignored_fields_and_tolerance_matches(
    make_router: RouterFactory, apps: Callable[[Answers], asyncio.Future[App]]
) -> None:
    def shadow(path: str) -> tuple[int, str, list[bytes]]:
        return (
            200,
            "application/json",
            [b'{"x": [1, 2], "score": 0.912, "label": "cat", "id": "b7"}'],
        )

    cfg = models.MirrorCompare(comparator="json", ignore=["/id"], tolerance=0.01)
    router = await setup(make_router, apps, shadow, cfg)
    found = await run(router, "/json", 10)
    assert (found.compared, found.matched) == (10, 10)
    assert found.primary == 1 and not found.samples


async def test_json_difference_counted_with_a_readable_sample(
    make_router: RouterFactory, apps: Callable[[Answers], asyncio.Future[App]]
) -> None:
    def shadow(path: str) -> tuple[int, str, list[bytes]]:
        return (
            200,
            "application/json",
            [b'{"x": [1, 2], "score": 0.95, "label": "dog", "id": "b7"}'],
        )

    cfg = models.MirrorCompare(comparator="json", ignore=["/id"], tolerance=0.01)
    router = await setup(make_router, apps, shadow, cfg)
    found = await run(router, "/json", 4)
    assert found.compared == 4 and found.matched == 0
    assert found.mismatched == {"status": 0, "body": 4, "latency": 0}
    sample = found.samples[-1]
    assert sample["reason"] == "differs at /label"
    assert '"dog"' in sample["shadow"]["body"] and '"cat"' in sample["primary"]["body"]
    # the same counts in the router's /metrics, on the shadow revision's rows
    text = metrics_text.render(router.metrics_registry)
    rev = 'rollout="web",revision="2"'
    assert f"changeover_shadow_compared_total{{{rev}}} 4" in text
    assert f"changeover_shadow_matched_total{{{rev}}} 0" in text
    assert f'changeover_shadow_mismatched_total{{{rev},kind="body"}} 4' in text
    assert f'changeover_shadow_mismatched_total{{{rev},kind="status"}} 0' in text
    assert f'changeover_shadow_not_compared_total{{{rev},reason="tooLarge"}} 0' in text
    assert 'changeover_shadow_compared_total{rollout="web",revision="1"}' not in text


async def test_streamed_chat_reassembled_and_compared(
    make_router: RouterFactory, apps: Callable[[Answers], asyncio.Future[App]]
) -> None:
    answers = iter(["The answer is 42 .", "The answer is 41 ."] * 10)

    def shadow(path: str) -> tuple[int, str, list[bytes]]:
        # the same text in other chunks and ids, then a drifted one, in turn
        return 200, "text/event-stream", chat(next(answers), rid="other", words=False)

    router = await setup(make_router, apps, shadow, models.MirrorCompare(comparator="exact"))
    found = await run(router, "/chat", 6)
    assert (found.compared, found.matched, found.mismatched["body"]) == (6, 3, 3)
    assert (
        "42" in found.samples[0]["primary"]["body"] and "41" in found.samples[0]["shadow"]["body"]
    )


async def test_status_and_latency_differences(
    make_router: RouterFactory, apps: Callable[[Answers], asyncio.Future[App]]
) -> None:
    def shadow(path: str) -> tuple[int, str, list[bytes]]:
        return 503, "text/plain", [b"hello"]

    cfg = models.MirrorCompare(percentage=50, latency_threshold=0.0)
    router = await setup(make_router, apps, shadow, cfg)
    found = await run(router, "/", 10)
    # half the mirrored requests are compared: every other one
    assert found.compared == 5 and found.mismatched["status"] == 5
    assert found.shadow_errors == 5
    assert found.samples[-1]["reason"].startswith("status 200 vs 503")


async def test_bodies_over_the_cap_are_not_compared(
    make_router: RouterFactory, apps: Callable[[Answers], asyncio.Future[App]]
) -> None:
    def shadow(path: str) -> tuple[int, str, list[bytes]]:
        return 200, "text/plain", [b"hello"]

    cfg = models.MirrorCompare(max_body_bytes=3)
    router = await setup(make_router, apps, shadow, cfg)
    found = await run(router, "/", 3)
    assert found.compared == 0 and found.not_compared["tooLarge"] == 3


async def test_unknown_comparator_refused_with_its_name(make_router: RouterFactory) -> None:
    from changeover import errors

    router = await make_router()
    with pytest.raises(errors.PermanentBackendError, match="no_such_mod"):
        await router.set_mirror_route(
            "shadow", 2, 100, [], models.MirrorCompare(comparator="no_such_mod:f")
        )


async def test_copies_the_mirror_drops_are_not_compared(
    make_router: RouterFactory, apps: Callable[[Answers], asyncio.Future[App]]
) -> None:
    router = await setup(make_router, apps, v1, models.MirrorCompare())
    assert router.mirror is not None
    router.mirror.concurrency = 0  # nothing leaves the queue: it fills
    router.mirror.queue_size = 2
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{router.port}") as c:
        for _ in range(5):
            assert (await c.get("/")).status_code == 200
    found = router.metrics.revision(2).shadow
    assert isinstance(found, stats_mod.ShadowStats)
    # two pairs wait with their queued copies; three were never started
    assert found.not_compared["dropped"] == 3 and found.compared == 0
    router.mirror.concurrency, router.mirror.queue_size = 128, 1024
    router.mirror.offer(2, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n", b"", b"127.0.0.1")  # a nudge
    await router.mirror_idle()
    assert found.compared == 2 and found.matched == 2


async def test_a_shadow_without_replicas_is_not_compared_a_refusing_one_differs(
    make_router: RouterFactory, apps: Callable[[Answers], asyncio.Future[App]]
) -> None:
    router = await setup(make_router, apps, v1, models.MirrorCompare())
    await router.set_backends(2, [])  # no ready replica (a canary scaled to 0, starting)
    found = await run(router, "/", 3)
    assert found.not_compared["unavailable"] == 3 and found.compared == 0
    await router.set_backends(2, [Endpoint("127.0.0.1", free_port())])  # refuses
    found = await run(router, "/", 3)
    assert found.compared == 3 and found.mismatched["status"] == 3
    assert found.samples[-1]["reason"] == "status 200 vs no answer"
