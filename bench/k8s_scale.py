"""N Rollouts progressing at once against the k8s testbed: what one operator costs.

    python -m bench.k8s_scale --rollouts 100 --rollouts 1000 [--write]

For each N: create N canary Rollouts (1 replica, steps setWeight 50 → pause), wait until
all are Healthy; then change every template at once and measure, per rollout, the time
from the spec change (our PUT's reply) to the operator's first action for the new revision
(its ReplicaSet), until all are Paused at the pause step; then promote all and wait until
all are Healthy on the new revision. Reported: reconcile latency p50/p95/max, API requests
per rollout per step (operator side, counted in its client), the operator's CPU seconds
and peak RSS (its own process, psutil), and the wall time of each phase. ``--write``
replaces the "## Kubernetes scale" section of bench/RESULTS.md.

The operator runs as ``bench.k8s_operator_proc`` in a subprocess, stopped by PID. Only the
API server is talked to; no traffic goes to pod or Service IPs.

The testbed's two fake nodes take 110 pods each; for N rollouts the benchmark registers
``ceil(2.2 N / 110)`` more (a second fake kubelet, the testbed's own script, stopped by PID;
its Nodes are deleted afterwards so later pods are not scheduled onto them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psutil

from changeover.platforms.kubernetes import client as kube

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "kubernetes"))
import k8s_testbed  # noqa: E402

JSON = dict[str, Any]


def rollout(name: str, image: str) -> JSON:
    return {
        "apiVersion": "changeover.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image}]},
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
    client: kube.KubeClient, ns: str, n: int, check: Any, limit: float
) -> tuple[float, int]:
    """Seconds until every rollout passes ``check`` (or ``limit``), and how many did."""
    t0 = time.monotonic()
    while True:
        doc = await client.list(kube.ROLLOUTS, namespace=ns)
        done = sum(1 for o in doc["items"] if check(o.get("status") or {}))
        if done >= n or time.monotonic() - t0 > limit:
            return time.monotonic() - t0, done
        await asyncio.sleep(1.0)


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def _requests(stats: JSON) -> int:
    return sum(v for k, v in stats["requests"].items() if not k.startswith("WATCH"))


def _extra_nodes(n: int) -> tuple[subprocess.Popen[bytes], list[str]]:
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


async def _drop_nodes(client: kube.KubeClient, nodes: list[str]) -> None:
    res = kube.Resource("v1", "nodes", "Node", namespaced=False)
    for node in nodes:
        await client.delete(res, node)


async def run_one(n: int, workers: int) -> JSON:
    ns = f"bench-{n}-{uuid.uuid4().hex[:4]}"
    stats_path = Path(tempfile.mkdtemp()) / "stats.json"
    env = {**os.environ, "KUBECONFIG": str(k8s_testbed.kubeconfig())}
    async with await kube.KubeClient.connect(kubeconfig_path=k8s_testbed.kubeconfig()) as client:
        await client.create(
            kube.NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
        )
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
                    return {"requests": {}, "firstAction": {}, "ready": False}

            while not stats().get("ready"):  # noqa: ASYNC110 - a file another process writes
                await asyncio.sleep(0.2)
            cpu0 = ps.cpu_times()
            names = [f"r{i:04d}" for i in range(n)]
            t0 = time.monotonic()
            await _gather_limited(
                [client.create(kube.ROLLOUTS, rollout(x, "app:v1"), namespace=ns) for x in names]
            )
            # The fake kubelet, not the operator, limits how fast pods become ready; a phase
            # that has not finished after ``limit`` seconds is reported as far as it got.
            limit = 240 + n / 4
            t_healthy, healthy = await _wait_all(
                client, ns, n, lambda s: s.get("phase") == "Healthy", limit
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
            await _gather_limited([update(x) for x in names])
            _, paused = await _wait_all(
                client,
                ns,
                n,
                lambda s: s.get("phase") == "Paused" and s.get("currentStepIndex") == 1,
                limit,
            )
            mid = stats()
            listed = await client.list(kube.ROLLOUTS, namespace=ns)
            to_promote = [
                o["metadata"]["name"]
                for o in listed["items"]
                if (o.get("status") or {}).get("phase") == "Paused"
            ]
            latencies = [
                mid["firstAction"][x]["2"] - updated[x]
                for x in names
                if "2" in mid["firstAction"].get(x, {})
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
            update_requests = _requests(mid) - _requests(base)
            promote_requests = _requests(end) - _requests(mid)
            return {
                "rollouts": n,
                "workers": workers,
                "healthy": healthy,
                "paused": paused,
                "promoted": done,
                "create_to_healthy_s": round(create_s, 1),
                "first_healthy_wait_s": round(t_healthy, 1),
                "update_to_paused_s": round(t2 - t1, 1),
                "promote_to_healthy_s": round(to_done, 1),
                "reconcile_latency_p50_ms": round(_pct(latencies, 0.5) * 1000, 1),
                "reconcile_latency_p95_ms": round(_pct(latencies, 0.95) * 1000, 1),
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
            }
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            await client.delete(kube.NAMESPACES, ns)
            kubelet.terminate()
            kubelet.wait(10)
            await _drop_nodes(client, nodes)


def _short(r: JSON, key: str, of: int) -> str:
    """' (903/1000)' when a phase stopped at its time limit short of every rollout."""
    return "" if r[key] >= of else f" ({r[key]}/{of})"


def render(results: list[JSON]) -> str:
    lines = [
        "## Kubernetes scale",
        "",
        "`python -m bench.k8s_scale` (`make bench-k8s`): N canary Rollouts (1 replica each, "
        "steps setWeight 50 → pause) on the k8s testbed (kube-apiserver 1.20, etcd, fake "
        "kubelet) on this 2-core machine, one operator process (32 workers). *Latency* is "
        "spec change (the PUT's reply) → the operator's first action for the new revision "
        "(creating its ReplicaSet). *Requests/step* are the operator's API requests (not "
        "watches), per rollout per step. CPU and peak RSS are the operator process's own. "
        "A count in parentheses: the phase stopped at its time limit (240 s + N/4) that far; "
        "the rest were waiting, correctly, for pods the testbed's fake kubelet had not made "
        "Ready (one thread patching ~1,000 pods in a row lets its node heartbeats lapse, and "
        "the node controller then marks those pods NotReady for good).",
        "",
        "| rollouts | create→all Healthy | update→all Paused | promote→all Healthy "
        "| latency p50 / p95 / max | requests/step (update) | requests (promote) "
        "| operator CPU | peak RSS |",
        "|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['rollouts']} | "
            f"{r['create_to_healthy_s']} s{_short(r, 'healthy', r['rollouts'])} | "
            f"{r['update_to_paused_s']} s{_short(r, 'paused', r['rollouts'])} | "
            f"{r['promote_to_healthy_s']} s{_short(r, 'promoted', r['paused'])} | "
            f"{r['reconcile_latency_p50_ms']} / "
            f"{r['reconcile_latency_p95_ms']} / {r['reconcile_latency_max_ms']} ms | "
            f"{r['api_requests_per_rollout_step_update']} | "
            f"{r['api_requests_per_rollout_promote']} | {r['operator_cpu_s']} s | "
            f"{r['operator_peak_rss_mb']} MB |"
        )
    return "\n".join(lines) + "\n"


def write_section(text: str) -> None:
    path = REPO / "bench" / "RESULTS.md"
    current = path.read_text() if path.exists() else ""
    start = current.find("## Kubernetes scale")
    if start < 0:
        path.write_text(current.rstrip("\n") + "\n\n" + text)
        return
    end = current.find("\n## ", start + 1)
    rest = current[end + 1 :] if end >= 0 else ""
    path.write_text(current[:start] + text + ("\n" + rest if rest else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", type=int, action="append")
    parser.add_argument("--workers", type=int, default=32)
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
            result = asyncio.run(run_one(n, args.workers))
            print(json.dumps(result), flush=True)
            results.append(result)
    finally:
        cluster.stop()
    text = render(results)
    print(text)
    if args.write:
        write_section(text)


if __name__ == "__main__":
    main()
