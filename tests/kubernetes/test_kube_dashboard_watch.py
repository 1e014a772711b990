"""The cluster dashboard's live pages from watches, against the test bed's kube-apiserver
with the operator running: an open rollout page sends no read to the API server while it
follows the rollout (its namespace's Rollouts, ReplicaSets, Services and Events are
watched), and still shows a change made by someone else. ``bench.dashboard_reads``
measures the requests per second."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterator
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


def test_an_open_rollout_page_reads_nothing_while_it_follows_a_change(ns: Background) -> None:
    k = Kube(ns.client, ns.namespace)
    service = KubeService(ns.client, namespace=ns.namespace)
    ns.call(service.apply([rollout("web", replicas=1)], source="web.yaml"))
    board = Dashboard()
    ns.call(board.start(ns.namespace))
    try:
        page = f"/api/v1/namespaces/{ns.namespace}/rollouts/web/stream"
        with (
            httpx.Client(base_url=board.api.url, timeout=60) as http,
            http.stream("GET", page) as answer,
        ):
            assert answer.status_code == 200
            before: Counter[str] | None = None
            for kind, doc in _events(answer):
                if kind != "spec":
                    continue
                if before is None:  # the page is open: someone else scales the rollout
                    before = ns.call(board.requests())
                    ns.call(k.update(kube.ROLLOUTS, "web", _scaled_to_3))
                elif doc["spec"]["replicas"] == 3:
                    break
            after = ns.call(board.requests())
    finally:
        ns.call(board.stop())
    assert before is not None
    reads = {what: n for what, n in (after - before).items() if not what.startswith("WATCH")}
    # Polling read the Rollout (and its ReplicaSets, Services, Events) at every tick,
    # the one that saw the change included.
    assert reads == {}, reads


def _scaled_to_3(obj: JSON) -> None:
    obj["spec"]["replicas"] = 3
