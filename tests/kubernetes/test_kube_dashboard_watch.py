"""The cluster dashboard's live pages from watches, against the test bed's kube-apiserver
with the operator running: an open rollout page, and an open list page, send no read to
the API server while they follow the namespace (its Rollouts, ReplicaSets, Services,
Events and Flags are watched), and still show a change made by someone else.
``bench.dashboard_reads`` measures the requests per second."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import httpx
import k8s_testbed as testbed
import pytest
from k8s_background import Background
from k8s_helpers import Kube, eventually, rollout

from changeover.api.server import ApiServer, start_api
from changeover.cluster_dashboard import TICK_SECONDS, ClusterNamespaces
from changeover.kube import client as kube
from changeover.operator.service import KubeService

JSON = dict[str, Any]


@pytest.fixture
def ns(cluster: testbed.Cluster) -> Iterator[Background]:
    with Background(f"dashw-{uuid.uuid4().hex[:6]}") as bg:
        yield bg


class Dashboard:
    """The cluster dashboard's API on the operator's loop, over a client of its own (whose
    requests are counted)."""

    async def start(self, namespace: str) -> None:
        self.client = await kube.KubeClient.connect(kubeconfig_path=testbed.kubeconfig())
        self.namespaces = ClusterNamespaces(self.client, namespace)
        self.api: ApiServer = await start_api(
            self.namespaces.service(namespace),
            port=0,
            token="t" * 32,
            tick_seconds=TICK_SECONDS,
            namespaces=self.namespaces,
        )
        cache = self.namespaces.watched.of(namespace)
        assert cache is not None
        await eventually(
            lambda: _value(all(i.synced for i in cache.informers)),
            within=60,
            what="the namespace's informers synced",
        )

    async def requests(self) -> Counter[str]:
        return Counter(self.client.requests)

    async def stop(self) -> None:
        await self.api.close()
        await self.namespaces.watched.close()
        await self.client.close()


async def _value(x: bool) -> bool:
    return x


def _events(answer: httpx.Response) -> Iterator[tuple[str, JSON]]:
    kind = ""
    for line in answer.iter_lines():
        if line.startswith("event: "):
            kind = line.removeprefix("event: ")
        elif line.startswith("data: "):
            yield kind, json.loads(line.removeprefix("data: "))


def _reads_while_following(
    ns: Background,
    page: str,
    kind: str,
    change: Coroutine[Any, Any, object],
    shown: Callable[[JSON], bool],
) -> dict[str, int]:
    """The requests (watches aside) a dashboard on ``ns`` (with the rollout ``web``)
    sends the API server from the moment its ``page`` stream is open until an event
    ``kind`` shows (``shown``) the ``change`` another client made meanwhile."""
    service = KubeService(ns.client, namespace=ns.namespace)
    ns.call(service.apply([rollout("web", replicas=1)], source="web.yaml"))
    board = Dashboard()
    ns.call(board.start(ns.namespace))
    try:
        with (
            httpx.Client(base_url=board.api.url, timeout=60) as http,
            http.stream("GET", f"/api/v1/namespaces/{ns.namespace}{page}") as answer,
        ):
            assert answer.status_code == 200
            before: Counter[str] | None = None
            for got, doc in _events(answer):
                if got != kind:
                    continue
                if before is None:  # the page is open: someone else changes something
                    before = ns.call(board.requests())
                    ns.call(change)
                elif shown(doc):
                    break
            after = ns.call(board.requests())
    finally:
        change.close()  # (awaited above, unless the stream ended first)
        ns.call(board.stop())
    assert before is not None
    return {what: n for what, n in (after - before).items() if not what.startswith("WATCH")}


def test_an_open_rollout_page_reads_nothing_while_it_follows_a_change(ns: Background) -> None:
    k = Kube(ns.client, ns.namespace)
    scale = k.update(kube.ROLLOUTS, "web", _scaled_to_3)
    reads = _reads_while_following(
        ns, "/rollouts/web/stream", "spec", scale, lambda doc: doc["spec"]["replicas"] == 3
    )
    # Polling read the Rollout (and its ReplicaSets, Services, Events) at every tick,
    # the one that saw the change included.
    assert reads == {}, reads


def _scaled_to_3(obj: JSON) -> None:
    obj["spec"]["replicas"] = 3


FLAG = {
    "apiVersion": "changeover.dev/v1alpha1",
    "kind": "Flag",
    "metadata": {"name": "checkout"},
    "spec": {"type": "boolean", "variants": {"on": True, "off": False}, "defaultVariant": "off"},
}


def test_an_open_list_page_reads_nothing_while_a_flag_appears(ns: Background) -> None:
    create = ns.client.create(kube.FLAGS, FLAG, namespace=ns.namespace)
    listed = lambda doc: [f["name"] for f in doc["flags"]] == ["checkout"]  # noqa: E731
    reads = _reads_while_following(ns, "/stream", "flags", create, listed)
    assert reads == {}, reads  # polling listed Rollouts and Flags at every tick
