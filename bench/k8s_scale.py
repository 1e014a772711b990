"""N Rollouts progressing at once against the k8s testbed: what one operator costs.

    python -m bench.k8s_scale --rollouts 100 --rollouts 1000 [--write]

For each N: create N canary Rollouts (1 replica, steps setWeight 50 → pause), wait until
all are Healthy; then change every template at once and measure, per rollout, the time
from the spec change (our PUT's reply) to the operator's first action for the new revision
(its ReplicaSet), until all are Paused at the pause step; then promote all and wait until
all are Healthy on the new revision. Reported: reconcile latency p50/p95/max, broken down
by stage from the operator's own trace (``operator.trace``: watch delivery, work queue,
first write) and, from the pods' timestamps, what follows (pod created, pod Ready, the
operator's reaction to it); API requests per rollout per step (operator side, counted in
its client) and their mean reply time; the operator's CPU seconds, peak RSS, worker
occupancy and event-loop lag; the wall time of each phase and the load average.
``--write`` replaces the "## Kubernetes scale" section of bench/RESULTS.md.

The operator runs as ``bench.k8s_operator_proc`` in a subprocess, stopped by PID. Only the
API server is talked to; no traffic goes to pod or Service IPs.

Pods are made Ready by ``bench.k8s_kubelet`` on ``ceil(2.2 N / 110)`` nodes of its own
(the benchmark's pods select them; deleted afterwards). ``--kubelet testbed`` uses the
testbed's ``fake-kubelet.py`` for those nodes instead (a second process, stopped by PID),
which at 1,000 rollouts, not the operator, sets the pace.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psutil

from changeover.kube import client as kube

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "kubernetes"))
import k8s_testbed  # noqa: E402

from bench import common  # noqa: E402
from bench.k8s_kubelet import NODE_LABEL, FakeKubelet  # noqa: E402
from bench.k8s_report import (  # noqa: E402
    operator_window,
    pct,
    pod_spans,
    render,
    summaries,
    trace_spans,
)

JSON = dict[str, Any]


def rollout(name: str, image: str, node_selector: dict[str, str] | None = None) -> JSON:
    pod_spec: JSON = {"containers": [{"name": "app", "image": image}]}
    if node_selector:
        pod_spec["nodeSelector"] = node_selector
    return {
        "apiVersion": "changeover.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": pod_spec,
            },
            "service": {"port": 80},
            "strategy": {"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}},
        },
    }


async def _gather_limited(coros: list[Any], limit: int = 32) -> list[Any]:
    sem = asyncio.Semaphore(limit)

    async def one(c: Any) -> Any:
        async with sem:
            return await c

    return await asyncio.gather(*(one(c) for c in coros))


async def _wait_all(
    client: kube.KubeClient,
    ns: str,
    n: int,
    check: Any,
    limit: float,
    seen: dict[str, float] | None = None,
) -> tuple[float, int]:
    """Seconds until every rollout passes ``check`` (or ``limit``), and how many did;
    ``seen`` gets the wall-clock time each rollout was first seen passing (polled
    every second, so up to a second late)."""
    t0 = time.monotonic()
    seen = {} if seen is None else seen
    while True:
        doc = await client.list(kube.ROLLOUTS, namespace=ns)
        now = time.time()
        for o in doc["items"]:
            if check(o.get("status") or {}):
                seen.setdefault(o["metadata"]["name"], now)
        done = len(seen)
        if done >= n or time.monotonic() - t0 > limit:
            return time.monotonic() - t0, done
        await asyncio.sleep(1.0)


def _requests(stats: JSON) -> int:
    return sum(v for k, v in stats["requests"].items() if not k.startswith("WATCH"))


def _extra_nodes(n: int) -> tuple[subprocess.Popen[bytes], list[str]]:
    """The testbed's own fake kubelet for ``ceil(2.2 n / 110)`` more nodes (``--kubelet
    testbed``)."""
    count = max(1, -(-int(2.2 * n) // 110))
    nodes = [f"bench-node-{i}" for i in range(1, count + 1)]
    pki = k8s_testbed.testbed_dir() / "run" / "pki"
    token = (pki / "token").read_text().strip()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-u",
            str(k8s_testbed.scripts_dir() / "fake-kubelet.py"),
            "https://127.0.0.1:6443",
            token,
            str(pki / "ca.crt"),
            *nodes,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return proc, nodes


async def _pods_gone(client: kube.KubeClient, ns: str, limit: float) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if not (await client.list(kube.PODS, namespace=ns))["items"]:
            return
        await asyncio.sleep(1.0)


async def _drop_nodes(client: kube.KubeClient, nodes: list[str]) -> None:
    res = kube.Resource("v1", "nodes", "Node", namespaced=False)
    for node in nodes:
        await client.delete(res, node)


async def run_one(n: int, workers: int, kubelet_kind: str) -> JSON:
    ns = f"bench-{n}-{uuid.uuid4().hex[:4]}"
    stats_path = Path(tempfile.mkdtemp()) / "stats.json"
    env = {**os.environ, "KUBECONFIG": str(k8s_testbed.kubeconfig())}
    node_count = max(1, -(-int(2.2 * n) // 110))
    async with await kube.KubeClient.connect(kubeconfig_path=k8s_testbed.kubeconfig()) as client:
        await client.create(
            kube.NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
        )
        selector: dict[str, str] | None = None
        if kubelet_kind == "bench":
            fake = FakeKubelet(
                await kube.KubeClient.connect(kubeconfig_path=k8s_testbed.kubeconfig()),
                ns,
                count=node_count,
            )
            kubelet: Any = asyncio.create_task(fake.run())
            nodes: list[str] = []
            selector = {NODE_LABEL: ns}
        else:
            kubelet, nodes = _extra_nodes(n)
        proc = subprocess.Popen(  # noqa: ASYNC220 - started once, stopped by PID below
            [sys.executable, "-m", "bench.k8s_operator_proc", ns, str(stats_path), str(workers)],
            cwd=REPO,
            env=env,
        )
        ps = psutil.Process(proc.pid)
        peak_rss = 0
        try:

            def stats() -> JSON:
                nonlocal peak_rss
                peak_rss = max(peak_rss, ps.memory_info().rss)
                try:
                    return dict(json.loads(stats_path.read_text()))
                except (OSError, ValueError):
                    return {"requests": {}, "ready": False}

            async def trace() -> JSON:
                """The operator's trace, once it has written what happened until now."""
                await asyncio.sleep(3.5)
                return dict(json.loads(stats_path.with_name("trace.json").read_text()))

            while not stats().get("ready"):  # noqa: ASYNC110 - a file another process writes
                await asyncio.sleep(0.2)
            load0 = os.getloadavg()
            cpu0 = ps.cpu_times()
            rollouts = [f"r{i:04d}" for i in range(n)]
            created: dict[str, float] = {}

            async def create(name: str) -> None:
                await client.create(kube.ROLLOUTS, rollout(name, "app:v1", selector), namespace=ns)
                created[name] = time.time()

            t0 = time.monotonic()
            await _gather_limited([create(x) for x in rollouts])
            # The fake kubelet, not the operator, limits how fast pods become ready; a phase
            # that has not finished after ``limit`` seconds is reported as far as it got.
            limit = 240 + n / 4
            healthy_at: dict[str, float] = {}
            t_healthy, healthy = await _wait_all(
                client, ns, n, lambda s: s.get("phase") == "Healthy", limit, healthy_at
            )
            create_s = time.monotonic() - t0
            base = stats()
            # Change every template at once: the spec change whose handling we time.
            updated: dict[str, float] = {}

            async def update(name: str) -> None:
                obj = await client.get(kube.ROLLOUTS, name, namespace=ns)
                obj["spec"]["template"]["spec"]["containers"][0]["image"] = "app:v2"
                await client.replace(kube.ROLLOUTS, obj, namespace=ns)
                updated[name] = time.time()

            t1 = time.monotonic()
            await _gather_limited([update(x) for x in rollouts])
            paused_at: dict[str, float] = {}
            _, paused = await _wait_all(
                client,
                ns,
                n,
                lambda s: s.get("phase") == "Paused" and s.get("currentStepIndex") == 1,
                limit,
                paused_at,
            )
            mid = stats()
            traced = await trace()
            update_pods = await pod_spans(client, ns, 2, traced, paused_at)
            listed = await client.list(kube.ROLLOUTS, namespace=ns)
            to_promote = [
                o["metadata"]["name"]
                for o in listed["items"]
                if (o.get("status") or {}).get("phase") == "Paused"
            ]

            async def promote(name: str) -> None:
                for _ in range(20):
                    obj = await client.get(kube.ROLLOUTS, name, namespace=ns)
                    obj.setdefault("status", {})["promote"] = "step"
                    try:
                        await client.replace(kube.ROLLOUTS, obj, namespace=ns, sub="status")
                        return
                    except kube.Conflict:
                        await asyncio.sleep(0.05)

            t2 = time.monotonic()
            await _gather_limited([promote(x) for x in to_promote])
            to_done, done = await _wait_all(
                client,
                ns,
                len(to_promote),
                lambda s: s.get("phase") == "Healthy" and s.get("stableRevision") == 2,
                limit,
            )
            end = stats()
            cpu1 = ps.cpu_times()
            load1 = os.getloadavg()
            create_spans = trace_spans(traced["trace"], 1, created)
            update_spans = trace_spans(traced["trace"], 2, updated)
            create_pods = await pod_spans(client, ns, 1, traced, healthy_at)
            update_requests = _requests(mid) - _requests(base)
            promote_requests = _requests(end) - _requests(mid)
            latencies = update_spans["first action"]
            return {
                "rollouts": n,
                "workers": workers,
                "date": time.strftime("%Y-%m-%d %H:%M"),
                "load_before": [round(x, 2) for x in load0],
                "load_after": [round(x, 2) for x in load1],
                "healthy": healthy,
                "paused": paused,
                "promoted": done,
                "create_to_healthy_s": round(create_s, 1),
                "first_healthy_wait_s": round(t_healthy, 1),
                "update_to_paused_s": round(t2 - t1, 1),
                "promote_to_healthy_s": round(to_done, 1),
                "reconcile_latency_p50_ms": round(pct(latencies, 0.5) * 1000, 1),
                "reconcile_latency_p95_ms": round(pct(latencies, 0.95) * 1000, 1),
                "reconcile_latency_max_ms": round(max(latencies) * 1000, 1) if latencies else None,
                # Update phase = two steps (new revision + setWeight 50, then the pause).
                "api_requests_per_rollout_step_update": round(update_requests / n / 2, 2),
                "api_requests_per_rollout_promote": round(
                    promote_requests / max(1, len(to_promote)), 2
                ),
                "operator_cpu_s": round((cpu1.user + cpu1.system) - (cpu0.user + cpu0.system), 1),
                "operator_peak_rss_mb": round(peak_rss / 2**20, 1),
                "reconciles": end["reconciles"],
                "errors": end.get("errors", 0),
                "create_stages_ms": summaries({**create_spans, **create_pods}),
                "update_stages_ms": summaries({**update_spans, **update_pods}),
                "update_operator": operator_window(base, mid, workers),
                "promote_operator": operator_window(mid, end, workers),
            }
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            shutil.rmtree(stats_path.parent, ignore_errors=True)
            await client.delete(kube.NAMESPACES, ns)
            if isinstance(kubelet, asyncio.Task):
                # Let it finish the pods' deletion first (the PodGC removes what is left
                # once the nodes are gone).
                await _pods_gone(client, ns, 60.0)
                kubelet.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await kubelet
                await fake.remove()
                await fake.client.close()
            else:
                kubelet.terminate()
                kubelet.wait(10)
                await _drop_nodes(client, nodes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", type=int, action="append")
    parser.add_argument("--workers", type=int, default=64)
    parser.add_argument(
        "--kubelet",
        choices=("bench", "testbed"),
        default="bench",
        help="who makes pods Ready: bench/k8s_kubelet.py (default) or the testbed's script",
    )
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    k8s_testbed.ensure_built()
    cluster = k8s_testbed.Cluster()
    cluster.start()
    results = []
    try:
        from changeover.platforms.kubernetes import install

        asyncio.run(
            install.install(
                kubeconfig=str(k8s_testbed.kubeconfig()), operator=False, image="", namespace=""
            )
        )
        for n in args.rollouts or [100]:
            result = asyncio.run(run_one(n, args.workers, args.kubelet))
            print(json.dumps(result), flush=True)
            results.append(result)
    finally:
        cluster.stop()
    text = render(results, command="python -m bench.k8s_scale " + shlex.join(sys.argv[1:]))
    print(text)
    if args.write:
        common.write_results_section("## Kubernetes scale", text)


if __name__ == "__main__":
    main()
