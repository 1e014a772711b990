"""Kubernetes API requests per second of open pages of the cluster dashboard.

    python -m bench.dashboard_reads [--seconds 20] [--pages 1] [--list]

Against the k8s test bed (``make k8s-testbed``): creates a namespace with one Rollout (no
operator runs: what the page reads does not depend on it), serves the cluster dashboard's
API in this process over a ``KubeClient`` that counts its requests, opens ``--pages``
event streams of that rollout's page (``/api/v1/namespaces/NS/rollouts/web/stream``, what
a browser tab holds; ``--list``: of the namespace's list page), waits for their first
events, then counts the requests sent to the API server during ``--seconds`` and prints
them per second by verb and resource (watches are counted when opened). Deletes the
namespace at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from collections import Counter
from pathlib import Path

import httpx

from changeover.api import server as api_server
from changeover.cluster_dashboard import TICK_SECONDS, ClusterNamespaces
from changeover.kube import client as kube
from changeover.operator.service import KubeService

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "kubernetes"))
import k8s_helpers  # noqa: E402
import k8s_testbed  # noqa: E402


async def _page(base: str, path: str, seen: asyncio.Event) -> None:
    async with (
        httpx.AsyncClient(base_url=base, timeout=None) as http,
        http.stream("GET", path) as answer,
    ):
        async for line in answer.aiter_lines():
            if line.startswith(("event: status", "event: rollouts")):
                seen.set()


async def measure(seconds: float, pages: int, *, listing: bool) -> Counter[str]:
    namespace = f"bench-dash-{uuid.uuid4().hex[:6]}"
    client = await kube.KubeClient.connect(kubeconfig_path=k8s_testbed.kubeconfig())
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    await client.create(kube.NAMESPACES, body)
    try:
        service = KubeService(client, namespace=namespace)
        await service.apply([k8s_helpers.rollout("web", replicas=1)], source="web.yaml")
        api = await api_server.start_api(
            service,
            port=0,
            token="x" * 32,
            tick_seconds=TICK_SECONDS,
            namespaces=ClusterNamespaces(client, namespace),
        )
        page = "" if listing else "/rollouts/web"
        path = f"/api/v1/namespaces/{namespace}{page}/stream"
        seen = [asyncio.Event() for _ in range(pages)]
        tasks = [asyncio.create_task(_page(api.url, path, s)) for s in seen]
        try:
            await asyncio.wait_for(asyncio.gather(*(s.wait() for s in seen)), 60)
            before = Counter(client.requests)
            await asyncio.sleep(seconds)
            return Counter(client.requests) - before
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await api.close()
    finally:
        await client.delete(kube.NAMESPACES, namespace)
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--pages", type=int, default=1)
    parser.add_argument("--list", action="store_true", help="list pages, not rollout pages")
    args = parser.parse_args()
    counts = asyncio.run(measure(args.seconds, args.pages, listing=args.list))
    total = sum(counts.values())
    print(f"{args.pages} open {'list' if args.list else 'rollout'} page(s), {args.seconds:.0f} s:")
    for what, n in sorted(counts.items()):
        print(f"  {what:32} {n / args.seconds:6.2f}/s")
    print(f"  {'total':32} {total / args.seconds:6.2f}/s")


if __name__ == "__main__":
    main()
