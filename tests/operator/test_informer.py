"""``kube.informer.Informer`` over a scripted client (fast; the real API server's watches are
tested in tests/kubernetes/test_kube_dashboard_watch.py): a watch's events are applied,
a watch the server ends is resumed from the last resourceVersion seen, a ``410 Gone``
lists again, and a failure leaves it unsynced (readers go to the API server) until it
lists again. ``operator.namespace_cache.WatchedNamespaces`` keeps at most its limit of
namespaces watched, without pages on more namespaces restarting each other's watches."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from changeover import errors
from changeover.kube import client as kube
from changeover.kube.informer import Informer
from changeover.operator import namespace_cache

JSON = dict[str, Any]


def _obj(name: str, version: str) -> JSON:
    return {"metadata": {"name": name, "resourceVersion": version}}


class ScriptedClient:
    """Answers lists from ``lists`` and watches from ``watches`` (each a list of events,
    or an exception to raise), in order; records the versions watched from."""

    def __init__(self, lists: list[Any], watches: list[Any]) -> None:
        self.lists = lists
        self.watches = watches
        self.watched_from: list[str] = []
        self.requested = 0
        self.done = asyncio.Event()

    async def request(self, method: str, path: str, **kw: Any) -> JSON:
        self.requested += 1
        answer = self.lists.pop(0) if len(self.lists) > 1 else self.lists[0]  # the last stays
        if isinstance(answer, Exception):
            raise answer
        return {"metadata": {"resourceVersion": answer[0]}, "items": answer[1]}

    async def watch(
        self, res: kube.Resource, *, resource_version: str, **kw: Any
    ) -> AsyncIterator[tuple[str, JSON]]:
        self.watched_from.append(resource_version)
        if not self.watches:
            self.done.set()
            await asyncio.Event().wait()  # a quiet watch, until stopped
        script = self.watches.pop(0)
        if isinstance(script, Exception):
            raise script
        for event in script:
            yield event


async def _run(client: ScriptedClient) -> Informer:
    informer = Informer(client, kube.ROLLOUTS, namespace="ns")  # type: ignore[arg-type]
    informer.start()
    await asyncio.wait_for(client.done.wait(), 10)
    return informer


async def test_events_are_applied_and_a_watch_resumes_where_it_ended() -> None:
    client = ScriptedClient(
        lists=[("10", [_obj("a", "9"), _obj("b", "10")])],
        watches=[
            [("MODIFIED", _obj("a", "11")), ("DELETED", _obj("b", "12"))],
            [("ADDED", _obj("c", "13")), ("BOOKMARK", {"metadata": {"resourceVersion": "20"}})],
        ],
    )
    informer = await _run(client)
    assert informer.synced and informer.lists == 1
    assert sorted(o["metadata"]["name"] for o in informer.items()) == ["a", "c"]
    assert informer.get("a") == _obj("a", "11") and informer.get("b") is None
    assert client.watched_from == ["10", "12", "20"]
    await informer.stop()
    assert not informer.synced


async def test_gone_lists_again_and_a_failure_unsyncs_until_it_does() -> None:
    client = ScriptedClient(
        lists=[("10", [_obj("a", "10")]), ("30", [_obj("z", "30")])],
        watches=[kube.Gone("410: too old resource version")],
    )
    informer = await _run(client)
    assert informer.lists == 2 and client.watched_from == ["10", "30"]
    assert [o["metadata"]["name"] for o in informer.items()] == ["z"]
    await informer.stop()

    failing = ScriptedClient(lists=[errors.Forbidden("403: cannot watch")], watches=[])
    unsynced = Informer(failing, kube.ROLLOUTS, namespace="ns")  # type: ignore[arg-type]
    unsynced.start()
    for _ in range(1000):  # until it tried to list
        if failing.requested:
            break
        await asyncio.sleep(0.01)
    assert failing.requested and not unsynced.synced and unsynced.lists == 0
    await unsynced.stop()


class SilentClient:
    """A client whose every list waits forever (informers that never sync)."""

    async def request(self, method: str, path: str, **kw: Any) -> JSON:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_more_namespaces_than_the_limit_do_not_take_turns() -> None:
    now = [0.0]
    watched = namespace_cache.WatchedNamespaces(
        SilentClient(),  # type: ignore[arg-type]
        limit=2,
        clock=lambda: now[0],
    )
    a, b = watched.of("a"), watched.of("b")
    assert a is not None and b is not None
    for _ in range(3):  # pages on a third namespace, asking every tick
        assert watched.of("c") is None
        assert watched.of("a") is a and watched.of("b") is b  # nobody restarted
    now[0] += namespace_cache.IDLE_SECONDS + 1
    assert watched.of("a") is a
    c = watched.of("c")  # b was idle: it gives its place
    assert c is not None and watched.of("a") is a
    await asyncio.sleep(0)  # b's informers are being stopped
    assert watched.of("b") is None
    await watched.close()
