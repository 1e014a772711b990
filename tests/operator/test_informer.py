"""``platforms.kubernetes.informer.Informer`` over a scripted client (fast; the real API
server's watches are tested in tests/kubernetes, the dashboard's in
test_kube_dashboard_watch.py): a watch's events are applied, a watch the server ends is
resumed from the last resourceVersion seen, a ``410 Gone`` lists again, and a failure
leaves it out of sync (the dashboard then reads the API server) until it lists again.
``operator.namespace_cache.WatchedNamespaces`` keeps at most its limit of namespaces
watched, without pages on more namespaces restarting each other's watches."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from changeover import aio, errors
from changeover.kube import client as kube
from changeover.operator import namespace_cache
from changeover.platforms.kubernetes.informer import Informer

JSON = dict[str, Any]


def _obj(name: str, version: str) -> JSON:
    return {"metadata": {"name": name, "namespace": "ns", "resourceVersion": version}}


class ScriptedClient:
    """Answers lists from ``lists`` (the last one stays) and watches from ``watches`` (each
    a list of events, or an exception to raise), in order; records the versions watched
    from. Once the script is done, a watch stays quiet."""

    def __init__(self, lists: list[Any], watches: list[Any]) -> None:
        self.lists = lists
        self.watches = watches
        self.watched_from: list[str] = []
        self.listed = 0
        self.done = asyncio.Event()

    async def list(self, res: kube.Resource, **kw: Any) -> JSON:
        self.listed += 1
        answer = self.lists.pop(0) if len(self.lists) > 1 else self.lists[0]
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


async def _running(client: ScriptedClient) -> tuple[Informer, asyncio.Task[None]]:
    informer = Informer(client, kube.ROLLOUTS, namespace="ns")  # type: ignore[arg-type]
    task = asyncio.create_task(informer.run())
    await asyncio.wait_for(client.done.wait(), 10)
    return informer, task


async def test_events_are_applied_and_a_watch_resumes_where_it_ended() -> None:
    client = ScriptedClient(
        lists=[("10", [_obj("a", "9"), _obj("b", "10")])],
        watches=[
            [("MODIFIED", _obj("a", "11")), ("DELETED", _obj("b", "12"))],
            [("ADDED", _obj("c", "13")), ("BOOKMARK", {"metadata": {"resourceVersion": "20"}})],
        ],
    )
    informer, task = await _running(client)
    assert informer.in_sync and client.listed == 1
    assert sorted(o["metadata"]["name"] for o in informer.items()) == ["a", "c"]
    found = informer.get("ns", "a")
    assert found is not None and found["metadata"]["resourceVersion"] == "11"
    assert found["kind"] == "Rollout" and informer.get("ns", "b") is None
    assert client.watched_from == ["10", "12", "20"]
    await aio.cancel_and_wait_all([task])
    assert not informer.in_sync and informer.synced.is_set()


async def test_gone_lists_again_and_a_failure_is_out_of_sync_until_it_does() -> None:
    client = ScriptedClient(
        lists=[("10", [_obj("a", "10")]), ("30", [_obj("z", "30")])],
        watches=[kube.Gone("410: too old resource version")],
    )
    informer, task = await _running(client)
    assert client.listed == 2 and client.watched_from == ["10", "30"]
    assert [o["metadata"]["name"] for o in informer.items()] == ["z"]
    await aio.cancel_and_wait_all([task])

    # May list, may not watch (RBAC): in sync only between the two, then backing off.
    forbidden = ScriptedClient(
        lists=[("5", [_obj("a", "5")])], watches=[errors.Forbidden("403: cannot watch")]
    )
    refused = Informer(forbidden, kube.ROLLOUTS, namespace="ns")  # type: ignore[arg-type]
    task = asyncio.create_task(refused.run())
    for _ in range(1000):
        if forbidden.watched_from:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0)  # the watch's 403 is handled
    assert forbidden.watched_from == ["5"] and not refused.in_sync
    await aio.cancel_and_wait_all([task])


class SilentClient:
    """A client whose every list waits forever (informers that never sync)."""

    async def list(self, res: kube.Resource, **kw: Any) -> JSON:
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
