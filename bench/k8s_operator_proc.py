"""The operator under benchmark, in its own process (so its CPU and memory are its own).

    python -m bench.k8s_operator_proc NAMESPACE STATS.json [WORKERS]

Runs ``Operator`` on NAMESPACE and rewrites STATS.json every half second: API requests by
verb and resource with the seconds spent waiting on their replies, reconciles, histograms
(cumulative bucket counts, so the benchmark can subtract two snapshots) of reconcile
durations and of the event loop's lag (how late a 100 ms sleep wakes up: a busy loop
delays every watch event and every reply), the work queue's length; and trace.json
beside it every 3 s: the operator's spec-change trace (``operator.trace``: watch event
received → queued → dequeued → first API write → planned → status written, per rollout
and generation) and when each revision's ReplicaSet was first seen all ready, which
bench/k8s_scale.py turns into per-stage latencies.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from changeover.kube import client as kube
from changeover.kube import names
from changeover.operator.runtime import Operator

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, float("inf"))


class Histogram:
    def __init__(self) -> None:
        self.counts = [0] * len(BUCKETS)
        self.total = 0.0

    def add(self, value: float) -> None:
        self.total += value
        for i, bound in enumerate(BUCKETS):
            if value <= bound:
                self.counts[i] += 1
                return

    def doc(self) -> dict[str, object]:
        return {"counts": list(self.counts), "sum": round(self.total, 3)}


def _write(path: Path, doc: object) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc))
    tmp.replace(path)


def _watch_ready(op: Operator) -> dict[str, dict[str, float]]:
    """rollout → revision → when the operator's ReplicaSet watch first showed that
    revision's ReplicaSet with all its replicas ready (what the operator reacts to)."""
    seen: dict[str, dict[str, float]] = {}
    forward = op.replicasets._on_change

    def changed(obj: dict[str, Any]) -> None:
        meta = obj.get("metadata", {})
        owner = (meta.get("labels") or {}).get(names.ROLLOUT_LABEL)
        revision = (meta.get("annotations") or {}).get(names.REVISION_ANNOTATION)
        want = int((obj.get("spec") or {}).get("replicas") or 0)
        ready = int((obj.get("status") or {}).get("readyReplicas") or 0)
        if owner and revision and want and ready >= want:
            seen.setdefault(owner, {}).setdefault(revision, time.time())
        if forward is not None:
            forward(obj)

    op.replicasets._on_change = changed
    return seen


async def _lag(hist: Histogram) -> None:
    loop = asyncio.get_running_loop()
    while True:
        t = loop.time()
        await asyncio.sleep(0.1)
        hist.add(max(0.0, loop.time() - t - 0.1))


async def main(namespace: str, stats_path: Path, workers: int) -> None:
    client = await kube.KubeClient.connect(connections=workers + 16)
    op = Operator(client, namespace=namespace, workers=workers, leader_election=False)
    durations, lag = Histogram(), Histogram()
    op.on_reconciled = lambda _ns, _name, seconds: durations.add(seconds)
    rs_ready = _watch_ready(op)
    task = asyncio.create_task(op.run())
    lagger = asyncio.create_task(_lag(lag))
    trace_path, traced = stats_path.with_name("trace.json"), 0.0
    while not task.done():
        # The trace (a record per rollout and generation) every 3 s only: rewritten every
        # half second at 1,000 rollouts it cost a sixth of the operator's CPU.
        if time.monotonic() - traced >= 3.0:
            _write(trace_path, {"trace": op.trace.records(), "rsReady": rs_ready})
            traced = time.monotonic()
        doc = {
            "pid": os.getpid(),
            "time": time.time(),
            "requests": dict(client.requests),
            "requestSeconds": {k: round(v, 3) for k, v in client.seconds.items()},
            "reconciles": op.stats.reconciles,
            "actions": op.stats.actions,
            "errors": op.stats.errors,
            "queue": len(op.queue),
            "reconcileSeconds": durations.doc(),
            "loopLag": lag.doc(),
            "ready": op.ready.is_set(),
        }
        _write(stats_path, doc)
        await asyncio.sleep(0.5)
    lagger.cancel()


if __name__ == "__main__":
    import uvloop

    # As ``changeover serve --platform kubernetes`` runs it (``runtime.run_serve``).
    uvloop.run(main(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 64))
